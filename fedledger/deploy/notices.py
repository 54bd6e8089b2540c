"""A deployed member's noticeboard (fedledger.protocol.Noticeboard): its own posts kept in its
journal and served by its node's endpoint at /rounds/N/KIND, the others' read from theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedledger.deploy.access import UpdateAccess
from fedledger.deploy.client import MemberClient
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.protocol.loose import UPDATE

READ_TIMEOUT_S = (2.0, 10.0)    # connect, read: a peer that does not answer is asked again next step


class HttpNotices:
    """`journal`: this member's own posts; `endpoints`: member address -> its node's base URL,
    read through `client`. Every update notice posted or read is noted in `updates`, so the node
    serves that update's blob only to whom it is for."""

    def __init__(self, journal: Path, endpoints: dict[str, str], client: MemberClient, updates: UpdateAccess) -> None:
        self.journal = journal
        self.endpoints = endpoints
        self.client = client
        self.updates = updates

    def post(self, round: int, kind: str, doc: dict[str, Any]) -> None:
        if self.mine(round, kind) is None:
            if kind == UPDATE:
                self.updates.tag(round, doc)   # before anyone can learn its digest
            write_entry(self.journal, round, kind, doc)

    def mine(self, round: int, kind: str) -> dict[str, Any] | None:
        return read_entry(self.journal, round, kind)

    def read(self, member: str, round: int, kind: str) -> Any | None:
        endpoint = self.endpoints.get(member)
        doc = None if endpoint is None else self.client.get_json(endpoint, f"/rounds/{round}/{kind}", READ_TIMEOUT_S)
        if doc is not None and kind == UPDATE:
            self.updates.tag(round, doc)       # before its blob is fetched and kept here
        return doc
