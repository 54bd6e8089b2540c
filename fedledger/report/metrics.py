"""Combine the institutions' own evaluations into client-average and pooled figures.

Pooled figures are what one model would score on all test sets put together; they are computed
from each institution's counts (confusion matrix, summed loss), so no test record leaves a site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedledger.learning import average_scores


def summarize_evaluations(per_institution: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    per = {name: dict(m) for name, m in sorted(per_institution.items())}
    return {"per_institution": per, "client_average": average_scores(per), "pooled": _pooled(per)}


def _pooled(per: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    total = {k: sum(m[k] for m in per.values()) for k in ("tp", "fp", "tn", "fn")}
    n = sum(total.values())
    tp, fp, fn = total["tp"], total["fp"], total["fn"]
    return {
        "accuracy": (tp + total["tn"]) / n if n else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "loss": sum(m["loss"] * m["n"] for m in per.values()) / n if n else 0.0,
        "n": n,
    }
