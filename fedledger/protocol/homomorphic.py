"""CKKS homomorphic aggregation in the round protocol ([privacy] secure_aggregation = "ckks").

The loosely coupled coordinator holds no key, so it adds ciphertexts it cannot read:
1. **Keys, once.** In the first round every member advertises X25519 keys on chain; the first
   member in roster order generates the CKKS keys, stores the public context and logs its digest
   (step CKKS_CONTEXT), and seals the secret context for each other member (step CKKS_KEYS).
   Every member opens its copy. No key is a global variable: each node holds its own.
2. **Each round.** Members encrypt [weight x parameters, weight] under the public context and
   commit the ciphertext as their update. The coordinator checks each ciphertext's framing and
   key digest, adds the accepted ones, and a key holder (the first sender by address) decrypts
   the sum, stores it and logs its digest (step CKKS_SUM).
3. The sum is aggregated like secure aggregation's (`Strategy.aggregate_sum`), from the decrypted
   sum put on the fixed-point grid. CKKS is approximate: the model is within about 1e-7 of the
   plain one, not the same bytes, but the same decrypted sum always gives the same model.

The manifest names the context, the encrypted and the decrypted sum and who decrypted it. An
auditor re-adds the ciphertexts and checks the encrypted sum and the chain's records; it cannot
check the decryption itself without the secret key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager

import numpy as np

from fedledger.aggregation import Strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM
from fedledger.errors import StoreError
from fedledger.privacy import PublicKeys, SecAggMember, ckks
from fedledger.protocol.messages import RoundTask
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.validation import Candidate, Reason, Rejection
from fedledger.validation.screen import screen_protected, unloadable

SCHEME = "ckks/1"
SUM = "sum"   # the tensor name of a decrypted sum artifact


def key_context(task: RoundTask) -> bytes:
    """What binds the sealing of the secret context to one study."""
    return f"fedledger {SCHEME} keys|{task.chain_id}|{task.ledger.lower()}".encode()


class Homomorphic:
    """CKKS aggregation as the loose round runner uses it (the interface of secure.Masking)."""

    def __init__(self, board: Any) -> None:
        self.board = board
        self._keys: dict[str, ckks.CkksKeys] = {}     # each member's own copy of the keys
        self._accounts: dict[str, Any] = {}
        self._updates: dict[str, str] = {}            # this round's encrypted updates, by member
        self._sums: dict[int, str] = {}               # round -> digest of its encrypted sum
        self.public_context: bytes | None = None

    def _set_up(self, nodes: Sequence[Any], task: RoundTask, batch: Callable[[], ContextManager[Any]]) -> None:
        sealing = {n.address: SecAggMember(n.address, key_context(task)) for n in nodes}
        with batch():
            for node in nodes:
                keys = sealing[node.address].public_keys()
                self.board.advertise_keys(node.account, task.round, keys.cipher_key, keys.mask_key)
        dealer = nodes[0]
        keys = ckks.CkksKeys.generate()
        self.public_context = keys.public_context()
        advertised = self.board.advertised_keys(task.round)
        sealed = {m: sealing[dealer.address].seal_to(PublicKeys(m, c, k), keys.secret_context()).hex()
                  for m, (c, k) in advertised.items() if m != dealer.address}
        with batch():
            self.board.post_secagg(dealer.account, task.round, CKKS_CONTEXT, dealer.store.put(self.public_context))
            self.board.post_secagg(dealer.account, task.round, CKKS_KEYS, dealer.store.put_json(sealed))
        dealer_keys = PublicKeys(dealer.address, *advertised[dealer.address])
        self._keys = {dealer.address: keys}
        for node in nodes[1:]:   # each member opens its own copy
            self._keys[node.address] = ckks.CkksKeys.load(
                sealing[node.address].open_from(dealer_keys, bytes.fromhex(sealed[node.address])))
        self._accounts = {n.address: n.account for n in nodes}

    def updates(self, nodes: Sequence[Any], task: RoundTask, commits: Callable[[int], bool],
                batch: Callable[[], ContextManager[Any]] = nullcontext) -> list[Any]:
        """Every committing member's encrypted update (the keys are made in the first round)."""
        if self.public_context is None:
            self._set_up(nodes, task, batch)
        public = self.public_context

        def encrypt(params: np.ndarray, num_samples: int, store: ArtifactStore) -> str:
            return store.put(ckks.encrypt(public, ckks.weighted_input(params, num_samples)))

        made = [node.train(task, encrypt) for index, node in enumerate(nodes) if commits(index)]
        self._updates = {u.institution: u.commitment.update for u in made if u is not None}
        return made

    def screen(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate], min_aggregated: int
               ) -> tuple[list[Candidate], list[Rejection]]:
        return screen_ciphertexts(store, store.get_params(task.global_model).size, candidates,
                                  ckks.context_digest(self.public_context), min_aggregated)

    def conclude(self, store: ArtifactStore, task: RoundTask, senders: Sequence[str],
                 batch: Callable[[], ContextManager[Any]] = nullcontext) -> None:
        """The coordinator adds the senders' ciphertexts; the first sender decrypts the sum."""
        if not senders:
            return
        encrypted = ckks.add(self.public_context, [store.get(self._updates[m]) for m in sorted(senders)])
        total = store.put(encrypted)
        decrypter = sorted(senders)[0]
        decrypted = self._keys[decrypter].decrypt(encrypted)
        self.board.post_secagg(self._accounts[decrypter], task.round, CKKS_SUM, store.put_arrays({SUM: decrypted}))
        self._sums[task.round] = total

    def record(self, store: ArtifactStore, task: RoundTask, senders: Sequence[str]) -> HomomorphicRecord:
        decrypter = sorted(senders)[0]
        return HomomorphicRecord(ckks.context_digest(self.public_context), self._sums[task.round],
                                 self.board.secagg_posts(task.round, CKKS_SUM)[decrypter], decrypter,
                                 sorted(senders))


