"""One semi-coupled round: the contract runs it, a committee drawn by reputation aggregates.

Institutions commit their own updates on chain; once the commit phase closes, CommitteeStudy
draws the committee. Each committee member aggregates the committed updates and submits its
result digest; a majority finalizes. If the committee stays short of a majority past the
deadline, the round is redrawn, not lost. With the ledger off the same work runs without the
chain: the committee is drawn with equal weights from a seed derived from the study seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from fedledger.aggregation import Strategy
from fedledger.chain import CommitteeStudy, committee_seed, draw_committee
from fedledger.errors import FedLedgerError
from fedledger.protocol.messages import Rejection, RoundTask
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.rounds import (
    Aggregate,
    Faults,
    RoundResult,
    aggregate_commitments,
    commit_phase,
    falsify,
    pass_deadline,
    reason_codes,
    round_task,
    screen_commitments,
)
from fedledger.validation import ValidationRules

ARCHITECTURE = "semi"
# Draws tried in one round before the study gives up. Every failed draw costs a silent member
# 20 reputation and a member at 0 is never drawn, so honest majorities get through well before.
MAX_DRAWS = 32
LEDGER_OFF_REPUTATION = 100


class CommitteeRounds:
    def __init__(self, nodes: Sequence[InstitutionNode], strategy: Strategy, study: CommitteeStudy | None,
                 committee_size: int, faults: Faults, seed: int, rules: ValidationRules = ValidationRules(),
                 scheme: Any | None = None) -> None:
        self.nodes = list(nodes)
        self.strategy = strategy
        self.study = study
        self.committee_size = min(committee_size, len(self.nodes))
        self.faults = faults
        self.seed = seed
        self.rules = rules
        self.scheme = scheme    # secure aggregation (fedledger.protocol.secure.Masking); None: plain updates
        self.index = {node.address: i for i, node in enumerate(self.nodes)}

    def run_round(self, round: int, parent: str, state_before: str | None) -> RoundResult:
        study, nodes = self.study, self.nodes
        task = round_task(study, self.strategy, round, parent)
        commitments = self._commit(task)
        committees = []
        for attempt in range(1, MAX_DRAWS + 1):
            committee = self._committee(round, attempt)
            committees.append(committee)
            results = self._aggregate(task, state_before, commitments, committee, attempt)
            final = self._finalized(round, committee, results)
            if final is not None:
                break
            if study is not None:   # let the result window pass, then redraw
                pass_deadline(study)
                study.redraw(nodes[0].account, round)
        else:
            raise FedLedgerError(f"round {round}: no committee reached a majority in {MAX_DRAWS} draws")
        manifest = nodes[0].store.get_json(final.manifest_digest)
        return RoundResult(round, final.model, manifest["state_after"], final.manifest_digest,
                           tuple(e["institution"] for e in manifest["updates"]),
                           tuple(Rejection.from_record(r) for r in manifest["rejected"]),
                           {"committees": committees,
                            "outvoted": sorted(m for m, r in results.items()
                                               if r.manifest_digest != final.manifest_digest)})

    def _commit(self, task: RoundTask) -> list:
        """The commit phase; under secure aggregation with the masking before it and the reveal
        of the members whose masked updates pass screening after it."""
        study, nodes, batch = self.study, self.nodes, (self.study.batch if self.study is not None else nullcontext)
        if self.scheme is None:
            return commit_phase(nodes, task, study, self.faults)
        made = self.scheme.updates(nodes, task, self.faults.commits, batch)
        commitments = commit_phase(nodes, task, study, self.faults, {u.institution: u for u in made if u is not None})
        senders, _ = screen_commitments(nodes[0].store, task, commitments, self.rules, scheme=self.scheme)
        self.scheme.conclude(nodes[0].store, task, [c.institution for c in senders], batch)
        return commitments

    def _committee(self, round: int, attempt: int) -> list[str]:
        if self.study is not None:
            return self.study.committee(round, attempt)
        entropy = hashlib.sha256(f"{self.seed}:committee:{round}:{attempt}".encode()).digest()
        roster = [node.address for node in self.nodes]
        return draw_committee(committee_seed(entropy, round, attempt), roster,
                              [LEDGER_OFF_REPUTATION] * len(roster), self.committee_size)

    def _aggregate(self, task: RoundTask, state_before: str | None, commitments, committee: list[str],
                   attempt: int) -> dict[str, Aggregate]:
        """Each answering committee member aggregates and submits its result."""
        results = {}
        with self.study.batch() if self.study is not None else nullcontext():
            for member in committee:
                node = self.nodes[self.index[member]]
                behaviour = self.faults.behaviour(self.index[member], len(self.nodes))
                if behaviour == "silent":
                    continue
                result = aggregate_commitments(node.store, self.strategy, architecture=ARCHITECTURE, task=task,
                                               state_before=state_before, commitments=commitments, rules=self.rules,
                                               scheme=self.scheme)
                if behaviour == "wrong_result":
                    result = falsify(node.store, self.strategy, result, ARCHITECTURE, task, state_before)
                results[member] = result
                if self.study is not None:
                    self.study.submit_result(node.account, task.round, attempt, result.model, result.manifest_digest,
                                             reason_codes(commitments, result.manifest))
        return results

    def _finalized(self, round: int, committee: list[str], results: dict[str, Aggregate]) -> Aggregate | None:
        """The finalized result: the chain's, or with the ledger off a majority of the committee."""
        if self.study is not None:
            final = self.study.finalized(round)
            if final is None:
                return None
            return next(r for r in results.values() if (r.model, r.manifest_digest) == final)
        votes = Counter((r.model, r.manifest_digest) for r in results.values())
        for key, count in votes.items():
            if 2 * count > len(committee):
                return next(r for r in results.values() if (r.model, r.manifest_digest) == key)
        return None
