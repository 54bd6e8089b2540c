"""Combine the institutions' own evaluations into client-average and pooled figures.

Pooled figures are what one model would score on all test sets put together; they are computed
from each institution's counts (confusion matrix, summed loss), so no test record leaves a site.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedledger.learning import average_scores


COUNTS = ("n", "tp", "fp", "tn", "fn")
RATES = ("accuracy", "f1", "auc")   # auc only where the test set holds both classes
MAX_LOSS = 100.0                    # torch's binary cross-entropy clamps log(p) at -100
MAX_RECORDS = 10**9                 # far beyond any site's test set; keeps sums exact in float64


def evaluation_problem(doc: Any) -> str | None:
    """Why `doc` is not an evaluation as `fedledger.learning.evaluate` makes one (None if it is):
    the right keys, finite numbers, whole counts that add up, rates in [0, 1] that agree with the
    counts, a loss in [0, 100]. Institutions' evaluations are untrusted input: one that is not
    checked could make the summary's sums overflow, and canonical JSON refuses infinities."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    keys = set(COUNTS) | {"accuracy", "f1", "loss"}
    unknown, missing = set(doc) - keys - {"auc"}, keys - set(doc)
    if unknown or missing:
        return f"unexpected keys {sorted(unknown)[:3]}" if unknown else f"missing keys {sorted(missing)}"
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{key} is not a finite number"
    if any(doc[k] != int(doc[k]) or not 0 <= doc[k] <= MAX_RECORDS for k in COUNTS):
        return f"the counts {', '.join(COUNTS)} must be whole numbers from 0 to {MAX_RECORDS:,}"
    n, tp, fp, tn, fn = (int(doc[k]) for k in COUNTS)
    if n == 0 or tp + fp + tn + fn != n:
        return f"the confusion matrix adds up to {tp + fp + tn + fn}, not n = {n} (at least 1)"
    if any(not 0 <= doc[k] <= 1 for k in RATES if k in doc) or not 0 <= doc["loss"] <= MAX_LOSS:
        return f"a rate outside [0, 1] or a loss outside [0, {MAX_LOSS:g}]"
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    if abs(doc["accuracy"] - (tp + tn) / n) > 1e-9 or abs(doc["f1"] - f1) > 1e-9:
        return "accuracy or f1 does not follow from the counts"
    return None


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
