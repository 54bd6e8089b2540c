"""PNG plot of test metrics per round and institution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def metrics_title(study_name: str, strategy: Any) -> str:
    """The title of a run's metrics.png: the study and its aggregation strategy."""
    return f"{study_name}: {strategy.name}"


def plot_metrics(rounds: Sequence[Mapping[str, Any]], path: Path, title: str, headline: str = "accuracy") -> None:
    """One panel per figure (the task's headline, e.g. accuracy, and the loss); one line per
    institution plus the pooled figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["round"] for r in rounds]
    names = list(rounds[0]["metrics"]["per_institution"]) if rounds else []
    for ax, key in zip(axes, (headline, "loss")):
        for name in names:
            ax.plot(xs, [r["metrics"]["per_institution"][name].get(key, float("nan")) for r in rounds], marker=".",
                    label=name)
        ax.plot(xs, [r["metrics"]["pooled"].get(key, float("nan")) for r in rounds], color="black", linewidth=2,
                label="pooled")
        ax.set_xlabel("round")
        ax.set_ylabel(f"test {key}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
