"""The round manifest and the aggregation recomputation that coordinator and auditor share.

A manifest is a canonical-JSON artifact in the store whose digest is anchored on chain. It holds
what does not fit on chain but is needed to re-derive the round: the signed update entries, the
strategy, and the server-optimizer state before and after. Coordinator and auditor call the same
`aggregate_round`, so "recompute and compare the digest" checks exactly what the coordinator did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.aggregation import ClientUpdate, Strategy, make_strategy
from fedledger.crypto import merkle_leaf, merkle_root
from fedledger.protocol.scheme import AggregationRecord
from fedledger.store import ArtifactStore

MANIFEST_FORMAT = "fedledger.round/1"


def update_leaves(entries: Sequence[Mapping[str, Any]]) -> list[bytes]:
    return [merkle_leaf(e["institution"], e["update"], e["num_samples"]) for e in entries]


def updates_root(entries: Sequence[Mapping[str, Any]]) -> str:
    return merkle_root(update_leaves(entries))


def strategy_from_manifest(manifest: Mapping[str, Any]) -> Strategy:
    spec = manifest["strategy"]
    return make_strategy(spec["name"], **spec["params"])


def aggregate_round(store: ArtifactStore, strategy: Strategy, parent_model: str,
                    entries: Sequence[Mapping[str, Any]], state_before: str | None,
                    record: AggregationRecord | None = None
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aggregate the stored updates named by `entries`; returns (new params, new server state).

    It only reads the store: the coordinator stores the result, while an auditor just hashes it
    (an auditor writing into the store it audits could repair the very blob that went missing).
    The strategies are order independent, so any process reading the same artifacts gets the
    same bytes. A round in which no update passed validation keeps its parent model and state.
    Under secure aggregation (`record`: how the round's sum was had) the entries are masked or
    encrypted updates, and only their sum is aggregated (masked: to the same bytes).
    """
    global_params = store.get_params(parent_model)
    if not entries:     # every update was rejected: the round carries the model and state over
        return global_params, store.get_arrays(state_before) if state_before else {}
    state = store.get_arrays(state_before) if state_before else strategy.initial_state(global_params)
    if record is not None:
        return record.aggregate(store, strategy, global_params, entries, state)
    updates = [ClientUpdate(client=e["institution"], params=store.get_params(e["update"]),
                            num_samples=e["num_samples"]) for e in entries]
    return strategy.aggregate(global_params, updates, state)


def build_manifest(*, round: int, architecture: str, strategy: Strategy, parent_model: str,
                   model: str, state_before: str | None, state_after: str | None,
                   entries: Sequence[Mapping[str, Any]], rejected: Sequence[Mapping[str, str]],
                   metrics: str) -> dict[str, Any]:
    ordered = sorted(entries, key=lambda e: e["institution"].lower())
    return {
        "format": MANIFEST_FORMAT,
        "round": round,
        "architecture": architecture,
        "strategy": {"name": strategy.name, "params": strategy.params()},
        "parent_model": parent_model,
        "model": model,
        "state_before": state_before,
        "state_after": state_after,
        "updates": ordered,
        "updates_root": updates_root(ordered),
        "rejected": list(rejected),
        "metrics": metrics,
    }
