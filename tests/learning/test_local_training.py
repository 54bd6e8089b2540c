"""Local training (determinism, learning, FedProx) and evaluation."""

import math

import numpy as np
import pytest

from fedledger.errors import ConfigError, DataError
from fedledger.learning import (
    ClientData,
    TrainConfig,
    build_model,
    evaluate,
    get_flat_params,
    set_flat_params,
    train_local,
)


def separable(n=64, d=5, seed=0):
    """A linearly separable problem: y = 1 when w.x > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) > 0).astype(np.float32)
    return ClientData("site", x, y, x.copy(), y.copy())


def test_same_seed_same_params_other_seed_differs():
    data, cfg = separable(), TrainConfig(lr=0.05, local_steps=30)
    runs = []
    for seed in (3, 3, 4):
        model = build_model("mlp", 5, hidden=(8,), seed=0)
        runs.append(train_local(model, data, cfg, seed=seed))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert runs[0].dtype == np.float32


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 0.01)])
def test_training_reduces_loss(optimizer, lr):
    data = separable()
    model = build_model("logreg", 5, seed=0)
    before = evaluate(model, data.x_train, data.y_train)["loss"]
    params = train_local(model, data, TrainConfig(optimizer=optimizer, lr=lr, epochs=20), seed=0)
    after = evaluate(model, data.x_train, data.y_train)
    assert after["loss"] < 0.5 * before
    assert after["accuracy"] > 0.9
    np.testing.assert_array_equal(params, get_flat_params(model))


def test_one_full_batch_sgd_step_is_the_bce_gradient_step():
    data = separable(n=8, d=3)
    model = build_model("logreg", 3, seed=0)
    w = get_flat_params(model).astype(np.float64)
    train_local(model, data, TrainConfig(lr=0.5, batch_size=8, epochs=1), seed=0)
    x1 = np.hstack([data.x_train, np.ones((8, 1), np.float32)]).astype(np.float64)
    p = 1 / (1 + np.exp(-x1 @ w))
    expected = w - 0.5 * x1.T @ (p - data.y_train) / 8      # mean BCE gradient
    np.testing.assert_allclose(get_flat_params(model), expected, rtol=1e-5, atol=1e-6)


def test_steps_count_epochs_with_a_short_last_batch():
    assert TrainConfig(batch_size=4, epochs=3).num_steps(10) == 9
    assert TrainConfig(batch_size=4, local_steps=7).num_steps(10) == 7


def test_prox_term_pulls_towards_the_global_params():
    data = separable()
    anchor = build_model("logreg", 5, seed=0)
    global_params = get_flat_params(anchor)

    def distance(mu, given=True):
        model = build_model("logreg", 5, seed=0)
        cfg = TrainConfig(lr=0.05, local_steps=200, prox_mu=mu)
        params = train_local(model, data, cfg, seed=1, global_params=global_params if given else None)
        return np.linalg.norm(params - global_params)

    free = distance(0.0)
    assert distance(5.0) < 0.5 * free
    # Without global_params the anchor is the starting point, here the same vector.
    assert distance(5.0, given=False) == pytest.approx(distance(5.0), rel=1e-6)
    with pytest.raises(ValueError, match="global_params"):
        train_local(anchor, data, TrainConfig(prox_mu=1.0), seed=0, global_params=global_params[:-1])


@pytest.mark.parametrize("kwargs,message", [
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"local_steps": None}, "local_steps or epochs"),
    ({"epochs": 0}, "epochs"),
    ({"prox_mu": -1.0}, "prox_mu"),
])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_evaluate_on_a_hand_made_example():
    model = build_model("logreg", 1, seed=0)
    set_flat_params(model, np.array([1.0, 0.0], np.float32))     # P(y=1) = sigmoid(x)
    x = np.array([[-2.0], [-1.0], [1.0], [2.0], [3.0]], np.float32)
    y = np.array([0, 1, 1, 0, 1], np.float32)
    m = evaluate(model, x, y)
    # predictions 0 0 1 1 1: tp at x=1,3; fp at 2; tn at -2; fn at -1
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (2, 1, 1, 1, 5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    sig = lambda v: 1 / (1 + math.exp(-v))
    bce = -(math.log(1 - sig(-2)) + math.log(sig(-1)) + math.log(sig(1)) + math.log(1 - sig(2)) + math.log(sig(3))) / 5
    assert m["loss"] == pytest.approx(bce, rel=1e-5)
    assert m["auc"] == pytest.approx(4 / 6)   # positives above negatives in 4 of 6 pairs


def test_evaluate_one_class_has_no_auc_and_empty_is_an_error():
    model = build_model("logreg", 2, seed=0)
    set_flat_params(model, np.array([0.0, 0.0, 1.0], np.float32))   # P(y=1) = sigmoid(1) everywhere
    x = np.zeros((3, 2), np.float32)
    m = evaluate(model, x, np.ones(3, np.float32))
    assert "auc" not in m
    assert (m["accuracy"], m["f1"]) == (1.0, 1.0)
    with pytest.raises(DataError):
        evaluate(model, x[:0], np.ones(0, np.float32))


def test_client_data_rejects_bad_arrays():
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.float32)
    with pytest.raises(DataError, match="float32"):
        ClientData("a", x.astype(np.float64), y, x, y)
    with pytest.raises(DataError, match="shape"):
        ClientData("a", x, y[:3], x, y)
    with pytest.raises(DataError, match="features"):
        ClientData("a", x, y, np.zeros((4, 3), np.float32), y)
    with pytest.raises(DataError, match="feature_std"):
        ClientData("a", x, y, x, y, feature_mean=np.zeros(2))
