"""A node's journal of the signed updates it trained, one JSON file per round.

It is what lets a restarted node offer the coordinator the very update it signed before (no
second, different update for the same round) and what its HTTP endpoint serves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_entry(journal: Path, round: int, entry: dict[str, Any]) -> None:
    """Record `entry` for `round`, atomically (a crash leaves the old file or the new one)."""
    journal.mkdir(parents=True, exist_ok=True)
    tmp = journal / f".{round}.json.tmp"
    tmp.write_text(json.dumps(entry, sort_keys=True))
    os.replace(tmp, journal / f"{round}.json")


def read_entry(journal: Path, round: int) -> dict[str, Any] | None:
    try:
        return json.loads((journal / f"{round}.json").read_text())
    except FileNotFoundError:
        return None
