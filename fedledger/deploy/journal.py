"""A node's journal: the documents it posted for its peers (its noticeboard), one JSON file per
round and kind.

It is what lets a restarted node offer the coordinator the very update it signed before (no
second, different update for the same round) and what its HTTP endpoint serves.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

KIND = re.compile(r"[a-z]+")   # the noticeboard's kinds: "update", "senders", "proofs"


def _path(journal: Path, round: int, kind: str) -> Path:
    if not KIND.fullmatch(kind):
        raise ValueError(f"not a notice kind: {kind!r}")
    return journal / f"{round}.{kind}.json"


def write_entry(journal: Path, round: int, kind: str, entry: dict[str, Any]) -> None:
    """Record `entry` as the `kind` document of `round`, atomically (a crash leaves the old file
    or the new one)."""
    journal.mkdir(parents=True, exist_ok=True)
    target = _path(journal, round, kind)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(entry, sort_keys=True))
    os.replace(tmp, target)


def read_entry(journal: Path, round: int, kind: str) -> dict[str, Any] | None:
    try:
        return json.loads(_path(journal, round, kind).read_text())
    except FileNotFoundError:
        return None
