"""The loosely-coupled (anchored) architecture: nodes train, the coordinator aggregates and
anchors one record a round."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.protocol.coordinator import Coordinator, RoundOutcome
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.rounds import Faults, RoundResult

Evaluate = Callable[[str], Mapping[str, Any]]   # model digest -> the metrics document of that model


def run_loosely_round(coordinator: Coordinator, nodes: Sequence[InstitutionNode], round: int,
                      global_model: str, state: str | None, evaluate: Evaluate,
                      commits: Callable[[int], bool] = lambda index: True) -> RoundOutcome:
    """Run round `round` from `global_model` with the institutions that send an update
    (`commits(index)`); returns what was anchored. `evaluate` gives the metrics document anchored
    with the new model. Under secure aggregation the others still share their secrets, and drop
    out after that."""
    task = coordinator.open_round(round, global_model)
    scheme = coordinator.scheme
    if scheme is None:
        updates = [node.train(task) for index, node in enumerate(nodes) if commits(index)]
    else:
        updates = scheme.updates(nodes, task, commits)
    accepted, rejected = coordinator.screen(task, [u for u in updates if u is not None])
    if scheme is not None:
        scheme.conclude(coordinator.store, task, [u.institution for u in accepted])
    outcome = coordinator.finalize(task, accepted, rejected, state, evaluate)
    by_address = {node.address: node for node in nodes}
    for update in outcome.accepted:
        node = by_address[update.institution]
        if not node.check_inclusion(update, outcome.proofs[node.address], outcome.record.updates_root):
            raise FedLedgerError(f"round {round}: {node.name}'s update is missing from the anchored Merkle root")
    return outcome


class LooseRounds:
    """The loosely-coupled architecture behind the interface the study runner uses for all three.

    Faults: `silent` stops the coordinator (the study cannot go on: no one else may aggregate),
    `wrong_result` makes it falsify every aggregate (which `audit verify` flags), `no_update`
    keeps the first institutions from submitting.
    """

    def __init__(self, coordinator: Coordinator, nodes: Sequence[InstitutionNode], faults: Faults,
                 evaluate: Evaluate) -> None:
        self.coordinator = coordinator
        self.nodes = list(nodes)
        self.faults = faults
        self.evaluate = evaluate
        coordinator.falsify = faults.wrong_result > 0

    def run_round(self, round: int, parent: str, state_before: str | None) -> RoundResult:
        if self.faults.silent > 0:
            raise FedLedgerError(f"round {round}: the coordinator did not answer, and no one else may aggregate")
        outcome = run_loosely_round(self.coordinator, self.nodes, round, parent, state_before, self.evaluate,
                                    self.faults.commits)
        return RoundResult(round, outcome.model, outcome.state, outcome.manifest,
                           tuple(u.institution for u in outcome.accepted), outcome.rejected,
                           metrics=self.coordinator.store.get_json(outcome.record.metrics_digest))
