"""The loosely-coupled coordinator: screens signed updates, aggregates, anchors one record a round.

It can stall or censor, but everything it claims is anchored with digests that `audit verify`
re-derives from the store, so it cannot falsify a round unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from fedledger.aggregation import Strategy
from fedledger.chain import (
    NO_SPEND,
    PrivacySpend,
    RoundRecord,
    StudyLedger,
    spend_problem,
)
from fedledger.crypto import merkle_proof, recover_signer
from fedledger.errors import StoreError
from fedledger.protocol.manifest import aggregate_round, build_manifest, update_leaves
from fedledger.protocol.messages import Rejection, RoundTask, SignedUpdate
from fedledger.protocol.secure import screen_round
from fedledger.store import ArtifactStore, check_digest
from fedledger.validation import Reason, ValidationRules


@dataclass(frozen=True)
class RoundOutcome:
    round: int
    model: str                       # digest of the new global model
    state: str | None                # digest of the server-optimizer state after the round
    manifest: str                    # digest of the manifest artifact
    record: RoundRecord              # what was (or, with the ledger off, would have been) anchored
    accepted: tuple[SignedUpdate, ...]
    rejected: tuple[Rejection, ...]
    proofs: Mapping[str, list[str]]  # institution -> Merkle proof of its accepted update


class Coordinator:
    def __init__(self, account: LocalAccount, store: ArtifactStore, strategy: Strategy,
                 institutions: Callable[[Sequence[str]], set[str]], ledger: StudyLedger | None,
                 chain_id: int, ledger_address: str, architecture: str = "loose",
                 rules: ValidationRules = ValidationRules(),
                 suspended: Callable[[Sequence[str]], set[str]] = lambda addresses: set(),
                 epsilon_budget: int = 0, scheme: Any | None = None) -> None:
        self.account = account
        self.store = store
        self.strategy = strategy
        # which of these addresses are active members with the institution role (one chain read a round)
        self.institutions = institutions
        self.ledger = ledger
        self.chain_id = chain_id
        self.ledger_address = ledger_address
        self.architecture = architecture
        self.rules = rules
        # which of these members the reputation policy has suspended (one chain read each)
        self.suspended = suspended
        # fault experiments only: nudge every aggregate before anchoring it (audit flags each round)
        self.falsify = False
        # each member's privacy budget (epsilon, millionths; 0: none) and its spends so far, as
        # the ledger records them: the coordinator checks a spend as the contract would
        self.epsilon_budget = epsilon_budget
        self.epsilon_spent: dict[str, int] = {}
        self._released: dict[tuple[str, str], PrivacySpend | None] = {}
        # secure aggregation (fedledger.protocol.secure.Masking); None: plain updates
        self.scheme = scheme

    def open_round(self, round: int, global_model: str) -> RoundTask:
        return RoundTask(round=round, global_model=global_model, chain_id=self.chain_id,
                         ledger=self.ledger_address, client_config=self.strategy.client_config())

    def screen(self, task: RoundTask, submissions: Sequence[SignedUpdate]
               ) -> tuple[list[SignedUpdate], list[Rejection]]:
        """Accept the submissions that are signed, from active unsuspended members, for this
        round, and pass validation (`screen_updates`); reject the others with their reason."""
        claimed = [s.institution for s in submissions]
        members = self.institutions(claimed)
        suspended = self.suspended([a for a in claimed if a in members])
        rejected: list[Rejection] = []
        eligible: list[SignedUpdate] = []
        for sub in submissions:
            problem = self._protocol_problem(task, sub, members, suspended) or self._privacy_problem(sub)
            if problem:
                rejected.append(Rejection(sub.institution, *problem, _digest_or_none(sub.commitment.update),
                                          sub.commitment.num_samples))
            else:
                eligible.append(sub)
        # what each screened submission released, for anchoring the spends of rejected ones
        self._released = {(s.institution, s.commitment.update): s.spend for s in eligible}
        passed, invalid = screen_round(self.store, task, [s.candidate() for s in eligible], self.rules,
                                       scheme=self.scheme)
        by_candidate = {s.candidate(): s for s in reversed(eligible)}   # identical resubmissions: keep the first
        return [by_candidate[c] for c in passed], rejected + invalid

    @staticmethod
    def _protocol_problem(task: RoundTask, sub: SignedUpdate, members: set[str], suspended: set[str]
                          ) -> tuple[Reason, str] | None:
        c = sub.commitment
        if recover_signer(c, sub.signature) != sub.institution:
            return Reason.BAD_SIGNATURE, "signature does not match the institution's address"
        if sub.institution not in members:
            return Reason.NOT_MEMBER, "not an active member with the institution role"
        if sub.institution in suspended:
            return Reason.SUSPENDED, "suspended by the reputation policy until governance re-admits it"
        if (c.round, c.parent_model, c.chain_id, c.ledger.lower()) != (
                task.round, task.global_model, task.chain_id, task.ledger.lower()):
            return Reason.WRONG_ROUND, "commitment is for another round, model or ledger (replay?)"
        return None

    def _privacy_problem(self, sub: SignedUpdate) -> tuple[Reason, str] | None:
        code = spend_problem(sub.spend or NO_SPEND, self._spent(sub.institution), self.epsilon_budget)
        if code == Reason.PRIVACY_BUDGET:
            return Reason.PRIVACY_BUDGET, "the release would take the member past the study's privacy budget"
        if code is not None:
            return Reason.INVALID_FORMAT, "missing or malformed privacy spend"
        return None

    def _spent(self, member: str) -> int:
        if member not in self.epsilon_spent:
            self.epsilon_spent[member] = self.ledger.epsilon_spent(member) if self.ledger is not None else 0
        return self.epsilon_spent[member]

    def _spends(self, accepted: Sequence[SignedUpdate], rejected: Sequence[Rejection]
                ) -> tuple[tuple[tuple[str, PrivacySpend], ...], tuple[tuple[str, PrivacySpend], ...]]:
        """The spends to anchor: every participant's, and those of rejected updates that were
        the member's own well-formed releases (codes 6 to 14), which count as spent too."""
        if not self.epsilon_budget:
            return (), ()
        by_member = {u.institution: u.spend for u in accepted}
        rejected_spends: dict[str, PrivacySpend] = {}
        for r in rejected:
            spend = self._released.get((r.institution, r.update))
            if spend is not None and Reason.MISSING <= r.code <= Reason.LOW_SCORE:
                rejected_spends.setdefault(r.institution, spend)
        for member, spend in [*by_member.items(), *rejected_spends.items()]:
            self.epsilon_spent[member] = spend.epsilon
        return tuple(by_member.items()), tuple(rejected_spends.items())

    def finalize(self, task: RoundTask, accepted: Sequence[SignedUpdate], rejected: Sequence[Rejection],
                 state_before: str | None,
                 evaluate: Callable[[str], Mapping[str, Any]]) -> RoundOutcome:
        """Aggregate the accepted updates, store model and manifest, anchor the round record (with
        no accepted update the round keeps its parent model, and the rejections are anchored)."""
        entries = [u.as_entry() for u in accepted]
        secure = (self.scheme.record(self.store, task, [u.institution for u in accepted])
                  if self.scheme is not None and entries else None)
        params, state = aggregate_round(self.store, self.strategy, task.global_model, entries, state_before, secure)
        if self.falsify:
            params = params + np.float32(0.01)
        model = self.store.put_params(params)
        state_after = self.store.put_arrays(state) if state else None
        metrics = self.store.put_json(evaluate(model))
        manifest = build_manifest(round=task.round, architecture=self.architecture, strategy=self.strategy,
                                  parent_model=task.global_model, model=model, state_before=state_before,
                                  state_after=state_after, entries=entries,
                                  rejected=[r.as_record() for r in rejected],
                                  metrics=metrics)
        if secure is not None:
            manifest["secure_aggregation"] = secure.as_manifest()
        manifest_digest = self.store.put_json(manifest)
        spends, rejected_spends = self._spends(accepted, rejected)
        record = RoundRecord(round=task.round, parent_model=task.global_model, model=model,
                             updates_root=manifest["updates_root"],
                             participants=tuple(e["institution"] for e in manifest["updates"]),
                             metrics_digest=metrics, manifest_digest=manifest_digest,
                             rejected=tuple((r.institution, r.update, int(r.code)) for r in rejected),
                             spends=spends, rejected_spends=rejected_spends)
        if self.ledger is not None:
            self.ledger.anchor_round(self.account, record)
        leaves = update_leaves(manifest["updates"])
        proofs = {e["institution"]: merkle_proof(leaves, leaf) for e, leaf in zip(manifest["updates"], leaves)}
        return RoundOutcome(task.round, model, state_after, manifest_digest, record,
                            tuple(accepted), tuple(rejected), proofs)


def _digest_or_none(update: str) -> str | None:
    """A submission's claimed digest if it is one (a forged submission may name anything)."""
    try:
        return check_digest(update)
    except StoreError:
        return None
