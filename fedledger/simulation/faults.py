"""Injected faults ([faults] in the config): members whose roles misbehave, for fault experiments.

Each fault is a subclass or a replacement of a production role, swapped in here; the protocol
itself has no fault switches. By position in the roster: the first `no_update` institutions never
send an update (under secure aggregation they still share their secrets, then drop out); the last
`wrong_result` ones submit a nudged aggregate whenever they aggregate, and the `silent` ones before
them never answer as aggregators (semi: committee member; full: validator). In the loose
architecture the coordinator lies (`wrong_result`) or stays silent instead.
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

NUDGE = np.float32(0.01)   # what a faulty aggregator adds to every parameter of the honest model


@dataclass(frozen=True)
class Faults:
    """Which members misbehave (see the module docstring)."""
    wrong_result: int = 0
    silent: int = 0
    no_update: int = 0

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
