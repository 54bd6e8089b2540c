"""A round's result, as every aggregator makes it: screen the updates, aggregate the accepted
ones, store the model, the server state and the manifest.

Every honest aggregator computes its result from the same inputs (the commitments on chain or
the signed updates it collected, the artifacts in the store, the strategy in the config) with the
same order-independent code, so honest results are byte-identical and their digests agree; a
disagreeing digest means a fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.aggregation import Strategy
from fedledger.chain import Commitment
from fedledger.protocol.manifest import aggregate_round, build_manifest
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.scheme import AggregationRecord
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Rejection


@dataclass(frozen=True)
class Aggregate:
    """One aggregator's result for a round."""
    model: str
    state: str | None
    manifest_digest: str
    manifest: dict[str, Any]


def round_task(study: Any, strategy: Strategy, round: int, parent: str) -> RoundTask:
    """What every member of `study` is asked in `round`: train from `parent`, bound to this
    study's contract on this chain."""
    return RoundTask(round=round, global_model=parent, chain_id=study.chain_id, ledger=study.address,
                     client_config=strategy.client_config())


def parent_model(study: Any, round: int) -> str:
    """The model round `round` of a semi or full study trains from: the previous round's
    finalized model. Not `latest_model`, which moves on the moment `round` itself finalizes, so
    an aggregator answering late would otherwise aggregate onto the round's own result."""
    return study.finalized(round - 1)[0] if round > 1 else study.initial_model()


def state_before(study: Any, store: ArtifactStore, round: int) -> str | None:
    """The server-optimizer state round `round` continues from: the previous round's."""
    return store.get_json(study.round_manifest(round - 1))["state_after"] if round > 1 else None


def candidates(commitments: Sequence[Commitment]) -> list[Candidate]:
    return [Candidate(c.member, c.update, c.num_samples) for c in commitments]


def entry(c: Candidate) -> dict[str, Any]:
    """A manifest entry of an update committed on chain (loose entries add the signature)."""
    return {"institution": c.institution, "update": c.update, "num_samples": c.num_samples}


def aggregate_result(store: ArtifactStore, strategy: Strategy, task: RoundTask, state_before: str | None,
                     entries: Sequence[Mapping[str, Any]], rejected: Sequence[Rejection],
                     record: AggregationRecord | None, *, architecture: str, metrics: str | None = None,
                     extra: Mapping[str, Any] | None = None) -> Aggregate:
    """Aggregate the accepted `entries` (from their `record`, under secure aggregation) and store
    the result; with no entry the round keeps its parent model and state."""
    params, state = aggregate_round(store, strategy, task.global_model, entries, state_before, record)
    if record is not None:
        extra = {**(extra or {}), "secure_aggregation": record.as_manifest()}
    return store_result(store, strategy, task.round, task.global_model, state_before, params, state, entries,
                        [r.as_record() for r in rejected], architecture=architecture, metrics=metrics, extra=extra)


def store_result(store: ArtifactStore, strategy: Strategy, round: int, parent: str, state_before: str | None,
                 params: np.ndarray, state: Mapping[str, np.ndarray], entries: Sequence[Mapping[str, Any]],
                 rejected: Sequence[Mapping[str, Any]], *, architecture: str, metrics: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> Aggregate:
    """Store a round's model, state and manifest (what `aggregate_result` computed)."""
    model = store.put_params(params)
    state_after = store.put_arrays(state) if state else None
    manifest = build_manifest(round=round, architecture=architecture, strategy=strategy,
                              parent_model=parent, model=model, state_before=state_before,
                              state_after=state_after, entries=entries, rejected=rejected, metrics=metrics)
    manifest.update(extra or {})
    return Aggregate(model, state_after, store.put_json(manifest), manifest)


def reason_codes(commitments: Sequence[Commitment], manifest: Mapping[str, Any]) -> list[int]:
    """Each committer's reason code in commit order (0: aggregated), as results and votes carry them."""
    codes = {r["institution"]: r["code"] for r in manifest["rejected"]}
    return [codes.get(c.member, 0) for c in commitments]
