"""Shared by the benchmarks: write one section of BENCHMARKS.md (replacing the previous one)."""

from __future__ import annotations

import platform
import re
import sys
import time
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEvery figure here was measured by the command shown above it; the machine is "
          "named in each section. Re-run a benchmark to refresh its section.\n")


def command_line() -> str:
    return "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section tagged `key` in BENCHMARKS.md."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    section = (f"<!-- {key} -->\n## {title}\n\n`{command_line()}` ({time.strftime('%Y-%m-%d')}, {machine})\n\n"
               f"{body.strip()}\n<!-- /{key} -->\n")
    pattern = re.compile(rf"<!-- {re.escape(key)} -->.*?<!-- /{re.escape(key)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_MD.write_text(text)
    print(f"\nwrote section '{key}' of {BENCHMARKS_MD}")
