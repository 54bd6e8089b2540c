"""What the audits of the chain-coordinated architectures (semi, full) share: the round
lifecycle of contracts/rounds.vy, from the chain's events and the store.

The contract's event history is replayed in order: the roster, every commitment, how each round
was finalized (semi.py, full.py), every reputation change. For each finalized round the auditor
checks that every commitment came from an active roster institution and is accounted for in the
manifest, that the finalized reason codes are the manifest's, and the manifest as every
architecture does (manifest.py); the reputation changes the rounds call for must be exactly the
contract's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedledger.audit.base import Auditor, Changes, RoundResult, Study, Tally, artifact
from fedledger.audit.history import Events, History, digest
from fedledger.audit.manifest import Manifest, read_manifest, verify_manifest
from fedledger.audit.policy import penalty_reason
from fedledger.audit.privacy import verify_privacy
from fedledger.audit.report import AuditReport
from fedledger.chain import ChainBackend, Commitment, Role, study_contract
from fedledger.chain import Rejection as ChainRejection
from fedledger.protocol import RoundTask, reason_codes
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Rejection

@dataclass(frozen=True)
class Finalization:
    """What checking how a round was finalized hands on to the rest of its audit."""
    changes: Changes = field(default_factory=Counter)   # reputation changes the results or votes call for
    # full, where the scores allow the exclusion rule: its verdicts and the finalized rewards
    excluded: Mapping[str, Rejection] | None = None
    medians: Mapping[str, int] = field(default_factory=dict)
    rewards: Sequence[int] = ()


class RoundsAuditor(Auditor):
    """A semi or full study: the roster, commitments, finalization and reason codes."""

    architecture: str   # "semi" or "full": the study contract, and what its manifests say

    def __init__(self, report: AuditReport, backend: ChainBackend, info: Mapping[str, Any],
                 store: ArtifactStore) -> None:
        super().__init__(report, backend, info, store)
        self.contract = study_contract(self.architecture, backend, info["contracts"]["ledger"])
        self.events = self.contract.all_events()
        self.history = History(self.events)

    def verify(self) -> None:
        r = self.report
        started = [e for e in self.events if e["event"] == "StudyStarted"]
        study = self._study(self.contract, started[0]["members"] if started else ())
        if not r.record("study", "started once", len(started) == 1, f"{len(started)} StudyStarted events"):
            return
        finalized = [e for e in self.events if e["event"] == "RoundFinalized"]
        r.rounds = len(finalized)
        r.record("study", "finalized rounds match contract storage", len(finalized) == self.contract.round_count(),
                 f"{len(finalized)} RoundFinalized events but round_count() is {self.contract.round_count()}")
        tally = self._verify_rounds(study, finalized, self.contract.initial_model())
        self._verify_reputation(self.contract, self.events, tally.changes, study.roster)
        # every commitment's samples, finalized or not: a spend is recorded with its commitment
        samples = {(e["round_number"], e["member"]): e["num_samples"]
                   for e in self.events if e["event"] == "UpdateCommitted"}
        verify_privacy(r, study.config, self.contract, samples, tally.aggregated)
        self._verify_accounts(study)

    def _verify_round(self, study: Study, round: dict[str, Any], parent: str,
                      state_before: str | None) -> RoundResult:
        """The round the RoundFinalized event `round` closed."""
        n = round["round_number"]
        subject, r, events = f"round {n}", self.report, self.history.by_round[n]
        model, manifest_digest = digest(round["model"]), digest(round["manifest_digest"])
        r.record(subject, "parent is the previous round's model", digest(round["parent_model"]) == parent,
                 f"parent {digest(round['parent_model'])} but the previous model is {parent}")
        commitments = self._commitments(study, subject, events["UpdateCommitted"])
        for e in events["UpdateCommitted"]:
            self.verify_evaluation(f"{subject} update of {e['member']}", "committed evaluation of the parent",
                                   digest(e["metrics_digest"]), e["member"], parent, theirs=True)
        reasons = self.contract.finalized_reasons(n)
        finalization = self._verify_finalization(study, subject, n, events, commitments,
                                                 (model, manifest_digest, reasons))
        artifact(r, subject, "global model", model, self.store.get_params)
        manifest = read_manifest(r, self.store, subject, manifest_digest)
        if manifest is None:
            return RoundResult(model, tally=Tally(finalization.changes))
        r.record(subject, "manifest agrees with the chain",
                 manifest.names(n, parent, model) and manifest.doc["architecture"] == self.architecture
                 and manifest.root == manifest.doc["updates_root"],
                 "manifest's format, round, architecture, parent, model or updates root differ")
        self._verify_accounted(subject, commitments, reasons, manifest)
        task = RoundTask(n, parent, self.backend.chain_id, self.contract.address)
        rejected = [ChainRejection(e["member"], digest(e["update"]), e["reason"]) for e in events["UpdateRejected"]]
        verify_manifest(r, self.store, study, task, manifest, model=model, state_before=state_before,
                        rejected=rejected, excluded=finalization.excluded)
        self._verify_outcome(subject, n, commitments, manifest, finalization)
        penalties = Counter((n, c.member, change) for c, code in zip(commitments, reasons)
                            if (change := penalty_reason(code)))
        return RoundResult(model, manifest.doc["state_after"],
                           Tally(finalization.changes + penalties, aggregated={n: len(manifest.entries)}))

    def roster(self, info: Mapping[str, Any]) -> list[str]:
        return self.contract.roster()

    def model_of(self, round: int) -> str:
        finalized = self.contract.finalized(round)
        return finalized[0] if finalized else ""

    def _commitments(self, study: Study, subject: str, committed: Sequence[Mapping[str, Any]]) -> list[Commitment]:
        """The round's commitments, in commit order; each must be an active roster institution's."""
        result = []
        for e in committed:
            member = e["member"]
            self.report.record(f"{subject} update of {member}", "committed by an active roster institution",
                               member in study.roster and self._held_role(member, e["block"], Role.INSTITUTION),
                               f"{member} is not on the roster or lacked the institution role at block {e['block']}")
            result.append(Commitment(member, digest(e["update"]), e["num_samples"]))
        return result

    def _verify_accounted(self, subject: str, commitments: Sequence[Commitment], reasons: Sequence[int],
                          manifest: Manifest) -> None:
        """Every commitment is aggregated or rejected with the digest and samples committed, and
        the finalized reason codes are the manifest's."""
        r = self.report
        committed = {c.member: c for c in commitments}
        accounted = sorted(manifest.institutions) + sorted({x.institution for x in manifest.rejections})
        r.record(subject, "every commitment aggregated or rejected with a reason",
                 sorted(accounted) == sorted(committed) and len(accounted) == len(set(accounted)),
                 f"manifest accounts for {sorted(accounted)}, the chain has commitments from {sorted(committed)}")

        def as_committed(x: Candidate | Rejection) -> bool:
            return committed.get(x.institution) == Commitment(x.institution, x.update, x.num_samples)

        r.record(subject, "aggregated updates are the committed ones", all(map(as_committed, manifest.accepted)),
                 "an aggregated update's digest or sample count differs from its on-chain commitment")
        r.record(subject, "rejected updates are the committed ones", all(map(as_committed, manifest.rejections)),
                 "a rejection names a digest or sample count other than its on-chain commitment")
        codes = reason_codes(commitments, manifest.doc)
        r.record(subject, "finalized reason codes match the manifest", reasons == codes,
                 f"the chain finalized codes {reasons}, the manifest gives {codes}")

    @abstractmethod
    def _verify_finalization(self, study: Study, subject: str, n: int, events: Events,
                             commitments: Sequence[Commitment], final: tuple[str, str, list[int]]) -> Finalization:
        """Check how round `n` reached its `final` (model, manifest digest, reason codes)."""

    def _verify_outcome(self, subject: str, n: int, commitments: Sequence[Commitment], manifest: Manifest,
                        finalization: Finalization) -> None:
        """What the architecture checks of the manifest beyond what every one does (full: the
        exclusions and rewards)."""

    def _verify_accounts(self, study: Study) -> None:
        """What the architecture checks of the study after its rounds (full: reward balances)."""
