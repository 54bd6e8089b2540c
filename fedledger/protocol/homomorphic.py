"""CKKS homomorphic aggregation in the round protocol ([privacy] secure_aggregation = "ckks").

The loose coordinator holds no key, so it adds ciphertexts it cannot read:
1. **Keys, once.** In the first round every member advertises X25519 sealing keys on chain; the
   first institution of the roster (the dealer) generates the CKKS keys once the key set is
   settled, stores the public context and logs its digest (step CKKS_CONTEXT), and seals the
   secret context for every advertised member, itself included (step CKKS_KEYS). Each member
   opens its own copy. A member's sealing key is derived from its account key, so a restarted
   node opens its copy again; no key is a global variable.
2. **Each round.** Members encrypt [weight x parameters, weight] under the public context and
   commit the ciphertext as their update. The coordinator checks each ciphertext's framing and
   key digest, adds the accepted ones and asks a key holder (the first sender by address) to
   decrypt the sum; the key holder stores the decryption and logs its digest (step CKKS_SUM).
3. The sum is aggregated like secure aggregation's (`Strategy.aggregate_sum`), from the decrypted
   sum put on the fixed-point grid. CKKS is approximate: the model is within about 1e-7 of the
   plain one, not the same bytes, but the same decrypted sum always gives the same model.

The manifest names the context, the encrypted and the decrypted sum and who decrypted it. An
auditor re-adds the ciphertexts and checks the encrypted sum and the chain's records; it cannot
check the decryption itself without the secret key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.aggregation import Strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM
from fedledger.errors import StoreError
from fedledger.privacy import PublicKeys, SecAggMember, ckks
from fedledger.protocol.context import ACTED, MemberContext, Step, waiting
from fedledger.protocol.masking import settled
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.sampling import ClientDraw
from fedledger.protocol.scheme import AggregationRecord, SitOut, UpdateScheme
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.validation import Candidate, Reason, Rejection, ValidationRules
from fedledger.validation.screen import screen_protected, unloadable

SCHEME = "ckks/1"
SUM = "sum"          # the tensor name of a decrypted sum artifact
KEY_ROUND = 1        # the round whose messages hold the study's keys


def key_context(task: RoundTask) -> bytes:
    """What binds the sealing of the secret context to one study."""
    return f"fedledger {SCHEME} keys|{task.chain_id}|{task.ledger.lower()}".encode()


def sealing_member(ctx: MemberContext, task: RoundTask) -> SecAggMember:
    """This member's sealing keys for the study, derived from its account key: the same in every
    run of its node, and no one else's to derive."""
    stream = HKDF(hashes.SHA256(), 64, salt=None, info=key_context(task)).derive(bytes(ctx.account.key))
    chunks = iter((stream[:32], stream[32:], bytes(32)))
    return SecAggMember(ctx.address, key_context(task), random_bytes=lambda n: next(chunks)[:n])


