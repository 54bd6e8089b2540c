"""What a model's inputs are: the features by name, the label's classes and each institution's
scaling. A run writes it beside its models (preprocessing.json) so that a bundle made from the
run can score new records as the institutions' own records were scored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedledger.learning.data import ClientData
from fedledger.learning.tasks import RegressionTask, Task

PREPROCESSING_FORMAT = "fedledger.preprocessing/1"


def preprocessing_record(clients: Sequence[ClientData], task: Task, classes: Sequence[str] = ()) -> dict[str, Any]:
    """The features' names (x0, x1... where the data names none), the label's classes in index
    order, and per institution the mean and standard deviation its features were standardized
    with (x = (raw - mean) / std); for regression, the label's scaling too."""
    first = clients[0]
    label = {"label_mean": task.label_mean, "label_std": task.label_std} if isinstance(task, RegressionTask) else {}
    return {**label,
        "format": PREPROCESSING_FORMAT,
        "task": task.kind,
        "features": list(first.feature_names) or [f"x{i}" for i in range(first.num_features)],
        "classes": list(classes or first.classes),
        "scaling": {c.name: {"mean": [float(v) for v in c.feature_mean], "std": [float(v) for v in c.feature_std]}
                    for c in clients if c.feature_mean is not None and c.feature_std is not None},
    }
