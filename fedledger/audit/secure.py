"""Auditing how a round's sum was had: the manifest's record of it is what the chain logged
(every member's keys, shares and reveals, the CKKS context and decryption, each from its sender's
own account), so that recomputing the aggregation from it checks the whole round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain.secagg import CKKS_SUM, REVEAL
from fedledger.protocol import AggregationRecord, RoundTask, UpdateScheme, make_scheme, record_from_manifest
from fedledger.protocol.homomorphic import Homomorphic, HomomorphicRecord
from fedledger.protocol.masking import Masking, MaskingRecord, digests, hex_keys, round_context
from fedledger.protocol.sampling import ClientDraw


def study_scheme(config: Mapping[str, Any] | None, board: Any, names: Mapping[str, str]) -> UpdateScheme:
    """The update scheme the study's config names ([privacy] secure_aggregation), reading `board`,
    its rounds' members drawn from the consortium's `names` (address -> name)."""
    config = config or {}
    kind = config.get("privacy", {}).get("secure_aggregation", "none")
    return make_scheme(kind, board, int(config.get("protocol", {}).get("commit_window", 1)),
                       ClientDraw.of(config, names))


def verify_record(report: AuditReport, subject: str, scheme: UpdateScheme, task: RoundTask,
                  manifest: Mapping[str, Any], aggregated: Sequence[str]) -> AggregationRecord | None:
    """The round's record of how its sum was had, checked against the chain; None for a round
    without one (plain updates, or a round that aggregated nothing)."""
    try:
        record = record_from_manifest(manifest.get("secure_aggregation"))
    except ValueError as exc:
        report.record(subject, "secure-aggregation record well-formed", False, str(exc))
        return None
    expected = {Masking: MaskingRecord, Homomorphic: HomomorphicRecord}.get(type(scheme))
    as_configured = (record is None and (expected is None or not aggregated)) or (
        expected is not None and isinstance(record, expected))
    report.record(subject, "secure aggregation as configured", as_configured,
                  f"the study's secure_aggregation is {scheme.name!r}, the manifest's record is {type(record).__name__}")
    if record is None or not as_configured:
        return None
    if isinstance(record, MaskingRecord):
        assert isinstance(scheme, Masking)
        _verify_masking(report, subject, record, scheme, task, aggregated)
    elif isinstance(record, HomomorphicRecord):
        assert isinstance(scheme, Homomorphic)
        _verify_homomorphic(report, subject, record, scheme, task, aggregated)
    return record


def _verify_masking(report: AuditReport, subject: str, record: MaskingRecord, scheme: Masking, task: RoundTask,
                    aggregated: Sequence[str]) -> None:
    keys, shares = hex_keys(scheme.settled_keys(task.round)), digests(scheme.settled_shares(task.round))
    reveals = digests({p.member: p.value for p in scheme.board.data_posts(task.round, REVEAL)})
    report.record(subject, "secure-aggregation context is this round's",
                  record.context == round_context(task).hex(), "the record's context is another study's or round's")
    report.record(subject, "keys and shares are the ones logged on chain",
                  record.keys == keys and record.shares == shares,
                  "the record's keys or shares differ from the KeysAdvertised / SecAggData events")
    report.record(subject, "reveals are the senders' logged on chain",
                  all(reveals.get(m) == d for m, d in record.reveals.items()) and set(record.reveals) <= set(aggregated),
                  "a reveal the record uses was not logged by that sender")
    report.record(subject, "senders and dropped members add up",
                  sorted(record.senders) == sorted(aggregated)
                  and sorted(record.dropped) == sorted(m for m in shares if m not in aggregated),
                  f"the record's senders {record.senders} and dropped {record.dropped} do not match the "
                  f"aggregated updates and the members that shared")


def _verify_homomorphic(report: AuditReport, subject: str, record: HomomorphicRecord, scheme: Homomorphic,
                        task: RoundTask, aggregated: Sequence[str]) -> None:
    report.record(subject, "CKKS context is the one logged on chain", scheme.context_digest() == record.context,
                  f"the record's context {record.context}, the chain logged {scheme.context_digest()}")
    report.record(subject, "decrypted sum is the one its key holder logged on chain",
                  scheme.board.secagg_posts(task.round, CKKS_SUM).get(record.decrypted_by) == record.decrypted_sum
                  and record.decrypted_by in aggregated and sorted(record.senders) == sorted(aggregated),
                  f"{record.decrypted_by} logged no decrypted sum {record.decrypted_sum} in this round, or is "
                  "not one of the senders")
