"""Shared by the benchmarks: write one section of BENCHMARKS.md (replacing the previous one), and
the smoke mode's flag and ending (tests/test_benchmarks.py runs every benchmark with --smoke)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEvery figure here was measured by the command shown above it; the machine is "
          "named in each section. Re-run a benchmark to refresh its section.\n")


def command_line() -> str:
    return "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def cpu_description() -> str:
    """The processor's model name and how many cores this process may use, for a section's body
    (write_section names only the architecture and the Python)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{names[0] if names else platform.processor() or platform.machine()}, {cores} cores"


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


def add_smoke_flag(parser: argparse.ArgumentParser, sizes: str) -> None:
    """`--smoke`: run at `sizes` (a few seconds), write nothing, exit 1 when something is wrong."""
    parser.add_argument("--smoke", action="store_true",
                        help=f"{sizes}; write nothing to BENCHMARKS.md, exit 1 if something is wrong")


def end_smoke(problems: Sequence[str]) -> NoReturn:
    """End a smoke run: say each problem and exit 1 if there was any, else exit 0. Smoke figures
    (tiny sizes) never reach BENCHMARKS.md."""
    for problem in problems:
        print(f"smoke check failed: {problem}", flush=True)
    sys.exit(1 if problems else 0)
