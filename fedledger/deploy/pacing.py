"""When a deployed node steps next: at once after it acted, as soon as the chain has a new block
or a peer wakes it, and otherwise after `poll_seconds`.

A fixed sleep between steps made every hand-over in a round (an update committed, a committee
drawn, a result anchored, an update offered) wait for the other nodes' next poll. A hand-over is
a transaction, which every node sees as a new block (one cheap `eth_blockNumber` per tick), or a
notice, after which its poster wakes its readers (`HttpNotices`, GET /wake). The poll remains for
what neither shows: deadlines in wall-clock time, a peer that could not be woken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from threading import Event

from fedledger.errors import FedLedgerError

TICK_S = 0.05           # how often the head is read while waiting


class Pacer:
    """`block_number` reads the chain's head; `woken` is set by the node's /wake; `longest`
    (seconds, > 0) bounds every wait."""

    def __init__(self, block_number: Callable[[], int], woken: Event, longest: float) -> None:
        self.block_number = block_number
        self.woken = woken
        self.longest = longest
        self.head: int | None = None

    def wait(self, stop: Event, acted: bool) -> None:
        """Return when the node should step again, or soon after `stop` is set."""
        if acted:
            return
        deadline = time.monotonic() + self.longest
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.woken.wait(min(TICK_S, left)):
                self.woken.clear()      # one step answers every wake-up that came before it
                return
            if self._head_moved():
                return

    def _head_moved(self) -> bool:
        try:
            head = self.block_number()
        except (FedLedgerError, OSError):    # the next step meets the error and reports it
            return False
        moved = self.head is not None and head != self.head
        self.head = head
        return moved
