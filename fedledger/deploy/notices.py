"""A deployed member's noticeboard (fedledger.protocol.Noticeboard): its own posts kept in its
journal and served by its node's endpoint at /rounds/N/KIND, the others' read from theirs.

A notice is not on chain, so nobody sees a new block for it: after posting one, the node wakes the
members who read it (an update: its round's aggregators; anything else: every member) with a GET
of their /wake, so they step now instead of at their next poll.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedledger.deploy.access import UpdateAccess
from fedledger.deploy.client import MemberClient
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.server import WAKE_ROUTE
from fedledger.protocol.loose import UPDATE

READ_TIMEOUT_S = (2.0, 10.0)    # connect, read: a peer that does not answer is asked again next step
WAKE_TIMEOUT_S = (1.0, 2.0)     # a peer that does not answer steps at its next poll anyway


class HttpNotices:
    """`journal`: this member's own posts; `endpoints`: member address -> its node's base URL,
    read through `client`; `me`: this member's address. Every update notice posted or read is
    noted in `updates`, so the node serves that update's blob only to whom it is for."""

    def __init__(self, journal: Path, endpoints: dict[str, str], client: MemberClient, updates: UpdateAccess,
                 me: str) -> None:
        self.journal = journal
        self.endpoints = endpoints
        self.client = client
        self.updates = updates
        self.me = me
        self._waking = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wake")   # posting never waits for it

    def post(self, round: int, kind: str, doc: dict[str, Any]) -> None:
        if self.mine(round, kind) is None:
            readers = None
            if kind == UPDATE:
                digest = self.updates.tag(round, doc)   # before anyone can learn it
                readers = None if digest is None else self.updates.readers(digest)
            write_entry(self.journal, round, kind, doc)
            self._wake(readers)

    def close(self) -> None:
        self._waking.shutdown(wait=False, cancel_futures=True)

    def _wake(self, readers: set[str] | None) -> None:
        """GET /wake at each reader's node (None: every member's), in the background."""
        for address, endpoint in self.endpoints.items():
            if address != self.me and (readers is None or address in readers):
                self._waking.submit(self.client.get_json, endpoint, WAKE_ROUTE, WAKE_TIMEOUT_S)

    def mine(self, round: int, kind: str) -> dict[str, Any] | None:
        return read_entry(self.journal, round, kind)

    def read(self, member: str, round: int, kind: str) -> Any | None:
        endpoint = self.endpoints.get(member)
        doc = None if endpoint is None else self.client.get_json(endpoint, f"/rounds/{round}/{kind}", READ_TIMEOUT_S)
        if doc is not None and kind == UPDATE:
            self.updates.tag(round, doc)       # before its blob is fetched and kept here
        return doc
