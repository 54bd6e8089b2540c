"""The semi architecture's aggregating role: the contract runs the round, a committee drawn by
reputation aggregates.

Institutions commit their own updates on chain (`CommittingInstitution`); once the commit phase
closes, SemiStudy draws the committee from the previous block hash. Each committee member
screens and aggregates the committed updates and submits its result digest; a majority of the
committee finalizes. If the committee stays short of a majority past the deadline, any member
redraws it, and the round goes on with a new committee rather than being lost.
"""

from __future__ import annotations

from fedledger.chain import Phase
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
from fedledger.protocol.scheme import UpdateScheme
from fedledger.validation import ValidationRules

ARCHITECTURE = "semi"


class CommitteeMember:
    """A semi study's member as an aggregator: when drawn, it submits its result."""

    def __init__(self, ctx: MemberContext, scheme: UpdateScheme) -> None:
        self.ctx, self.scheme = ctx, scheme
        self.rules = ValidationRules.from_config(ctx.cfg.to_dict())
        self.submitted: set[tuple[int, int]] = set()  # (round, draw) it answered

    def step(self) -> Step:
        study, ctx = self.ctx.study, self.ctx
        finished = study.round_count()
        if ctx.over(finished):
            return DONE
        r = finished + 1
        if study.phase() != Phase.AGGREGATING or study.suspended(ctx.address):
            return waiting(f"round {r}: the commitments")
        attempt = study.attempt()
        if ctx.address in study.committee(r, attempt) and (r, attempt) not in self.submitted:
            result = self.result(r)
            if isinstance(result, Step):
                return result
            codes = reason_codes(study.commitments(r), result.manifest)
            self.submitted.add((r, attempt))
            ctx.race(f"round {r}: submitted result {result.model[:12]} as drawn aggregator (draw {attempt})",
                     lambda: study.submit_result(ctx.account, r, attempt, result.model, result.manifest_digest, codes))
            return ACTED
        deadline = study.phase_deadline()
        if study.block_number() > deadline and study.finalized(r) is None:
            redrawn = ctx.race(f"round {r}: draw {attempt} reached no majority in time; drew a new committee",
                               lambda: study.redraw(ctx.account, r))
            if redrawn:
                return ACTED
        return waiting(f"round {r}: the committee's results", deadline + 1)

    def result(self, r: int) -> Aggregate | Step:
        """This member's result for round `r`: the committed updates screened and aggregated.
        Made afresh for every draw: an update that could not be fetched for one may be had by the next."""
        study, ctx = self.ctx.study, self.ctx
        task = round_task(study, ctx.strategy, r, parent_model(study, r))
        with ctx.timings.measure("aggregate"):
            accepted, rejected = self.scheme.screen(ctx.store, task, candidates(study.commitments(r)), self.rules)
            record = self.scheme.record(ctx.store, task, accepted) if accepted else None
            if isinstance(record, Step):
                return record
            return aggregate_result(ctx.store, ctx.strategy, task, state_before(study, ctx.store, r),
                                    [entry(c) for c in accepted], rejected, record, architecture=ARCHITECTURE)
