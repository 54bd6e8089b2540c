"""When a deployed node steps next: at once after it acted, as soon as the chain has a new block
or a peer wakes it, and otherwise after `poll_seconds`.

A fixed sleep between steps made every hand-over in a round (an update committed, a committee
drawn, a result anchored, an update offered) wait for the other nodes' next poll. A hand-over is
a transaction, which the chain's node pushes to every member as a new block
(`fedledger.chain.newheads`), or a notice, after which its poster wakes its readers
(`HttpNotices`, GET /wake). Both set the node's `woken` event. The poll remains for what neither
shows: deadlines in wall-clock time, a peer that could not be woken, a node without subscriptions.
"""

from __future__ import annotations

import time
from threading import Event

STOP_CHECK_S = 0.25     # how soon a wait notices `stop`


class Pacer:
    """`woken` is set by new blocks and wake-ups; `longest` (seconds, > 0) bounds every wait."""

    def __init__(self, woken: Event, longest: float) -> None:
        self.woken = woken
        self.longest = longest

    def wait(self, stop: Event, acted: bool) -> None:
        """Return when the node should step again, or soon after `stop` is set."""
        if acted:
            return
        deadline = time.monotonic() + self.longest
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.woken.wait(min(STOP_CHECK_S, left)):
                self.woken.clear()      # one step answers every block and wake-up that came before it
                return
