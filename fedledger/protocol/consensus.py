"""One fully coupled round: every member validates, aggregates and votes; two thirds finalize.

Institutions commit their own updates on chain. Every member then scores every committed update
on its own held-out validation data and puts the scores on chain. Once the scores are closed,
each member applies the exclusion rule below to the same on-chain scores, aggregates the
accepted updates and votes for (model, manifest, rewards); ConsensusStudy finalizes when two
thirds of the roster agree, credits the rewards and moves reputation.

Exclusion rule (every validator applies it identically):
    s_j = lower median of the scores validators gave update j (parts per million)
    M   = lower median of all s_j
    update j is excluded when s_j < M - margin, margin = [protocol].exclusion_margin x 10^6
Reward of a committer: num_samples x s_j for an aggregated update, 0 for an excluded or rejected one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

from fedledger.aggregation import Strategy
from fedledger.chain import Commitment, ConsensusStudy
from fedledger.errors import FedLedgerError
from fedledger.protocol.messages import Rejection, RoundTask
from fedledger.protocol.node import SCORE_SCALE, InstitutionNode
from fedledger.protocol.rounds import (
    Faults,
    RoundResult,
    aggregate_commitments,
    commit_phase,
    falsify,
    pass_deadline,
    reason_codes,
    round_task,
)
from fedledger.validation import Reason, ValidationRules

ARCHITECTURE = "full"


def lower_median(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def exclusion_rule(commitments: Sequence[Commitment], scores: Mapping[str, Sequence[int]], margin: float
                   ) -> tuple[dict[str, int], dict[str, Rejection]]:
    """(median score per committer, excluded committer -> its LOW_SCORE rejection) from the
    validators' scores."""
    medians = {c.member: lower_median([s[j] for s in scores.values()]) for j, c in enumerate(commitments)}
    margin_ppm = round(margin * SCORE_SCALE)
    floor = lower_median(list(medians.values())) - margin_ppm
    excluded = {c.member: Rejection(c.member, Reason.LOW_SCORE,
                                    f"median validation score {medians[c.member] / SCORE_SCALE:.4f} is more than "
                                    f"{margin} below the median update's {(floor + margin_ppm) / SCORE_SCALE:.4f}",
                                    c.update, c.num_samples)
                for c in commitments if medians[c.member] < floor}
    return medians, excluded


def rewards(commitments: Sequence[Commitment], medians: Mapping[str, int], accepted: Sequence[str]) -> list[int]:
    """Each committer's reward, in commit order: samples x median score if aggregated, else 0."""
    taken = set(accepted)
    return [c.num_samples * medians[c.member] if c.member in taken else 0 for c in commitments]


class ConsensusRounds:
    def __init__(self, nodes: Sequence[InstitutionNode], strategy: Strategy, study: ConsensusStudy | None,
                 exclusion_margin: float, faults: Faults, rules: ValidationRules = ValidationRules()) -> None:
        self.nodes = list(nodes)
        self.strategy = strategy
        self.study = study
        self.margin = exclusion_margin
        self.faults = faults
        self.rules = rules

    def _behaviour(self, index: int) -> str:
        """How member `index` acts this round: a member suspended by the contract is silent."""
        if self.study is not None and self.study.suspended(self.nodes[index].address):
            return "silent"
        return self.faults.behaviour(index, len(self.nodes))

    def run_round(self, round: int, parent: str, state_before: str | None) -> RoundResult:
        study, nodes = self.study, self.nodes
        task = round_task(study, self.strategy, round, parent)
        commitments = commit_phase(nodes, task, study, self.faults)
        scores = self._score(task, commitments)
        medians, excluded = exclusion_rule(commitments, scores, self.margin)
        votes = {}
        with study.batch() if study is not None else nullcontext():
            for index, node in enumerate(nodes):
                if self._behaviour(index) == "silent":
                    continue
                result = aggregate_commitments(node.store, self.strategy, architecture=ARCHITECTURE, task=task,
                                               state_before=state_before, commitments=commitments,
                                               rules=self.rules, excluded=excluded, extra={"scores": medians})
                if self._behaviour(index) == "wrong_result":
                    result = falsify(node.store, self.strategy, result, ARCHITECTURE, task, state_before)
                paid = rewards(commitments, medians, [e["institution"] for e in result.manifest["updates"]])
                votes[node.address] = (result, paid)
                if study is not None:
                    study.submit_vote(node.account, round, result.model, result.manifest_digest, paid,
                                      reason_codes(commitments, result.manifest))
        final = self._finalized(round, votes)
        if final is None:
            raise FedLedgerError(f"round {round}: no result reached two thirds of the votes "
                                 f"({len(votes)} of {len(nodes)} members voted)")
        result, paid = final
        manifest = result.manifest
        return RoundResult(round, result.model, manifest["state_after"], result.manifest_digest,
                           tuple(e["institution"] for e in manifest["updates"]),
                           tuple(Rejection.from_record(r) for r in manifest["rejected"]),
                           {"scores": medians, "rewards": dict(zip((c.member for c in commitments), paid)),
                            "outvoted": sorted(m for m, (r, _) in votes.items()
                                               if r.manifest_digest != result.manifest_digest)})

    def _score(self, task: RoundTask, commitments: Sequence[Commitment]) -> dict[str, list[int]]:
        """Every answering member scores every update; with a chain, the frozen on-chain scores."""
        scores = {}
        opened = self.study.backend.block_number() if self.study is not None else 0
        with self.study.batch() if self.study is not None else nullcontext():
            for index, node in enumerate(self.nodes):
                if self._behaviour(index) == "silent":
                    continue
                scores[node.address] = [node.score(c.update) for c in commitments]
                if self.study is not None:
                    self.study.submit_scores(node.account, task.round, scores[node.address])
        if self.study is None:
            return scores
        if len(scores) < len(self.nodes):
            pass_deadline(self.study)
        self.study.close_scores(self.nodes[0].account, task.round)
        return self.study.scores(task.round, from_block=opened)

    def _finalized(self, round: int, votes: dict[str, tuple]) -> tuple | None:
        if self.study is not None:
            final = self.study.finalized(round)
            return None if final is None else next(
                v for v in votes.values() if (v[0].model, v[0].manifest_digest) == final)
        tally = Counter((r.model, r.manifest_digest, tuple(p)) for r, p in votes.values())
        for key, count in tally.items():
            if 3 * count >= 2 * len(self.nodes):
                return next(v for v in votes.values() if (v[0].model, v[0].manifest_digest, tuple(v[1])) == key)
        return None
