"""A deployed member's noticeboard (fedledger.protocol.Noticeboard): its own posts kept in its
journal and served by its node's HTTP endpoint at /rounds/N/KIND, the others' read from theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.server import get_json

READ_TIMEOUT_S = (2.0, 10.0)    # connect, read: a peer that does not answer is asked again next step


class HttpNotices:
    """`journal`: this member's own posts; `endpoints`: member address -> its node's base URL."""

    def __init__(self, journal: Path, endpoints: dict[str, str]) -> None:
        self.journal = journal
        self.endpoints = endpoints

    def post(self, round: int, kind: str, doc: dict[str, Any]) -> None:
        if self.mine(round, kind) is None:
            write_entry(self.journal, round, kind, doc)

    def mine(self, round: int, kind: str) -> dict[str, Any] | None:
        return read_entry(self.journal, round, kind)

    def read(self, member: str, round: int, kind: str) -> Any | None:
        endpoint = self.endpoints.get(member)
        return None if endpoint is None else get_json(f"{endpoint}/rounds/{round}/{kind}", READ_TIMEOUT_S)
