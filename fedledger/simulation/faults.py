"""Injected faults ([faults] in the config): members whose roles misbehave, for fault experiments.

Each fault is a subclass or a replacement of a production role, swapped in here; the protocol
itself has no fault switches. By position in the roster: the first `no_update` institutions never
send an update (under secure aggregation they still share their secrets, then drop out); the last
`wrong_result` ones submit a nudged aggregate whenever they aggregate, and the `silent` ones before
them never answer as aggregators (semi: committee member; full: validator). In the loose
architecture the coordinator lies (`wrong_result`) or stays silent instead. Independently, each
round, each institution drawn for it may drop out (`dropout`: it sends nothing) or straggle
(`straggler`: its update comes after the round's window), by a seeded draw per round and name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.protocol import (
    Aggregate,
    CommitteeMember,
    Coordinator,
    LooseInstitution,
    MemberContext,
    Role,
    Step,
    Validator,
    waiting,
)
from fedledger.protocol.aggregate import store_result
from fedledger.protocol.committing import CommittingInstitution
from fedledger.protocol.context import DONE
from fedledger.protocol.contribution import Contribution, Update
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.sampling import TICKETS, seeded_ticket

NUDGE = np.float32(0.01)   # what a faulty aggregator adds to every parameter of the honest model
STRAGGLER_DELAY = 2        # commit windows a straggler's update takes: it misses the round


@dataclass(frozen=True)
class Faults:
    """Which members misbehave (see the module docstring)."""
    wrong_result: int = 0
    silent: int = 0
    no_update: int = 0
    dropout: float = 0.0      # per round and drawn institution: sends nothing
    straggler: float = 0.0    # per round and drawn institution: ready only after the round's window
    seed: int = 0             # the study's: which rounds an institution drops out or straggles in

    def unreliable(self) -> bool:
        return self.dropout > 0 or self.straggler > 0

    def fate(self, round: int, name: str) -> str:
        """'dropout', 'straggler' or 'on time': how institution `name` answers in `round`
        (a draw of its own, seeded, independent of the client draw)."""
        u = seeded_ticket("FedLedger fault", self.seed, round, name) / TICKETS
        if u < self.dropout:
            return "dropout"
        return "straggler" if u < self.dropout + self.straggler else "on time"

    def behaviour(self, index: int, count: int) -> str:
        """'wrong_result', 'silent' or 'honest': how institution `index` of `count` aggregates."""
        from_end = count - index
        if from_end <= self.wrong_result:
            return "wrong_result"
        if from_end <= self.wrong_result + self.silent:
            return "silent"
        return "honest"

    def commits(self, index: int) -> bool:
        return index >= self.no_update


def falsify(ctx: MemberContext, honest: Aggregate) -> Aggregate:
    """A faulty aggregator's result: the honest model nudged, stored with a manifest claiming it."""
    m, store = honest.manifest, ctx.store
    params = store.get_params(honest.model) + NUDGE
    state = store.get_arrays(m["state_after"]) if m["state_after"] else {}
    extra = {k: v for k, v in m.items() if k in ("scores", "secure_aggregation")}
    return store_result(store, ctx.strategy, m["round"], m["parent_model"], m["state_before"], params, state,
                        m["updates"], m["rejected"], architecture=m["architecture"], metrics=m["metrics"], extra=extra)


class WithheldUpdate(Contribution):
    """An institution that sends no update: it does its scheme's steps, then drops out."""

    def make(self, task: RoundTask) -> Update | Step:
        return self.ready(task) or waiting(f"round {task.round}: nothing (it sends no update: injected fault)")


class UnreliableContribution(Contribution):
    """An institution on an unreliable link ([faults] dropout, straggler): in some rounds it
    sends nothing; in others its update is ready only STRAGGLER_DELAY commit windows after it
    saw the round open, so the round's deadline, not the straggler, decides when it closes."""

    def __init__(self, original: Contribution, faults: Faults, name: str) -> None:
        super().__init__(original.ctx, original.node, original.scheme)
        self.faults, self.name = faults, name
        self.ready_at: dict[int, int] = {}    # round -> the block a straggler's update is ready

    def make(self, task: RoundTask) -> Update | Step:
        r, fate = task.round, self.faults.fate(task.round, self.name)
        if fate == "on time" or not self.scheme.draw.drawn(r, self.ctx.address):
            return super().make(task)
        if fate == "dropout":
            return waiting(f"round {r}: offline (injected dropout)")
        now = self.ctx.study.block_number()
        ready = self.ready_at.setdefault(r, now + STRAGGLER_DELAY * self.ctx.cfg.protocol.commit_window)
        if now < ready:
            return waiting(f"round {r}: still training (injected straggler)", ready)
        return super().make(task)


class LyingCoordinator(Coordinator):
    def aggregate(self, *args, **kwargs) -> Aggregate:    # type: ignore[no-untyped-def]
        return falsify(self.ctx, super().aggregate(*args, **kwargs))


class LyingCommitteeMember(CommitteeMember):
    def result(self, r: int) -> Aggregate | Step:
        honest = super().result(r)
        return honest if isinstance(honest, Step) else falsify(self.ctx, honest)


class LyingValidator(Validator):
    def result(self, r, commitments):    # type: ignore[no-untyped-def]
        honest, paid = super().result(r, commitments)
        return falsify(self.ctx, honest), paid


class SilentAggregator:
    """A committee member or validator that never answers."""

    def __init__(self, ctx: MemberContext) -> None:
        self.ctx = ctx

    def step(self) -> Step:
        if self.ctx.over(self.ctx.study.round_count()):
            return DONE
        return waiting("nothing (it never answers as an aggregator: injected fault)")


def with_faults(faults: Faults, index: int, count: int, roles: Sequence[Role]) -> list[Role]:
    """Institution `index` of `count`'s roles with the faults that apply to it swapped in."""
    swapped: list[Role] = []
    behaviour = faults.behaviour(index, count)
    for role in roles:
        if isinstance(role, LooseInstitution | CommittingInstitution) and not faults.commits(index):
            role.contribution = WithheldUpdate(role.ctx, role.contribution.node, role.scheme)
        elif isinstance(role, LooseInstitution | CommittingInstitution) and faults.unreliable():
            role.contribution = UnreliableContribution(role.contribution, faults, role.contribution.node.name)
        if isinstance(role, CommitteeMember | Validator) and behaviour == "silent":
            role = SilentAggregator(role.ctx)
        elif isinstance(role, CommitteeMember) and behaviour == "wrong_result":
            role = LyingCommitteeMember(role.ctx, role.scheme)
        elif isinstance(role, Validator) and behaviour == "wrong_result":
            role = LyingValidator(role.ctx, role.node, role.scheme)
        swapped.append(role)
    return swapped


def coordinator_with_faults(faults: Faults, coordinator: Coordinator) -> list[Role]:
    """The loose coordinator's roles under `faults`: none when silent (no one else may
    aggregate, so the study stalls), a lying one for a wrong result."""
    if faults.silent:
        return []
    if faults.wrong_result:
        return [LyingCoordinator(coordinator.ctx, coordinator.scheme, coordinator.config_digest,
                                 coordinator.initial_model)]
    return [coordinator]
