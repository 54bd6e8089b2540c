"""The loose architecture's audit: the coordinator's anchored records (StudyLedger.vy) and the
signed updates they name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from fedledger.audit.base import Auditor, Changes, RoundResult, Study, Tally, artifact
from fedledger.audit.manifest import Manifest, read_manifest, verify_manifest
from fedledger.audit.policy import penalty_reason
from fedledger.audit.privacy import verify_privacy
from fedledger.audit.report import AuditReport
from fedledger.chain import ChainBackend, LooseStudy, Role, RoundRecord
from fedledger.crypto import UpdateCommitment, recover_signer
from fedledger.protocol import RoundTask
from fedledger.report import summarize_evaluations
from fedledger.store import ArtifactStore


class LooseAuditor(Auditor):
    """A loose study: anchored records, signed updates."""

    def __init__(self, report: AuditReport, backend: ChainBackend, info: Mapping[str, Any],
                 store: ArtifactStore) -> None:
        super().__init__(report, backend, info, store)
        self.contract = LooseStudy(backend, info["contracts"]["ledger"])

    def verify(self) -> None:
        study = self._study(self.contract)
        anchored = self.contract.anchored_rounds()
        count = self.contract.round_count()
        self.report.rounds = count
        self.report.record("study", "round events match contract storage", len(anchored) == count and all(
            rec == self.contract.get_round(i + 1) for i, (rec, _) in enumerate(anchored)),
            f"{len(anchored)} RoundAnchored events but round_count() is {count}, or an event differs from storage")
        tally = self._verify_rounds(study, anchored, self.contract.initial_model())
        self._verify_reputation(self.contract, self.contract.all_events(), tally.changes)
        verify_privacy(self.report, study.config, self.contract, tally.samples, tally.aggregated)

    def _verify_round(self, study: Study, round: tuple[RoundRecord, int], parent: str,
                      state_before: str | None) -> RoundResult:
        """An anchored round (its record and block): the record, its manifest, the signed updates."""
        rec, block = round
        subject, r = f"round {rec.round}", self.report
        r.record(subject, "parent is the previous round's model", rec.parent_model == parent,
                 f"parent {rec.parent_model} but the previous model is {parent}")
        artifact(r, subject, "global model", rec.model, self.store.get_params)
        metrics = artifact(r, subject, "metrics", rec.metrics_digest, self.store.get_json)
        if metrics is not None:
            self._verify_metrics(subject, metrics, rec.parent_model)
        manifest = read_manifest(r, self.store, subject, rec.manifest_digest)
        if manifest is None:
            return RoundResult(rec.model)
        r.record(subject, "manifest agrees with the on-chain record",
                 manifest.names(rec.round, rec.parent_model, rec.model)
                 and manifest.doc["metrics"] == rec.metrics_digest and tuple(manifest.institutions) == rec.participants,
                 "manifest's round, parent, model, metrics or participants differ from the record")
        r.record(subject, "Merkle root of the updates", manifest.root == rec.updates_root,
                 f"updates hash to {manifest.root}, the record says {rec.updates_root}")
        task = RoundTask(rec.round, rec.parent_model, self.backend.chain_id, self.contract.address)
        verify_manifest(r, self.store, study, task, manifest, model=rec.model, state_before=state_before,
                        rejected=rec.rejected,
                        check_entry=lambda sub, entry: self._verify_signed(sub, task, entry, block))
        return RoundResult(rec.model, manifest.doc["state_after"], Tally(
            self._changes(rec, block), _samples(rec, manifest), {rec.round: len(manifest.entries)}))

    def roster(self, info: Mapping[str, Any]) -> list[str]:
        """The consortium's institutions now, from the chain (not run.json, which could leave out
        a member whose budget would have let the study go on)."""
        head = self.backend.block_number()
        admitted = dict.fromkeys(e["member"] for e in self.membership if e["event"] == "MemberAdded")
        return [m for m in admitted if self._held_role(m, head)]

    def model_of(self, round: int) -> str:
        return self.contract.get_round(round).model

    def _verify_metrics(self, subject: str, metrics: Any, parent: str) -> None:
        """The anchored metrics summarize the signed evaluations of the parent model they name."""
        evaluations = metrics.get("evaluations", {}) if isinstance(metrics, dict) else None
        if not isinstance(evaluations, dict) or metrics.get("evaluated_model") != parent:
            self.report.record(subject, "metrics summarize signed evaluations of the parent", False,
                               "the metrics document names no signed evaluations, or another model")
            return
        figures = self.signed_figures(subject, evaluations, parent)
        if figures is None:
            return
        summary = {k: v for k, v in metrics.items() if k not in ("evaluated_model", "evaluations", "left_out")}
        self.report.record(subject, "metrics summarize signed evaluations of the parent",
                           summary == (summarize_evaluations(figures, self.task) if figures else {}),
                           "the anchored summary differs from the one its signed evaluations give")

    def _verify_signed(self, sub: str, task: RoundTask, entry: Mapping[str, Any], block: int) -> bool:
        """The entry's signature is its institution's, which held the role when the round was anchored."""
        who = entry["institution"]
        commitment = UpdateCommitment(chain_id=task.chain_id, ledger=task.ledger, round=task.round,
                                      parent_model=task.global_model, update=entry["update"],
                                      num_samples=entry["num_samples"])
        signer = recover_signer(commitment, entry.get("signature", ""))     # a missing one recovers to no one
        ok = self.report.record(sub, "signature by the institution", signer == who,
                                f"signature recovers to {signer}, not {who}")
        return ok & self.report.record(sub, "institution was a member when anchored",
                                       self._held_role(who, block, Role.INSTITUTION),
                                       f"{who} did not hold the institution role at block {block}")

    def _changes(self, rec: RoundRecord, block: int) -> Changes:
        """The reputation changes the round calls for: +1 per participant, a penalty per
        institution's rejection that was its own fault."""
        changes: Changes = Counter((rec.round, member, "update accepted") for member in rec.participants)
        for x in rec.rejected:
            change = penalty_reason(x.reason)
            if change and self._held_role(x.member, block, Role.INSTITUTION):
                changes[(rec.round, x.member, change)] += 1
        return changes


def _samples(rec: RoundRecord, manifest: Manifest) -> dict[tuple[int, str], int | None]:
    """The sample count each institution's update in the round declares (its privacy mechanism depends on it)."""
    samples: dict[tuple[int, str], int | None] = {}
    for x in [*manifest.accepted, *manifest.rejections]:
        samples.setdefault((rec.round, x.institution), x.num_samples)
    return samples
