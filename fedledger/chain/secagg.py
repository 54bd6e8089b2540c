"""The secure-aggregation messages every study contract logs (contracts/secagg_board.vy):
`SecAggBoard`, the posts and reads that the StudyLedger, CommitteeStudy and ConsensusStudy
wrappers all offer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx
from fedledger.chain.records import bytes32_to_digest, digest_to_bytes32

SHARES = 1   # post_secagg steps, as secagg_board.vy numbers them
REVEAL = 2
CKKS_CONTEXT = 3
CKKS_KEYS = 4
CKKS_SUM = 5


class SecAggBoard:
    """Mixin of the study wrappers: needs `contract`, `_send` and `events`."""

    contract: Any
    _send: Callable[[LocalAccount, Any], TxReceipt | PendingTx]
    events: Callable[..., list[dict[str, Any]]]

    def advertise_keys(self, member: LocalAccount, round: int, cipher_key: bytes, mask_key: bytes
                       ) -> TxReceipt | PendingTx:
        """`member` publishes its X25519 public keys (32 raw bytes each) for the open round."""
        return self._send(member, self.contract.functions.advertise_keys(round, cipher_key, mask_key))

    def post_secagg(self, member: LocalAccount, round: int, step: int, digest: str) -> TxReceipt | PendingTx:
        """`member` logs the digest of what it sends at `step` (SHARES, REVEAL, CKKS_...)."""
        return self._send(member, self.contract.functions.post_secagg(round, step, digest_to_bytes32(digest)))

    def advertised_keys(self, round: int, from_block: int = 0) -> dict[str, tuple[bytes, bytes]]:
        """Each member's keys for `round` (its first advertisement counts), in chain order."""
        keys: dict[str, tuple[bytes, bytes]] = {}
        for e in self.events("KeysAdvertised", round, from_block):
            keys.setdefault(e["member"], (bytes(e["cipher_key"]), bytes(e["mask_key"])))
        return keys

    def secagg_posts(self, round: int, step: int, from_block: int = 0) -> dict[str, str]:
        """Each member's digest posted at `step` in `round` (its first post counts), in chain order."""
        posts: dict[str, str] = {}
        for e in self.events("SecAggPosted", round, from_block):
            if e["step"] == step:
                posts.setdefault(e["member"], bytes32_to_digest(e["digest"]))
        return posts
