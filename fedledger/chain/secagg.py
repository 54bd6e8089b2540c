"""The secure-aggregation messages every study contract logs (contracts/secagg_board.vy):
`SecAggBoard`, the posts and reads that the LooseStudy, SemiStudy and FullStudy
wrappers all offer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx
from fedledger.chain.records import bytes32_to_digest, digest_to_bytes32

SHARES = 1   # steps, as secagg_board.vy numbers them: 1 and 2 logged as data (post_secagg_data),
REVEAL = 2   # 3 to 5 as the digest of an artifact in the store (post_secagg)
CKKS_CONTEXT = 3
CKKS_KEYS = 4
CKKS_SUM = 5
MAX_DATA = 32768   # bytes of one logged message (secagg_board.vy)


class SecAggBoard:
    """Mixin of the study wrappers (StudyContract)."""

    contract: Any
    _send: Callable[[LocalAccount, Any], TxReceipt | PendingTx]
    events: Callable[..., list[dict[str, Any]]]

    def advertise_keys(self, member: LocalAccount, round: int, cipher_key: bytes, mask_key: bytes
                       ) -> TxReceipt | PendingTx:
        """`member` publishes its X25519 public keys (32 raw bytes each) for the open round."""
        return self._send(member, self.contract.functions.advertise_keys(round, cipher_key, mask_key))

    def post_secagg(self, member: LocalAccount, round: int, step: int, digest: str) -> TxReceipt | PendingTx:
        """`member` logs the digest of what it sends at `step` (CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM)."""
        return self._send(member, self.contract.functions.post_secagg(round, step, digest_to_bytes32(digest)))

    def post_secagg_data(self, member: LocalAccount, round: int, step: int, data: bytes) -> TxReceipt | PendingTx:
        """`member` logs what it sends at `step` (SHARES, REVEAL) as it is (at most MAX_DATA bytes;
        ValueError before sending otherwise)."""
        if not isinstance(data, bytes) or len(data) > MAX_DATA:
            raise ValueError(f"data must be at most {MAX_DATA} bytes")
        return self._send(member, self.contract.functions.post_secagg_data(round, step, data))

    def key_adverts(self, round: int) -> list[Posted]:
        """Each member's keys for `round` as (cipher key, mask key), its first advertisement
        only, in chain order with the block it landed in."""
        return first_each([Posted(e["member"], (bytes(e["cipher_key"]), bytes(e["mask_key"])), e["block"])
                            for e in self.events("KeysAdvertised", round)])

    def posts(self, round: int, step: int) -> list[Posted]:
        """Each member's digest posted at `step` in `round`, its first post only, in chain order
        with the block it landed in."""
        return first_each([Posted(e["member"], bytes32_to_digest(e["digest"]), e["block"])
                            for e in self.events("SecAggPosted", round) if e["step"] == step])

    def data_posts(self, round: int, step: int) -> list[Posted]:
        """Each member's data logged at `step` in `round`, its first only, in chain order with the
        block it landed in."""
        return first_each([Posted(e["member"], bytes(e["data"]), e["block"])
                           for e in self.events("SecAggData", round) if e["step"] == step])

    def advertised_keys(self, round: int) -> dict[str, tuple[bytes, bytes]]:
        """Each member's keys for `round` (its first advertisement counts), in chain order."""
        return {p.member: p.value for p in self.key_adverts(round)}

    def secagg_posts(self, round: int, step: int) -> dict[str, str]:
        """Each member's digest posted at `step` in `round` (its first post counts), in chain order."""
        return {p.member: p.value for p in self.posts(round, step)}


@dataclass(frozen=True)
class Posted:
    """One member's secure-aggregation message as logged: its keys or digest, and its block."""
    member: str
    value: Any
    block: int


def first_each(posted: Iterable[Posted]) -> list[Posted]:
    """Each member's first message only (the one that counts), in order."""
    first: dict[str, Posted] = {}
    for p in posted:
        first.setdefault(p.member, p)
    return list(first.values())
