"""The full architecture's validating role: every member validates, aggregates and votes; two
thirds finalize.

Institutions commit their own updates on chain (`CommittingInstitution`). Every member then
scores every committed update on its own held-out validation data and puts the scores on chain.
Once the scores are closed, each member applies the exclusion rule below to the same on-chain
scores, aggregates the accepted updates and votes for (model, manifest, rewards); FullStudy
finalizes when two thirds of the vote's electorate agree, credits the rewards and moves
reputation. A vote undecided at its deadline is reopened (`close_votes`) in a new epoch whose
electorate is the last epoch's voters; each of them votes again, on its result computed afresh
(an update it could not fetch before may have arrived).

Exclusion rule (every validator applies it identically):
    s_j = lower median of the scores validators gave update j (parts per million)
    M   = lower median of all s_j
    update j is excluded when s_j < M - margin, margin = [protocol].exclusion_margin x 10^6
Reward of a committer: num_samples x s_j for an aggregated update, 0 for an excluded or rejected one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedledger.chain import Commitment, Phase
from fedledger.protocol.aggregate import (
    Aggregate,
    aggregate_result,
    candidates,
    entry,
    parent_model,
    reason_codes,
    round_task,
    state_before,
)
from fedledger.protocol.context import ACTED, DONE, MemberContext, Step, waiting
from fedledger.protocol.node import SCORE_SCALE, InstitutionNode
from fedledger.protocol.scheme import UpdateScheme
from fedledger.validation import Reason, Rejection, ValidationRules

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


class Validator:
    """A full study's member as a validator: scores every update, closes the scores, votes."""

    def __init__(self, ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> None:
        self.ctx, self.node, self.scheme = ctx, node, scheme
        self.rules = ValidationRules.from_config(ctx.cfg.to_dict())
        self.scored: set[int] = set()
        self.voted: set[tuple[int, int]] = set()    # (round, vote epoch)

    def step(self) -> Step:
        study, ctx = self.ctx.study, self.ctx
        finished = study.round_count()
        if ctx.over(finished):
            return DONE
        r = finished + 1
        phase = study.phase()
        if phase == Phase.COMMITTING or study.suspended(ctx.address):
            return waiting(f"round {r}: the commitments")
        if phase == Phase.SCORING:
            return self._score(r)
        epoch = study.vote_epoch(r)
        if (r, epoch) not in self.voted and study.may_vote(r, ctx.address):
            return self._vote(r, epoch)
        deadline = study.phase_deadline()
        if study.block_number() > deadline:
            reopened = ctx.race(f"round {r}: reopened the undecided vote (epoch {epoch + 1})",
                                lambda: study.close_votes(ctx.account, r))
            if reopened:
                return ACTED
        return waiting(f"round {r}: two thirds of the votes (epoch {epoch})", deadline + 1)

    def _score(self, r: int) -> Step:
        study, ctx = self.ctx.study, self.ctx
        if r not in self.scored:
            with ctx.timings.measure("score"):
                scores = [self.node.score(c.update) for c in study.commitments(r)]
            self.scored.add(r)
            ctx.race(f"round {r}: scored {len(scores)} updates", lambda: study.submit_scores(ctx.account, r, scores))
            return ACTED
        scored, counted = study.score_count(r), study.counted_members()
        deadline = study.phase_deadline()
        if scored >= counted or study.block_number() > deadline:
            closed = ctx.race(f"round {r}: closed scoring ({scored} of {counted} scored)",
                              lambda: study.close_scores(ctx.account, r))
            if closed:
                return ACTED
        return waiting(f"round {r}: the other members' scores", deadline + 1)

    def _vote(self, r: int, epoch: int) -> Step:
        study, ctx = self.ctx.study, self.ctx
        commitments = study.commitments(r)
        result, paid = self.result(r, commitments)
        codes = reason_codes(commitments, result.manifest)
        self.voted.add((r, epoch))
        again = f" again (epoch {epoch})" if epoch else ""
        ctx.race(f"round {r}: voted{again} for {result.model[:12]} ({sum(1 for c in codes if c)} rejected)",
                 lambda: study.submit_vote(ctx.account, r, result.model, result.manifest_digest, paid, codes))
        return ACTED

    def result(self, r: int, commitments: Sequence[Commitment]) -> tuple[Aggregate, list[int]]:
        """This member's result: the exclusion rule over the on-chain scores, the accepted
        updates aggregated, and each committer's reward."""
        study, ctx = self.ctx.study, self.ctx
        medians, excluded = exclusion_rule(commitments, study.scores(r), ctx.cfg.protocol.exclusion_margin)
        task = round_task(study, ctx.strategy, r, parent_model(study, r))
        with ctx.timings.measure("aggregate"):
            accepted, rejected = self.scheme.screen(ctx.store, task, candidates(commitments), self.rules, excluded)
            result = aggregate_result(ctx.store, ctx.strategy, task, state_before(study, ctx.store, r),
                                      [entry(c) for c in accepted], rejected, None, architecture=ARCHITECTURE,
                                      extra={"scores": medians})
        return result, rewards(commitments, medians, [e["institution"] for e in result.manifest["updates"]])
