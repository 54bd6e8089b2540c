"""FLamby's Pooled and Local baselines: what they train on and how they are scored."""

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.learning import (
    TrainConfig,
    build_model,
    evaluate,
    load_breast_cancer,
    train_local,
    train_local_baseline,
    train_pooled,
)
from fedledger.learning.data import ClientData, standardize

CFG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=8, epochs=2)


@pytest.fixture(scope="module")
def clients():
    return load_breast_cancer(3, 1.0, seed=0)


def test_local_baseline_trains_on_one_client_and_scores_all(clients):
    result = train_local_baseline(clients, 1, CFG, "logreg", seed=5)
    model = build_model("logreg", 30, seed=5)
    train_local(model, clients[1], CFG, seed=5)
    assert list(result["per_client"]) == [c.name for c in clients]
    for c in clients:
        assert result["per_client"][c.name] == evaluate(model, c.x_test, c.y_test)
    for key in ("accuracy", "f1", "loss", "auc"):
        expected = np.mean([m[key] for m in result["per_client"].values()])   # equal weight per client
        assert result["client_average"][key] == pytest.approx(expected)


def test_pooled_rescales_the_pooled_training_rows_as_flamby(clients):
    raw = np.concatenate([c.x_train * c.feature_std + c.feature_mean for c in clients])
    mean, std = standardize(raw)
    pooled = ClientData("all", ((raw - mean) / std).astype(np.float32),
                        np.concatenate([c.y_train for c in clients]), clients[0].x_test, clients[0].y_test)
    model = build_model("logreg", 30, seed=5)
    train_local(model, pooled, CFG, seed=5)
    result = train_pooled(clients, CFG, "logreg", seed=5)
    for c in clients:
        got, want = result["per_client"][c.name], evaluate(model, c.x_test, c.y_test)
        assert got["accuracy"] == want["accuracy"]
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)


def test_bad_arguments(clients):
    with pytest.raises(ConfigError, match="index"):
        train_local_baseline(clients, 3, CFG, "logreg", seed=0)
    with pytest.raises(ConfigError, match="at least one client"):
        train_pooled([], CFG, "logreg", seed=0)