def screen_ciphertexts(store: ArtifactStore, size: int, candidates: Sequence[Candidate], context: str,
                       min_aggregated: int = 0) -> tuple[list[Candidate], list[Rejection]]:
    """What can be checked of encrypted updates: each ciphertext's framing, that it is under the
    study's key set (`context`: the public context's digest) and its length (its values cannot be
    seen); `min_aggregated` as in ValidationRules."""
    return screen_protected(candidates, lambda c: _ciphertext_problem(store, c, context, size + 1), min_aggregated)


def _ciphertext_problem(store: ArtifactStore, c: Candidate, key: str, length: int) -> Rejection | None:
    try:
        data = store.get(c.update)
    except StoreError as exc:
        return unloadable(c, exc)
    try:
        made_under, size = ckks.describe(data)
    except ckks.CkksError as exc:
        return Rejection.of(c, Reason.INVALID_FORMAT, str(exc))
    if made_under != key:
        return Rejection.of(c, Reason.INVALID_FORMAT, "encrypted under another key set than the study's")
    if size != length:
        return Rejection.of(c, Reason.WRONG_LAYOUT, f"encrypts {size} values; the model takes {length - 1} and a weight")
    return None


@dataclass(frozen=True)
class HomomorphicRecord:
    """What a CKKS round's aggregation used, as the manifest names it."""
    context: str          # digest of the public context
    encrypted_sum: str    # digest of the sum of the senders' ciphertexts
    decrypted_sum: str    # digest of its decryption (float64 arrays {"sum": ...})
    decrypted_by: str
    senders: list[str]

    def as_manifest(self) -> dict[str, Any]:
        return {"scheme": SCHEME, "context": self.context, "encrypted_sum": self.encrypted_sum,
                "decrypted_sum": self.decrypted_sum, "decrypted_by": self.decrypted_by, "senders": self.senders}

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> HomomorphicRecord:
        try:
            return cls(doc["context"], doc["encrypted_sum"], doc["decrypted_sum"], doc["decrypted_by"],
                       list(doc["senders"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed homomorphic-aggregation record: {exc}") from None

    def aggregate(self, store: ArtifactStore, strategy: Strategy, global_params: np.ndarray,
                  entries: Sequence[Mapping[str, Any]], state: Mapping[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The new model and state from the decrypted sum, after checking that the encrypted sum
        is the sum of the entries' ciphertexts and that the decrypted weight is their total."""
        if sorted(e["institution"] for e in entries) != self.senders:
            raise ckks.CkksError("the ciphertexts aggregated are not the record's senders")
        public = store.get(self.context)
        ordered = sorted(entries, key=lambda e: e["institution"])
        if sha256_hex(ckks.add(public, [store.get(e["update"]) for e in ordered])) != self.encrypted_sum:
            raise ckks.CkksError("the encrypted sum is not the sum of the aggregated ciphertexts")
        decrypted = store.get_arrays(self.decrypted_sum).get(SUM)
        total = sum(int(e["num_samples"]) for e in entries)
        if (decrypted is None or decrypted.shape != (global_params.size + 1,) or not np.all(np.isfinite(decrypted))
                or abs(decrypted[-1] - total) > 0.5):
            raise ckks.CkksError(f"the decrypted sum does not hold {global_params.size} weighted parameters "
                                 f"and the total weight {total}")
        if not np.all(np.abs(decrypted[:-1]) <= fx.MAX_ABS * total):
            raise ckks.CkksError("the decrypted sum is beyond the fixed-point bound")
        return strategy.aggregate_sum(global_params, fx.to_fixed(decrypted[:-1]), total, state)
