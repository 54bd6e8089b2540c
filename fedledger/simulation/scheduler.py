"""The simulation's runtime: every member's roles stepped in turn, in one process.

A sweep steps each member's roles once, in roster order, inside one batch of transactions (on
the embedded chain they share a block), as members acting at the same time would: each reads the
chain as the last block left it. When a sweep finds nothing to do, time passes: the chain jumps
to the earliest deadline a role waits for. When no role waits for a deadline either, the study
can go no further, and the scheduler says what everyone was waiting for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from fedledger.errors import FedLedgerError
from fedledger.protocol import Role, Step, combine

MAX_IDLE_SWEEPS = 10_000    # sweeps in a row without a finished round: a role that never settles is a bug


class Clock(Protocol):
    """The chain's (or the ledger-off stand-in's) block clock and batching."""

    def block_number(self) -> int: ...

    def advance_blocks(self, n: int) -> None: ...

    def batch(self) -> AbstractContextManager[None]: ...


class Scheduler:
    """Steps `members` (name, roles) until a condition holds (see the module docstring)."""

    def __init__(self, members: Sequence[tuple[str, Sequence[Role]]], clock: Clock) -> None:
        self.members = list(members)
        self.clock = clock
        self.last: list[Step] = []     # what the last sweep's steps returned, per member

    def sweep(self) -> list[Step]:
        """Each member's roles stepped once; one combined Step per member."""
        with self.clock.batch():
            self.last = [combine([role.step() for role in roles]) for _, roles in self.members]
        return self.last

    def run_until(self, condition: Callable[[], bool], round: int) -> None:
        """Sweep, letting time pass when no one acts, until `condition()` holds; FedLedgerError
        (naming round `round`) when the study cannot get there."""
        for _ in range(MAX_IDLE_SWEEPS):
            if condition():
                return
            steps = self.sweep()
            if any(s.acted for s in steps):
                continue
            wakes = [s.wake_at for s in steps if s.wake_at is not None]
            if not wakes:
                if condition():
                    return
                raise FedLedgerError(f"round {round}: the study stalled: {_waits(self.members, steps)}")
            self.clock.advance_blocks(max(1, min(wakes) - self.clock.block_number()))
        raise FedLedgerError(f"round {round}: no progress after {MAX_IDLE_SWEEPS} sweeps")

    def all_done(self) -> bool:
        """Whether, at the last sweep, every role of every member had finished."""
        return bool(self.last) and all(s.done for s in self.last)


def _waits(members: Sequence[tuple[str, Sequence[Role]]], steps: Sequence[Step]) -> str:
    """What the members wait for: 'waiting for X (a, b); waiting for Y (c)'."""
    by_reason: dict[str, list[str]] = {}
    for (name, _), step in zip(members, steps):
        if step.waiting_for and not step.done:
            by_reason.setdefault(step.waiting_for, []).append(name)
    return "; ".join(f"waiting for {why} ({', '.join(names)})" for why, names in by_reason.items()) or "every role is done"
