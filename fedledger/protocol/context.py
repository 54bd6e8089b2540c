"""What a role works with, and what one of its steps returns.

A role (an institution, the loose coordinator, a committee member, a validator) acts in steps:
each `step()` reads where the study stands on the chain and in the store, does what its member
owes now (at most a few transactions, posts or computations), and returns a `Step` saying whether
it acted or what it waits for. It keeps no state that the chain, the store and the member's own
notices do not hold, beyond what it already sent in this process, so a member restarted between
two steps picks up from the chain. The simulation calls the roles of every member in turn, in one
process; a deployed node calls its own member's roles, polling. Neither adds round logic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from fedledger.aggregation import Strategy
from fedledger.config import Config
from fedledger.errors import TransactionReverted
from fedledger.protocol.privacy import PrivacyPlan, budgets_end_study, needed_per_round
from fedledger.store import ArtifactStore


@dataclass(frozen=True)
class Step:
    """What one step of a role did."""
    acted: bool = False            # sent, stored or posted something: step again at once
    done: bool = False             # the study is over for this role
    wake_at: int | None = None     # waiting for a deadline: the block from which it can act
    waiting_for: str = ""          # what it waits for, in words (logs, stall reports)


ACTED = Step(acted=True)
DONE = Step(done=True)


def waiting(why: str, until: int | None = None) -> Step:
    """A step that did nothing: `why`, and the block `until` which time alone would change it."""
    return Step(waiting_for=why, wake_at=until)


def combine(steps: Sequence[Step]) -> Step:
    """One member's roles stepped together: acted if any did, done if all are."""
    wakes = [s.wake_at for s in steps if s.wake_at is not None]
    return Step(acted=any(s.acted for s in steps), done=all(s.done for s in steps),
                wake_at=min(wakes) if wakes else None,
                waiting_for="; ".join(s.waiting_for for s in steps if s.waiting_for and not s.done))


def study_over(cfg: Config, study: Any, roster: Sequence[str], finished: int) -> bool:
    """Whether a study has no round after the `finished` ones: all its rounds are done, or too
    few members' privacy budgets cover another (decided from the chain, alike by everyone)."""
    if finished >= cfg.study.rounds:
        return True
    plan = PrivacyPlan.from_config(cfg.to_dict()) if cfg.privacy.mechanism != "none" else None
    if plan is None:
        return False
    needed = needed_per_round(cfg.study.architecture, cfg.protocol.min_participants, len(roster))
    return budgets_end_study(plan, study, roster, needed, finished + 1)


class Noticeboard(Protocol):
    """Documents members hand each other off chain, by round and kind: a loose institution's
    signed update for the coordinator, the coordinator's list of senders, inclusion proofs.
    Each member posts its own and reads the others'; what it reads is untrusted."""

    def post(self, round: int, kind: str, doc: dict[str, Any]) -> None:
        """Publish this member's `kind` document of `round` (a second post of one replaces nothing)."""

    def mine(self, round: int, kind: str) -> dict[str, Any] | None:
        """This member's own `kind` document of `round`, if posted."""

    def read(self, member: str, round: int, kind: str) -> Any | None:
        """`member`'s `kind` document of `round`; None while it has none or cannot be reached."""


class Timings:
    """Seconds spent per activity (train, evaluate, aggregate, score, chain...), in total and
    per round (the round the member was working on)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.by_round: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.round = 0

    def add(self, activity: str, seconds: float) -> None:
        self.seconds[activity] += seconds
        self.by_round[self.round][activity] += seconds

    @contextmanager
    def measure(self, activity: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(activity, time.perf_counter() - start)


@dataclass
class MemberContext:
    """One member as its roles see it: its key, the study's contract (or the ledger-off stand-in),
    its store, its peers' notices, the study's config."""
    cfg: Config
    account: LocalAccount
    study: Any                      # LooseStudy, SemiStudy, FullStudy, or their chain.local stand-ins
    store: ArtifactStore
    strategy: Strategy
    roster: list[str]               # the study's institutions, in roster order
    notices: Noticeboard
    log: logging.Logger
    names: dict[str, str] = field(default_factory=dict)   # address -> name, for logs
    timings: Timings = field(default_factory=Timings)

    @property
    def address(self) -> str:
        return self.account.address

    def over(self, finished: int) -> bool:
        """Whether the study has no round after the `finished` ones (`study_over`)."""
        return study_over(self.cfg, self.study, self.roster, finished)

    def name(self, address: str) -> str:
        return self.names.get(address, address)

    def send(self, what: str, transaction: Callable[[], Any]) -> None:
        """Send a transaction only this member may send; a revert is an error."""
        with self.timings.measure("chain"):
            transaction()
        self.log.info("%s", what)

    def race(self, what: str, transaction: Callable[[], Any]) -> bool:
        """Send a transaction any member may send (closing a phase, redrawing a committee): if
        another member's landed first, ours reverts, which is no error."""
        try:
            with self.timings.measure("chain"):
                transaction()
        except TransactionReverted as exc:
            self.log.debug("%s: not needed (%s)", what, exc)
            return False
        self.log.info("%s", what)
        return True
