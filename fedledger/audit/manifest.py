"""The check every architecture makes of a round's manifest: read and parsed, its state
continuing from the previous round, its secure-aggregation record, update artifacts and
rejections against the chain, its updates screened again, and the aggregation recomputed.

What the manifest must agree with on chain differs by architecture (an anchored record under
loose, the commitments and the finalized result under semi and full): the architectures' own
auditors check that, with `Manifest.names` and `Manifest.root`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedledger.aggregation import Strategy
from fedledger.audit.base import Study, artifact
from fedledger.audit.policy import verify_rejections, verify_screening
from fedledger.audit.report import AuditReport
from fedledger.audit.secure import verify_record
from fedledger.chain import Rejection as ChainRejection
from fedledger.errors import FedLedgerError
from fedledger.protocol import MANIFEST_FORMAT, AggregationRecord, RoundTask, aggregate_round, updates_root
from fedledger.store import ArtifactStore, encode_arrays, encode_params, sha256_hex
from fedledger.validation import Candidate, Rejection

# build_manifest's fields that the audit reads: one format, so every architecture's manifest has them all
FIELDS = ("format", "round", "architecture", "parent_model", "model", "metrics", "state_before", "state_after",
          "updates", "updates_root", "rejected")


@dataclass(frozen=True)
class Manifest:
    """A round's manifest, parsed: the document, its update entries and rejections, and the
    Merkle root its entries hash to."""
    doc: Mapping[str, Any]
    entries: list[dict[str, Any]]
    rejections: list[Rejection]
    root: str

    def names(self, round: int, parent: str, model: str) -> bool:
        """Whether it is, in this format, the manifest of `round` from `parent` to `model`."""
        doc = self.doc
        return (doc["format"] == MANIFEST_FORMAT and doc["round"] == round and doc["parent_model"] == parent
                and doc["model"] == model)

    @property
    def institutions(self) -> list[str]:
        """Whose updates it aggregated."""
        return [e["institution"] for e in self.entries]

    @property
    def accepted(self) -> list[Candidate]:
        return [Candidate(e["institution"], e["update"], e["num_samples"]) for e in self.entries]


def read_manifest(report: AuditReport, store: ArtifactStore, subject: str, digest: str) -> Manifest | None:
    """The manifest with `digest`, parsed; None (recorded) if it is missing, corrupt or malformed."""
    doc = artifact(report, subject, "manifest", digest, store.get_json)
    if doc is None:
        return None
    try:
        entries = list(doc["updates"])
        root = updates_root(entries)     # reads every entry's institution, update and sample count
        missing = [repr(key) for key in FIELDS if key not in doc]
    except (KeyError, TypeError) as exc:
        missing = [str(exc)]
    if missing:
        report.record(subject, "manifest well-formed", False, f"missing field {missing[0]}")
        return None
    try:
        rejections = [Rejection.from_record(x) for x in doc["rejected"]]
    except (KeyError, TypeError, ValueError) as exc:
        report.record(subject, "manifest well-formed", False, f"bad rejection record: {exc}")
        return None
    return Manifest(doc, entries, rejections, root)


def verify_manifest(report: AuditReport, store: ArtifactStore, study: Study, task: RoundTask, manifest: Manifest, *,
                    model: str, state_before: str | None, rejected: Sequence[ChainRejection],
                    check_entry: Callable[[str, Mapping[str, Any]], bool] | None = None,
                    excluded: Mapping[str, Rejection] | None = None) -> None:
    """Check round `task.round`'s manifest against the chain's `model` and `rejected` records
    and the previous round's `state_before`. `check_entry(subject, entry)`: the architecture's
    own checks of each update entry (loose: its signature), which must pass, as its artifact
    must, for the aggregation to be recomputed; `excluded`: what the exclusion rule left out (full)."""
    subject, doc = f"round {task.round}", manifest.doc
    report.record(subject, "server state continues from the previous round", doc["state_before"] == state_before,
                  f"state_before {doc['state_before']} but the previous round left {state_before}")
    secure = verify_record(report, subject, study.scheme, task, doc, manifest.institutions)
    intact = True
    for entry in manifest.entries:
        sub = f"{subject} update of {entry['institution']}"
        checked = check_entry(sub, entry) if check_entry else True
        loaded = artifact(report, sub, "update", entry["update"], lambda d: study.scheme.load(store, d))
        intact = intact and checked and loaded is not None
    verify_rejections(report, subject, manifest.rejections, rejected)
    verify_screening(report, subject, study.scheme, store, task, manifest.accepted, manifest.rejections, study.rules,
                     excluded)
    if study.strategy is not None and intact:
        _recompute(report, store, subject, task.global_model, model, manifest, study.strategy, secure)


def _recompute(report: AuditReport, store: ArtifactStore, subject: str, parent: str, model: str, manifest: Manifest,
               strategy: Strategy, record: AggregationRecord | None) -> None:
    """Aggregate the entries again (under secure aggregation: unmask their sum with the
    revealed shares); the result must hash to `model` and the manifest's state."""
    doc = manifest.doc
    try:
        params, state = aggregate_round(store, strategy, parent, manifest.entries, doc["state_before"], record)
    except FedLedgerError as exc:
        report.record(subject, "aggregation recomputed", False, str(exc))
        return
    recomputed = sha256_hex(encode_params(params))
    report.record(subject, "aggregation recomputed", recomputed == model,
                  f"recomputing {strategy.name} from the stored updates gives {recomputed}, the chain says {model}")
    state_after = sha256_hex(encode_arrays(state)) if state else None
    report.record(subject, "server state recomputed", state_after == doc["state_after"],
                  f"recomputed state {state_after}, the manifest says {doc['state_after']}")
