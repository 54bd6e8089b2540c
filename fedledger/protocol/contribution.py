"""An institution's part in a round, under every architecture: the steps its update scheme
needs first (keys, shares), training, the update as the scheme sends it, the signed commitment,
and its own signed evaluation of the round's parent model (only counts and scores leave the site)."""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.protocol.context import ACTED, DONE, MemberContext, Step, waiting
from fedledger.protocol.messages import RoundTask, SignedUpdate
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.scheme import SitOut, UpdateScheme


@dataclass(frozen=True)
class Update:
    """What an institution sends in a round: its signed update and the digest of its signed
    evaluation of the round's parent model."""
    signed: SignedUpdate
    metrics: str


class Contribution:
    """Makes one institution's updates; a round it cannot take part in is sat out, said once."""

    def __init__(self, ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> None:
        self.ctx, self.node, self.scheme = ctx, node, scheme
        self.sat_out: set[int] = set()
        self.evaluated: set[int] = set()     # finalized rounds whose model this process evaluated on chain
        if node.privacy is not None:   # a restarted member takes up the releases the chain recorded for it
            node.privacy.restore([x for x in ctx.study.privacy_spends() if x.member == ctx.address])

    def expected(self, task: RoundTask) -> list[str]:
        """The roster members that may take part in `task`'s round: drawn for it, not suspended."""
        drawn = self.scheme.draw.members(task.round, self.ctx.roster)
        return [m for m in drawn if not self.ctx.study.suspended(m)]

    def ready(self, task: RoundTask) -> Step | None:
        """What this member waits for before it can train for `task` (its scheme's steps);
        None once it can. A round it is not drawn for, or cannot take part in, is sat out, and
        waits for ever."""
        r = task.round
        if not self.scheme.draw.drawn(r, self.ctx.address):
            return waiting(f"round {r}: not drawn for it")
        if r in self.sat_out:
            return waiting(f"round {r}: sitting it out")
        try:
            if not self.node.can_take_part():
                raise SitOut(f"round {r}: my privacy budget is spent; not taking part")
            return self.scheme.prepare(self.ctx, task, self.expected(task)) if self.scheme.exchanges else None
        except SitOut as exc:
            self.sat_out.add(r)
            self.ctx.log.warning("%s", exc)
            return waiting(f"round {r}: sitting it out")

    def evaluate_final(self, finished: int) -> Step:
        """Once the study is over: log my signed evaluation of the final model on chain (every
        earlier model's evaluations travel with the next round's updates), then done. A member
        the contract no longer lets submit (suspended, removed) is done without."""
        study, ctx = self.ctx.study, self.ctx
        if (finished == 0 or finished in self.evaluated or study.suspended(ctx.address)
                or study.evaluation_of(finished, ctx.address) is not None):
            return DONE
        self.evaluated.add(finished)
        model = study.latest_model()
        with ctx.timings.measure("evaluate"):
            digest = self.node.signed_evaluation(model, study.chain_id, study.address)
        ctx.race(f"round {finished}: logged my evaluation of the final model {model[:12]}",
                 lambda: study.submit_evaluation(ctx.account, finished, digest))
        return ACTED

    def make(self, task: RoundTask) -> Update | Step:
        """This round's update, or what it waits for first."""
        step = self.ready(task)
        if step is not None:
            return step
        with self.ctx.timings.measure("train"):
            signed = self.node.train(task, lambda params, n, store: self.scheme.protect(self.ctx, task, params, n))
        with self.ctx.timings.measure("evaluate"):
            metrics = self.node.signed_evaluation(task.global_model, task.chain_id, task.ledger)
        return Update(signed, metrics)
