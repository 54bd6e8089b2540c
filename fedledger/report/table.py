"""Plain-text tables for the terminal and for BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown-compatible table; floats with 4 decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line([str(h) for h in header]), line(["-" * w for w in widths]), *map(line, cells)])


def results_table(summary: Mapping[str, Any]) -> str:
    """Final test metrics per institution, their average and the pooled figures."""
    rows = []
    for name, m in summary["per_institution"].items():
        rows.append([name, int(m["n"]), m["accuracy"], m["f1"], m.get("auc", float("nan")), m["loss"]])
    avg, pooled = summary["client_average"], summary["pooled"]
    rows.append(["client average", "", avg["accuracy"], avg["f1"], avg.get("auc", float("nan")), avg["loss"]])
    rows.append(["pooled", int(pooled["n"]), pooled["accuracy"], pooled["f1"], "", pooled["loss"]])
    return format_table(["institution", "test n", "accuracy", "F1", "AUC", "loss"], rows)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
