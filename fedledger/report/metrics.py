"""Combine the institutions' own evaluations into client-average and pooled figures.

Pooled figures are what one model would score on all test sets put together; they are computed
from each institution's sums (a confusion matrix, summed errors, concordant pairs, a histogram of
scores: `fedledger.learning.tasks`), so no test record leaves a site.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedledger.learning import average_scores
from fedledger.learning.tasks import BINARY, Task

MAX_LIST = 1024                     # numbers in one list of an evaluation (a 32 x 32 confusion matrix)


def evaluation_problem(doc: Any, task: Task = BINARY) -> str | None:
    """Why `doc` is not an evaluation as `fedledger.learning.evaluate` makes one for `task`
    (None if it is): the right keys, finite numbers, whole counts that add up, rates that agree
    with the counts. Institutions' evaluations are untrusted input: one that is not checked
    could make the summary's sums overflow, and canonical JSON refuses infinities."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    for key, value in doc.items():
        values = value if isinstance(value, list) else [value]
        flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
        if len(flat) > MAX_LIST or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                                       for v in flat):
            return f"{key} is not a finite number or a list of at most {MAX_LIST} of them"
    return task.problem(doc)


def summarize_evaluations(per_institution: Mapping[str, Mapping[str, Any]], task: Task = BINARY) -> dict[str, Any]:
    """Each institution's figures, their client average (each counts once) and the pooled figures."""
    per = {name: dict(m) for name, m in sorted(per_institution.items())}
    return {"per_institution": per, "client_average": average_scores(per, task.average_keys()),
            "pooled": task.pool(per)}
