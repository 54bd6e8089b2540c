"""The architecture comparison as Markdown tables and a plot, from the data in compare.json."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from fedledger.report.table import format_table  # noqa: E402

MAX_INSTITUTION_ROWS = 12
FAULT_LABELS = {"wrong_result": "one wrong result", "silent": "one silent aggregator",
                "no_update": "one member sends no update"}


def comparison_report(data: Mapping[str, Any]) -> str:
    """Figures per architecture, then (if run) what each injected fault did to each."""
    archs: dict[str, Mapping[str, Any]] = data["architectures"]
    first = next(iter(archs.values()))
    row = lambda label, fn: [label, *(fn(a) for a in archs.values())]  # noqa: E731
    rows = [
        row("final accuracy, client average", lambda a: a["accuracy"]["client_average"]),
        row("final accuracy, pooled", lambda a: a["accuracy"]["pooled"]),
        *_institution_rows(archs),
        row("median seconds per round (rounds 2+)", lambda a: a["median_seconds_per_round"]),
        row("transactions per round", lambda a: _number(a["transactions_per_round"])),
        row("gas per round", lambda a: _number(a["gas_per_round"])),
        row("bytes written on chain per round", lambda a: _number(a["calldata_bytes_per_round"])),
        row("setup transactions", lambda a: a["setup_transactions"]),
        row("setup gas", lambda a: a["setup_gas"]),
        row("final model digest", lambda a: a["models"][-1][:16]),
        row("model digests identical across the three", lambda a: "yes" if data["digests_identical"] else "no"),
        row("audit of the honest run", lambda a: _audit(a["audit"])),
    ]
    parts = [f"## {data['study']}: three architectures, {first['rounds']} rounds",
             format_table(["", *archs], rows)]
    if not data["digests_identical"]:
        parts.append(f"The model digests differ from round {data['first_divergent_round']} on: "
                     f"{data['divergence']}.")
    if data["faults"]:
        outcome = {(f["architecture"], f["fault"]): f["outcome"] for f in data["faults"]}
        faults = list(dict.fromkeys(f["fault"] for f in data["faults"]))
        n = data["fault_rounds"]
        parts += [f"## Injected faults, {n} round{'s' if n > 1 else ''} each",
                  format_table(["fault", *archs], [[FAULT_LABELS.get(k, k), *(outcome.get((a, k), "") for a in archs)]
                                                   for k in faults])]
    return "\n\n".join(parts)


def _institution_rows(archs: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """One row per institution; past MAX_INSTITUTION_ROWS, their min, median and max (compare.json has all)."""
    per = {arch: a["accuracy"]["per_institution"] for arch, a in archs.items()}
    names = list(next(iter(per.values())))
    if len(names) <= MAX_INSTITUTION_ROWS:
        return [[f"final accuracy, {name}", *(p[name] for p in per.values())] for name in names]
    return [[f"final accuracy, {len(names)} institutions, min / median / max",
             *(" / ".join(f"{v:.4f}" for v in (min(p.values()), statistics.median(p.values()), max(p.values())))
               for p in per.values())]]


def plot_comparison(data: Mapping[str, Any], path: Path) -> None:
    """Pooled test accuracy per round, one line per architecture (identical runs overlap: the
    markers and dash styles keep each visible)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for (arch, figures), style in zip(data["architectures"].items(), (("o", "-"), ("s", "--"), ("^", ":"))):
        accuracy = figures["pooled_accuracy_per_round"]
        ax.plot(range(1, len(accuracy) + 1), accuracy, marker=style[0], linestyle=style[1], fillstyle="none",
                label=arch)
    ax.set_xlabel("round")
    ax.set_ylabel("pooled test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{data['study']}: loose, semi and full")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _number(value: float) -> str:
    """Per-round means: whole numbers shown as integers."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _audit(audit: Mapping[str, Any] | None) -> str:
    if audit is None:
        return "n/a (ledger off)"
    took = f" ({audit['seconds']:.0f} s)"
    if audit["ok"]:
        return "ok" + took
    if audit["error"]:
        return f"FAILED: {audit['error']}"
    where = f" in rounds {audit['failed_rounds']}" if audit["failed_rounds"] else ""
    return f"FAILED: {len(audit['failures'])} checks{where}{took}"
