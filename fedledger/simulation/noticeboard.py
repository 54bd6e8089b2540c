"""The simulation's noticeboards: the documents members hand each other off chain, kept in one
process's memory, with each member able to post only its own."""

from __future__ import annotations

import json
from typing import Any


class MemoryNotices:
    """Every member's posts, by (member, round, kind)."""

    def __init__(self) -> None:
        self._posts: dict[tuple[str, int, str], str] = {}

    def of(self, member: str) -> MemberNotices:
        """`member`'s noticeboard."""
        return MemberNotices(self, member)

    def get(self, member: str, round: int, kind: str) -> Any | None:
        text = self._posts.get((member, round, kind))
        return None if text is None else json.loads(text)     # a copy, as a reader over HTTP gets

    def put(self, member: str, round: int, kind: str, doc: dict[str, Any]) -> None:
        self._posts.setdefault((member, round, kind), json.dumps(doc, sort_keys=True))


class MemberNotices:
    """One member's view (fedledger.protocol.Noticeboard)."""

    def __init__(self, board: MemoryNotices, member: str) -> None:
        self._board, self._member = board, member

    def post(self, round: int, kind: str, doc: dict[str, Any]) -> None:
        self._board.put(self._member, round, kind, doc)

    def mine(self, round: int, kind: str) -> dict[str, Any] | None:
        return self._board.get(self._member, round, kind)

    def read(self, member: str, round: int, kind: str) -> Any | None:
        return self._board.get(member, round, kind)
