"""`verify_run`: re-check a run holding only its chain and its artifact store.

The run directory's run.json only says where to look (which chain, which contracts). Every fact
is taken from the chain (round records, membership history, the study's config digest) and from
content-addressed artifacts re-hashed on read; nothing the coordinator wrote elsewhere is trusted.
The auditor never writes into the store it audits, except that for a deployed consortium (whose
run.json lists the members' endpoints as peers) it keeps the artifacts it fetches from them,
each checked against its digest like any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedledger.aggregation import Strategy
from fedledger.audit.base import Auditor
from fedledger.audit.policy import (
    ReputationReplay,
    penalty_reason,
    verify_rejections,
    verify_screening,
)
from fedledger.audit.privacy import verify_privacy
from fedledger.audit.report import AuditReport
from fedledger.audit.secure import study_scheme, verify_record
from fedledger.audit.rounds import RoundStudyAuditor
from fedledger.chain import ChainBackend, Role, RoundRecord, LooseStudy, open_chain
from fedledger.crypto import UpdateCommitment, recover_signer
from fedledger.errors import FedLedgerError
from fedledger.protocol import MANIFEST_FORMAT, RoundTask, UpdateScheme, updates_root
from fedledger.rundir import RunDir
from fedledger.store import ArtifactStore
from fedledger.store.peers import PeerStore
from fedledger.validation import Candidate, Rejection, ValidationRules


def verify_run(run_dir: str | Path, expected_head: str | None = None) -> AuditReport:
    """Check every round of a run; the report lists each check and why any failed.

    `expected_head` is a block hash the auditor got from elsewhere (the end of `fedledger run`
    prints it): the chain must contain that block, which a chain rebuilt from scratch would not.
    """
    run = RunDir(Path(run_dir))
    report = AuditReport(str(run.path))
    info = run.read_run_info()
    if info.get("chain") is None:
        report.record("study", "ledger present", False, "the run was made with the ledger switched off")
        return report
    try:
        backend = open_chain(info["chain"], run.chain)
    except FedLedgerError as exc:
        report.record("chain", "chain reopened intact", False, str(exc))
        return report
    try:
        if expected_head is not None:
            report.record("chain", "contains the expected head block", _has_block(backend, expected_head),
                          f"no block {expected_head} on this chain: it is not the chain the run ended on")
        store = PeerStore(run.store, info.get("peers") or [])
        if info.get("architecture") in ("semi", "full"):
            RoundStudyAuditor(report, backend, info, store).verify()
        else:
            LedgerAuditor(report, backend, info, store).verify()
    finally:
        backend.close()
    return report


def _has_block(backend: ChainBackend, block_hash: str) -> bool:
    try:
        return backend.w3.eth.get_block(block_hash)["hash"].to_0x_hex() == block_hash.lower()
    except Exception:  # web3 raises several types for "no such block" or a malformed hash
        return False


class LedgerAuditor(Auditor):
    """The loosely-coupled study: anchored records, signed updates."""

    def __init__(self, report: AuditReport, backend: ChainBackend, info: dict[str, Any], store: ArtifactStore) -> None:
        super().__init__(report, backend, info, store)
        self.ledger = LooseStudy(backend, info["contracts"]["ledger"])

    def verify(self) -> None:
        config, strategy = self._study_config(self.ledger.config_digest(), self.ledger.initial_model())
        self.config = config
        self.rules = ValidationRules.from_config(config)
        self.expected_changes: Counter = Counter()
        self.samples: dict[tuple[int, str], int] = {}   # (round, member) -> committed samples
        self.aggregated: dict[int, int] = {}
        anchored = self.ledger.anchored_rounds()
        count = self.ledger.round_count()
        self.report.rounds = count
        self.report.record("study", "round events match contract storage", len(anchored) == count and all(
            rec == self.ledger.get_round(i + 1) for i, (rec, _) in enumerate(anchored)),
            f"{len(anchored)} RoundAnchored events but round_count() is {count}, or an event differs from storage")
        parent, state = self.ledger.initial_model(), None
        for record, block in anchored:
            state = self._verify_round(record, block, parent, state, strategy)
            parent = record.model
        self._verify_reputation()
        verify_privacy(self.report, config, self.ledger, self.samples, self.aggregated)

    def _verify_reputation(self) -> None:
        events = self.ledger.all_events()
        replay = ReputationReplay(self.ledger.suspension_threshold())
        admin = self.consortium.admin()
        seen = replay.replay(events, lambda block: admin)
        members = {e["member"] for e in events if e["event"] == "ReputationChanged"}
        replay.verify(self.report, seen, self.expected_changes, {m: self.ledger.reputation(m) for m in members},
                      {m for m in members if self.ledger.suspended(m)})

    def _verify_round(self, rec: RoundRecord, block: int, parent: str, state_before: str | None,
                      strategy: Strategy | None) -> str | None:
        subject = f"round {rec.round}"
        r = self.report
        r.record(subject, "parent is the previous round's model", rec.parent_model == parent,
                 f"parent {rec.parent_model} but the previous model is {parent}")
        self._artifact(subject, "global model", rec.model, self.store.get_params)
        self._artifact(subject, "metrics", rec.metrics_digest, self.store.get_json)
        manifest = self._artifact(subject, "manifest", rec.manifest_digest, self.store.get_json)
        if manifest is None:
            return None
        try:
            entries = list(manifest["updates"])
            fields_match = (manifest["format"] == MANIFEST_FORMAT and manifest["round"] == rec.round
                            and manifest["parent_model"] == rec.parent_model and manifest["model"] == rec.model
                            and manifest["metrics"] == rec.metrics_digest
                            and tuple(e["institution"] for e in entries) == rec.participants)
        except (KeyError, TypeError) as exc:
            r.record(subject, "manifest well-formed", False, f"missing field {exc}")
            return None
        r.record(subject, "manifest agrees with the on-chain record", fields_match,
                 "manifest's round, parent, model, metrics or participants differ from the record")
        r.record(subject, "server state continues from the previous round", manifest["state_before"] == state_before,
                 f"state_before {manifest['state_before']} but the previous round left {state_before}")
        r.record(subject, "Merkle root of the updates", updates_root(entries) == rec.updates_root,
                 f"updates hash to {updates_root(entries)}, the record says {rec.updates_root}")
        task = RoundTask(rec.round, rec.parent_model, self.backend.chain_id, self.ledger.address)
        scheme = study_scheme(self.config, self.ledger)
        secure = verify_record(r, subject, scheme, task, manifest, [e["institution"] for e in entries])
        intact = all([self._verify_update(subject, rec, e, block, lambda d: scheme.load(self.store, d))
                      for e in entries])
        self._verify_outcomes(subject, rec, block, manifest, scheme, task)
        if strategy is not None and intact:
            self._recompute(subject, rec.parent_model, rec.model, manifest, entries, strategy, secure)
        return manifest["state_after"]

    def _verify_outcomes(self, subject: str, rec: RoundRecord, block: int, manifest: dict[str, Any],
                         scheme: UpdateScheme, task: RoundTask) -> None:
        """The anchored rejections are the manifest's, screening again agrees, and the round moved
        reputation as the policy says: +1 per participant, a penalty per institution's rejection
        that was its own fault."""
        try:
            rejections = [Rejection.from_record(x) for x in manifest["rejected"]]
        except (KeyError, TypeError, ValueError) as exc:
            self.report.record(subject, "manifest well-formed", False, f"bad rejection record: {exc}")
            return
        verify_rejections(self.report, subject, rejections, rec.rejected)
        accepted = [Candidate(e["institution"], e["update"], e["num_samples"]) for e in manifest["updates"]]
        for x in [*accepted, *rejections]:
            self.samples.setdefault((rec.round, x.institution), x.num_samples)
        self.aggregated[rec.round] = len(accepted)
        verify_screening(self.report, subject, scheme, self.store, task, accepted, rejections, self.rules)
        for member in rec.participants:
            self.expected_changes[(rec.round, member, "update accepted")] += 1
        for x in rec.rejected:
            change = penalty_reason(x.reason)
            if change and self._held_role(x.member, block, Role.INSTITUTION):
                self.expected_changes[(rec.round, x.member, change)] += 1

    def _verify_update(self, subject: str, rec: RoundRecord, entry: dict[str, Any], block: int,
                       loader: Callable[[str], Any]) -> bool:
        who = entry["institution"]
        sub = f"{subject} update of {who}"
        commitment = UpdateCommitment(chain_id=self.backend.chain_id, ledger=self.ledger.address, round=rec.round,
                                      parent_model=rec.parent_model, update=entry["update"],
                                      num_samples=entry["num_samples"])
        signer = recover_signer(commitment, entry["signature"])
        ok = self.report.record(sub, "signature by the institution", signer == who,
                                f"signature recovers to {signer}, not {who}")
        ok &= self.report.record(sub, "institution was a member when anchored",
                                 self._held_role(who, block, Role.INSTITUTION),
                                 f"{who} did not hold the institution role at block {block}")
        return ok & (self._artifact(sub, "update", entry["update"], loader) is not None)
