"""Plain-text tables for the terminal and for BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.learning import BINARY, Task
from fedledger.learning.tasks import AUC_BINS

# (header, figure) per task; a figure an institution lacks (AUC on a one-class test set) is blank
COLUMNS = {
    "binary": (("accuracy", "accuracy"), ("balanced acc.", "balanced_accuracy"), ("F1", "f1"), ("AUC", "auc"),
               ("loss", "loss")),
    "multiclass": (("accuracy", "accuracy"), ("balanced acc.", "balanced_accuracy"), ("macro F1", "macro_f1"),
                   ("loss", "loss")),
    "regression": (("RMSE", "rmse"), ("MAE", "mae"), ("R2", "r2")),
    "survival": (("events", "events"), ("C-index", "c_index"), ("loss", "loss")),
}
POOLED_AUC_NOTE = (f"pooled AUC: from each institution's histogram of P(y = 1) in {AUC_BINS} bins, exact but "
                   "for ties within a bin (no score leaves a site)")


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown-compatible table; floats with 4 decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line([str(h) for h in header]), line(["-" * w for w in widths]), *map(line, cells)])


def results_table(summary: Mapping[str, Any], task: Task = BINARY) -> str:
    """Final test figures per institution, their client average and the pooled figures."""
    columns = COLUMNS[task.kind]
    pooled = dict(summary["pooled"])
    if "auc_binned" in pooled:
        pooled["auc"] = pooled["auc_binned"]

    def row(name: str, n: Any, figures: Mapping[str, Any]) -> list[Any]:
        return [name, n, *(_figure(figures.get(key, "")) for _, key in columns)]

    rows = [row(name, int(m["n"]), m) for name, m in summary["per_institution"].items()]
    rows += [row("client average", "", summary["client_average"]), row("pooled", int(pooled["n"]), pooled)]
    table = format_table(["institution", "test n", *(header for header, _ in columns)], rows)
    return table + (f"\n{POOLED_AUC_NOTE}" if "auc_binned" in pooled else "")


def _figure(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() and value > 1 else value


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
