"""One loosely-coupled (anchored) round: nodes train, the coordinator aggregates and anchors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.protocol.coordinator import Coordinator, RoundOutcome
from fedledger.protocol.node import InstitutionNode


def run_loosely_round(coordinator: Coordinator, nodes: Sequence[InstitutionNode], round: int,
                      global_model: str, state: str | None,
                      summarize: Callable[[Mapping[str, Mapping[str, float]]], Mapping[str, Any]]
                      ) -> RoundOutcome:
    """Run round `round` from `global_model`; returns what was anchored.

    `summarize` turns the institutions' evaluations of the new model into the metrics document
    that gets anchored (per-institution and pooled figures).
    """
    task = coordinator.open_round(round, global_model)
    submissions = [node.train(task) for node in nodes]
    accepted, rejected = coordinator.screen(task, submissions)

    def evaluate(model: str) -> Mapping[str, Any]:
        return summarize({node.name: node.evaluate(model) for node in nodes})

    outcome = coordinator.finalize(task, accepted, rejected, state, evaluate)
    by_address = {node.address: node for node in nodes}
    for update in outcome.accepted:
        node = by_address[update.institution]
        if not node.check_inclusion(update, outcome.proofs[node.address], outcome.record.updates_root):
            raise FedLedgerError(f"round {round}: {node.name}'s update is missing from the anchored Merkle root")
    return outcome
