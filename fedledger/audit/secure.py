"""Auditing secure aggregation: the manifest's record of a round's unmasking is what the chain
logged (every member's keys, shares and reveals, from its own account), so that recomputing the
aggregation from the masked updates and the revealed shares checks the whole round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain.secagg import REVEAL, SHARES
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.secure import SecureRecord, round_context


def masked_updates(config: Mapping[str, Any] | None) -> bool:
    """Whether the study's updates are masked ([privacy] secure_aggregation)."""
    return (config or {}).get("privacy", {}).get("secure_aggregation", "none") != "none"


def verify_secure_record(report: AuditReport, subject: str, config: Mapping[str, Any] | None, board: Any,
                         task: RoundTask, manifest: Mapping[str, Any], aggregated: Sequence[str]
                         ) -> SecureRecord | None:
    """The round's secure-aggregation record, checked against the chain; None for a round
    without one (a study without secure aggregation, or a round that aggregated nothing)."""
    secure = masked_updates(config)
    try:
        record = SecureRecord.from_manifest(manifest.get("secure_aggregation"))
    except ValueError as exc:
        report.record(subject, "secure-aggregation record well-formed", False, str(exc))
        return None
    if record is None:
        report.record(subject, "secure aggregation as configured", not (secure and aggregated),
                      "the study aggregates masked updates, and the manifest names no unmasking")
        return None
    keys = {m: [c.hex(), k.hex()] for m, (c, k) in board.advertised_keys(task.round).items()}
    shares, reveals = board.secagg_posts(task.round, SHARES), board.secagg_posts(task.round, REVEAL)
    report.record(subject, "secure aggregation as configured", secure, "masked updates in a study without them")
    report.record(subject, "secure-aggregation context is this round's",
                  record.context == round_context(task).hex(), "the record's context is another study's or round's")
    report.record(subject, "keys and shares are the ones logged on chain",
                  record.keys == keys and record.shares == shares,
                  "the record's keys or shares differ from the KeysAdvertised / SecAggPosted events")
    report.record(subject, "reveals are the senders' logged on chain",
                  all(reveals.get(m) == d for m, d in record.reveals.items()) and set(record.reveals) <= set(aggregated),
                  "a reveal the record uses was not logged by that sender")
    report.record(subject, "senders and dropped members add up",
                  sorted(record.senders) == sorted(aggregated)
                  and sorted(record.dropped) == sorted(m for m in shares if m in keys and m not in aggregated),
                  f"the record's senders {record.senders} and dropped {record.dropped} do not match the "
                  f"aggregated updates and the members that shared")
    return record
