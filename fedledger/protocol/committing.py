"""The institution's role in the semi and full architectures: everything goes through the
study contract. Each open round it trains and commits its own update from its own account (with
its evaluation of the parent model), and closes the commit phase once every member that may take
part has committed, or once latecomers have been waited for; under an update scheme whose
members act after the commitments (secure aggregation's reveal), it does that too.
"""

from __future__ import annotations

from fedledger.chain import NO_SPEND, Phase
from fedledger.protocol.aggregate import candidates, parent_model, round_task
from fedledger.protocol.context import ACTED, MemberContext, Step, waiting
from fedledger.protocol.contribution import Contribution
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.scheme import UpdateScheme
from fedledger.validation import ValidationRules


class CommittingInstitution:
    """An institution of a semi or full study (see the module docstring)."""

    def __init__(self, ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> None:
        self.ctx, self.scheme = ctx, scheme
        self.contribution = Contribution(ctx, node, scheme)
        self.rules = ValidationRules.from_config(ctx.cfg.to_dict())
        self.committed: set[int] = set()     # rounds whose commitment this process sent
        self.senders: dict[int, list[str]] = {}   # round -> the members whose updates pass screening
        self.told: set[int] = set()          # rounds it said it is suspended in

    def step(self) -> Step:
        study, ctx = self.ctx.study, self.ctx
        finished = study.round_count()
        if ctx.over(finished):
            return self.contribution.evaluate_final(finished)
        r = ctx.timings.round = finished + 1
        if study.suspended(ctx.address):
            if r not in self.told:
                self.told.add(r)
                ctx.log.warning("round %d: this member is suspended by the reputation policy (reputation %d); "
                                "waiting for governance to reinstate it", r, study.reputation(ctx.address))
            return waiting(f"round {r}: reinstatement")
        if study.phase() == Phase.COMMITTING:
            return self._commit(r)
        if self.scheme.exchanges and r in self.committed:
            return self._conclude(r)
        return waiting(f"round {r}: the aggregators")

    def _commit(self, r: int) -> Step:
        study, ctx = self.ctx.study, self.ctx
        committers = study.committers(r)
        if ctx.address not in committers and r not in self.committed:
            task = round_task(study, ctx.strategy, r, study.latest_model())
            made = self.contribution.make(task)
            if isinstance(made, Step):
                return made
            c, spend = made.signed.commitment, made.signed.spend or NO_SPEND
            ctx.send(f"round {r}: committed update {c.update[:12]} ({c.num_samples} samples)",
                     lambda: study.commit_update(ctx.account, r, task.global_model, c.update, c.num_samples,
                                                 made.metrics, spend))
            self.committed.add(r)
            return ACTED
        if not committers:
            return waiting(f"round {r}: the first commitment")
        everyone = study.counted_members()
        # The contract does not know the client draw ([protocol] sample_fraction): with members
        # drawn, the phase closes only once its window has passed.
        if len(committers) < everyone:
            # The contract's deadline runs from the round's opening, which for round 1 is the
            # deployment: without a window from the first commitment too, the first node up would
            # close round 1 alone while the others are still starting.
            waited = max(study.phase_deadline(), study.first_commit_block(r) + ctx.cfg.protocol.commit_window)
            if study.block_number() <= waited:
                return waiting(f"round {r}: the other members' commitments", waited + 1)
        closed = ctx.race(f"round {r}: closed the commit phase ({len(committers)} of {everyone} committed)",
                          lambda: study.close_commits(ctx.account, r))
        return ACTED if closed else waiting(f"round {r}: the commit phase to close")

    def _conclude(self, r: int) -> Step:
        """Once the commitments are in, every member screens them alike: the senders are the
        ones that pass, and each does its scheme's part (secure aggregation: reveal)."""
        study, ctx = self.ctx.study, self.ctx
        task = round_task(study, ctx.strategy, r, parent_model(study, r))
        if r not in self.senders:
            accepted, _ = self.scheme.screen(ctx.store, task, candidates(study.commitments(r)), self.rules)
            self.senders = {r: [c.institution for c in accepted]}
        step = self.scheme.conclude(ctx, task, {"senders": self.senders[r]})
        return step or waiting(f"round {r}: the aggregators")
