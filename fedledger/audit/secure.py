"""Auditing secure aggregation: the manifest's record of how a round's sum was had is what the
chain logged (every member's keys, shares and reveals, the CKKS context and decryption, each
from its sender's own account), and the updates are screened again as far as they can be, so
that recomputing the aggregation checks the whole round."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_SUM, REVEAL, SHARES
from fedledger.protocol.homomorphic import HomomorphicRecord, screen_ciphertexts
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.secure import SecureRecord, record_from_manifest, round_context, screen_masked
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Rejection

Screen = Callable[[Sequence[Candidate], int], tuple[list[Candidate], list[Rejection]]]


def protection(config: Mapping[str, Any] | None) -> str:
    """The study's [privacy] secure_aggregation ("none" for plain updates)."""
    return (config or {}).get("privacy", {}).get("secure_aggregation", "none")


def update_screening(config: Mapping[str, Any] | None, board: Any, store: ArtifactStore, task: RoundTask
                     ) -> tuple[Callable[[str], Any], Screen | None]:
    """How the round's updates load (for the artifact check) and are screened again: None for
    plain updates, which `screen_updates` screens."""
    kind = protection(config)
    if kind == "secagg":
        size = store.get_params(task.global_model).size
        shared = list(board.secagg_posts(task.round, SHARES))
        return store.get_arrays, lambda candidates, least: screen_masked(store, size, candidates, shared, least)
    if kind == "ckks":
        size = store.get_params(task.global_model).size
        context = next(iter(board.secagg_posts(1, CKKS_CONTEXT).values()), "")
        return store.get, lambda candidates, least: screen_ciphertexts(store, size, candidates, context, least)
    return store.get_params, None


def verify_secure_record(report: AuditReport, subject: str, config: Mapping[str, Any] | None, board: Any,
                         task: RoundTask, manifest: Mapping[str, Any], aggregated: Sequence[str]
                         ) -> SecureRecord | HomomorphicRecord | None:
    """The round's secure-aggregation record, checked against the chain; None for a round
    without one (a study without secure aggregation, or a round that aggregated nothing)."""
    kind = protection(config)
    try:
        record = record_from_manifest(manifest.get("secure_aggregation"))
    except ValueError as exc:
        report.record(subject, "secure-aggregation record well-formed", False, str(exc))
        return None
    if record is None:
        as_configured = kind == "none" or not aggregated
    else:
        as_configured = isinstance(record, {"secagg": SecureRecord, "ckks": HomomorphicRecord}.get(kind, type(None)))
    report.record(subject, "secure aggregation as configured", as_configured,
                  f"the study's secure_aggregation is {kind!r}, the manifest's record is {type(record).__name__}")
    if record is None or not as_configured:
        return None
    if isinstance(record, SecureRecord):
        _verify_masking(report, subject, record, board, task, aggregated)
    else:
        _verify_homomorphic(report, subject, record, board, task, aggregated)
    return record


def _verify_masking(report: AuditReport, subject: str, record: SecureRecord, board: Any, task: RoundTask,
                    aggregated: Sequence[str]) -> None:
    keys = {m: [c.hex(), k.hex()] for m, (c, k) in board.advertised_keys(task.round).items()}
    shares, reveals = board.secagg_posts(task.round, SHARES), board.secagg_posts(task.round, REVEAL)
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


def _verify_homomorphic(report: AuditReport, subject: str, record: HomomorphicRecord, board: Any, task: RoundTask,
                        aggregated: Sequence[str]) -> None:
    contexts = set(board.secagg_posts(1, CKKS_CONTEXT).values())
    report.record(subject, "CKKS context is the one logged on chain", contexts == {record.context},
                  f"the record's context {record.context}, the chain logged {sorted(contexts)}")
    report.record(subject, "decrypted sum is the one its key holder logged on chain",
                  board.secagg_posts(task.round, CKKS_SUM).get(record.decrypted_by) == record.decrypted_sum
                  and record.decrypted_by in aggregated and sorted(record.senders) == sorted(aggregated),
                  f"{record.decrypted_by} logged no decrypted sum {record.decrypted_sum} in this round, or is "
                  "not one of the senders")
