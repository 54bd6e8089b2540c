"""FLamby's non-federated reference points: "Pooled" (all training data in one place) and
"Local i" (institution i alone), each scored on every institution's test set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.errors import ConfigError
from fedledger.learning.data import ClientData, standardize
from fedledger.learning.models import build_model
from fedledger.learning.tasks import BINARY, Task
from fedledger.learning.training import TrainConfig, evaluate, train_local


def train_pooled(clients: list[ClientData], cfg: TrainConfig, model_name: str, *, seed: int,
                 hidden: Sequence[int] = (32,), task: Task = BINARY, shape: Sequence[int] = ()) -> dict[str, Any]:
    """Train one model on all institutions' training rows put together; score it on each test set.

    As in FLamby's Pooled baseline, the pooled training rows are standardized with the statistics
    of all of them together (what one central data holder would do) while each test set keeps its
    institution's own scaling. That needs every client's feature_mean/feature_std; when some
    client lacks them, the rows are pooled as they are.
    """
    if not clients:
        raise ConfigError("train_pooled needs at least one client")
    if all(c.feature_mean is not None for c in clients):
        raw = np.concatenate([c.x_train.astype(np.float64) * c.feature_std + c.feature_mean for c in clients])
        mean, std = standardize(raw)
        x_train = ((raw - mean) / std).astype(np.float32)
    else:
        x_train = np.concatenate([c.x_train for c in clients])
    # The pooled test set is never scored: the baseline reports per-institution figures.
    y_train = np.concatenate([c.y_train for c in clients])
    pooled = ClientData("pooled", x_train, y_train, np.empty((0, x_train.shape[1]), np.float32),
                        np.empty((0, *y_train.shape[1:]), np.float32))
    return _train_and_score(pooled, clients, cfg, model_name, seed, hidden, task, shape)


def train_local_baseline(clients: list[ClientData], index: int, cfg: TrainConfig, model_name: str, *,
                         seed: int, hidden: Sequence[int] = (32,), task: Task = BINARY,
                         shape: Sequence[int] = ()) -> dict[str, Any]:
    """Train on institution `index` alone and score the model on every institution's test set."""
    if not 0 <= index < len(clients):
        raise ConfigError(f"index must be between 0 and {len(clients) - 1}, got {index}")
    return _train_and_score(clients[index], clients, cfg, model_name, seed, hidden, task, shape)


def _train_and_score(train_on: ClientData, clients: list[ClientData], cfg: TrainConfig, model_name: str,
                     seed: int, hidden: Sequence[int], task: Task, shape: Sequence[int] = ()) -> dict[str, Any]:
    """`shape`: what a "cnn" reads each row as (build_model)."""
    model = build_model(model_name, train_on.num_features, hidden=hidden, seed=seed, task=task, shape=shape)
    train_local(model, train_on, cfg, seed=seed)
    return client_average({c.name: evaluate(model, c.x_test, c.y_test) for c in clients}, model.task)


def average_scores(per_client: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """FLamby's client average of each of `keys`: each institution's score counts once,
    whatever its size. A score missing for some institution (auc on a one-class test set) is
    left out of the average."""
    return {key: float(np.mean([m[key] for m in per_client.values()]))
            for key in keys if all(key in m for m in per_client.values())}


def client_average(per_client: dict[str, dict[str, Any]], task: Task) -> dict[str, Any]:
    return {"per_client": per_client, "client_average": average_scores(per_client, task.average_keys())}