class Homomorphic(UpdateScheme):
    """CKKS aggregation (see the module docstring)."""

    name = "ckks"

    def __init__(self, board: Any, window: int, draw: ClientDraw = ClientDraw()) -> None:
        super().__init__(board, window, draw)
        self._keys: ckks.CkksKeys | None = None      # this member's copy of the key set, once opened
        self._public: bytes | None = None

    def context_digest(self) -> str | None:
        """The digest of the study's public context, as the dealer logged it; None before then."""
        return next(iter(self.board.secagg_posts(KEY_ROUND, CKKS_CONTEXT).values()), None)

    # --- a member's side ----------------------------------------------------------------------

    def prepare(self, ctx: MemberContext, task: RoundTask, expected: Sequence[str]) -> Step | None:
        digest = self.context_digest()
        if digest is None:
            return self._make_keys(ctx, task, expected)
        if self._public is None:
            # the dealer's two posts (context, sealed copies) may land in different blocks
            dealer = ctx.roster[0]
            copies = self.board.secagg_posts(KEY_ROUND, CKKS_KEYS).get(dealer)
            if copies is None:
                return waiting(f"the sealed copies of the CKKS keys from {ctx.name(dealer)}")
            self._public = ctx.store.get(digest)
            self._keys = self._open_keys(ctx, task, dealer, copies)
        return None

    def _make_keys(self, ctx: MemberContext, task: RoundTask, expected: Sequence[str]) -> Step:
        r, me = task.round, ctx.address
        if r != KEY_ROUND:
            raise SitOut(f"round {r}: no CKKS keys were made in round {KEY_ROUND}")
        adverts = self.board.key_adverts(KEY_ROUND)
        if me not in {p.member for p in adverts}:
            keys = sealing_member(ctx, task).public_keys()
            ctx.send("advertised my key for the CKKS keys",
                     lambda: self.board.advertise_keys(ctx.account, KEY_ROUND, keys.cipher_key, keys.mask_key))
            return ACTED
        dealer = ctx.roster[0]
        if me != dealer:
            return waiting(f"the CKKS keys from {ctx.name(dealer)}")
        advertised, wake = settled(adverts, expected, self.window, self.board.block_number())
        if advertised is None:
            return waiting("the members' keys for the CKKS keys", wake)
        keys = ckks.CkksKeys.generate()
        sealer = sealing_member(ctx, task)
        sealed = {m: sealer.seal_to(PublicKeys(m, *k), keys.secret_context()).hex() for m, k in advertised.items()}
        context, copies = ctx.store.put(keys.public_context()), ctx.store.put_json(sealed)
        ctx.send("made the study's CKKS keys",
                 lambda: self.board.post_secagg(ctx.account, KEY_ROUND, CKKS_CONTEXT, context))
        ctx.send("sealed a copy of the CKKS keys for each member",
                 lambda: self.board.post_secagg(ctx.account, KEY_ROUND, CKKS_KEYS, copies))
        return ACTED

    def _open_keys(self, ctx: MemberContext, task: RoundTask, dealer: str, copies: str) -> ckks.CkksKeys | None:
        """This member's copy of the keys from the `dealer`'s sealed `copies` (their digest); None
        if it was not sealed one (it can still encrypt)."""
        sealed = ctx.store.get_json(copies).get(ctx.address)
        if sealed is None:
            return None
        dealer_keys = PublicKeys(dealer, *self.board.advertised_keys(KEY_ROUND)[dealer])
        return ckks.CkksKeys.load(sealing_member(ctx, task).open_from(dealer_keys, bytes.fromhex(sealed)))

    def protect(self, ctx: MemberContext, task: RoundTask, params: np.ndarray, num_samples: int) -> str:
        assert self._public is not None
        return ctx.store.put(ckks.encrypt(self._public, ckks.weighted_input(params, num_samples)))

    def conclude(self, ctx: MemberContext, task: RoundTask, notice: Mapping[str, Any]) -> Step | None:
        """The key holder the aggregator asked decrypts the round's encrypted sum."""
        r, total = task.round, notice.get("encrypted_sum")
        if notice.get("decrypt_by") != ctx.address or not isinstance(total, str) or self._keys is None \
                or ctx.address in self.board.secagg_posts(r, CKKS_SUM):
            return None
        decrypted = ctx.store.put_arrays({SUM: self._keys.decrypt(ctx.store.get(total))})
        ctx.send(f"round {r}: decrypted the round's sum",
                 lambda: self.board.post_secagg(ctx.account, r, CKKS_SUM, decrypted))
        return ACTED

    # --- an aggregator's (and the auditor's) side ---------------------------------------------

    def check_updates(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate],
                      rules: ValidationRules, excluded: Mapping[str, Rejection] | None = None
                      ) -> tuple[list[Candidate], list[Rejection]]:
        """What can be checked of encrypted updates: each ciphertext's framing, that it is under
        the study's key set and its length (its values cannot be seen)."""
        length = store.get_params(task.global_model).size + 1
        key = self.context_digest() or ""
        return screen_protected(candidates, lambda c: _ciphertext_problem(store, c, key, length), rules.min_aggregated)

    def load(self, store: ArtifactStore, digest: str) -> Any:
        return store.get(digest)

    def announce(self, store: ArtifactStore, task: RoundTask, accepted: Sequence[Candidate]) -> dict[str, Any]:
        """The coordinator adds the senders' ciphertexts and asks the first sender to decrypt."""
        if not accepted:
            return {"senders": []}
        senders = sorted(c.institution for c in accepted)
        return {"senders": senders, "encrypted_sum": store.put(self._sum(store, accepted)), "decrypt_by": senders[0]}

    def record(self, store: ArtifactStore, task: RoundTask, accepted: Sequence[Candidate]) -> HomomorphicRecord | Step:
        senders = sorted(c.institution for c in accepted)
        decrypted = self.board.secagg_posts(task.round, CKKS_SUM).get(senders[0])
        if decrypted is None:
            return waiting(f"round {task.round}: the decrypted sum from {senders[0]}")
        return HomomorphicRecord(self.context_digest() or "", sha256_hex(self._sum(store, accepted)), decrypted,
                                 senders[0], senders)

    def _sum(self, store: ArtifactStore, accepted: Sequence[Candidate]) -> bytes:
        public = store.get(self.context_digest() or "")
        return ckks.add(public, [store.get(c.update) for c in sorted(accepted, key=lambda c: c.institution)])


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
class HomomorphicRecord(AggregationRecord):
    """What a CKKS round's aggregation used, as the manifest names it."""
    context: str          # digest of the public context
    encrypted_sum: str    # digest of the sum of the senders' ciphertexts
    decrypted_sum: str    # digest of its decryption (float64 arrays {"sum": ...})
    decrypted_by: str
    senders: list[str]

    scheme: ClassVar[str] = SCHEME

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
