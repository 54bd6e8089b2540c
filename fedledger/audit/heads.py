"""Chain heads kept outside the run directory: `fedledger run` records the head block hash each
run ended on in a file of the user's own (by default ~/.local/share/fedledger/heads.json, or
under $FEDLEDGER_HOME), and `fedledger audit verify` checks the chain against it when no
`--head` is given. Whoever holds only the run directory, and rebuilds its chain from scratch,
cannot change what that file says; a copy of the run on another machine has no entry there,
and the audit says it did not verify the chain's identity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedledger.errors import ConfigError

MAX_HEADS_BYTES = 16 * 1024 * 1024


def heads_file() -> Path:
    """Where heads are recorded: $FEDLEDGER_HOME/heads.json, else $XDG_DATA_HOME/fedledger/heads.json,
    else ~/.local/share/fedledger/heads.json."""
    home = os.environ.get("FEDLEDGER_HOME")
    if home:
        return Path(home) / "heads.json"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "fedledger" / "heads.json"


def _key(run_dir: str | Path) -> str:
    return str(Path(run_dir).resolve())


def _read(path: Path) -> dict[str, str]:
    try:
        if path.stat().st_size > MAX_HEADS_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_HEADS_BYTES:,} bytes: not a heads file")
        heads = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the recorded chain heads in {path}: {exc}") from None
    if not isinstance(heads, dict) or not all(isinstance(v, str) for v in heads.values()):
        raise ConfigError(f"{path} is not a heads file (run directory -> block hash)")
    return heads


def record_head(run_dir: str | Path, head: str) -> Path:
    """Record that the run in `run_dir` ended on block `head`; the file it went to (owner-only)."""
    path = heads_file()
    heads = _read(path)
    heads[_key(run_dir)] = head
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(heads, indent=1, sort_keys=True))
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def recorded_head(run_dir: str | Path) -> str | None:
    """The head block hash recorded for the run in `run_dir`, if this user recorded one."""
    return _read(heads_file()).get(_key(run_dir))
