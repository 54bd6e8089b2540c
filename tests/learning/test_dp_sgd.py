"""DP-SGD through Opacus: reproducible by seed, per-record clipping active, noise of the scale the
accountant counts, and the usual guards."""

import warnings

import numpy as np
import pytest
import torch

from fedledger.errors import ConfigError, DataError
from fedledger.learning import (
    ClientData,
    TrainConfig,
    build_model,
    get_flat_params,
    set_flat_params,
    train_local,
)
from fedledger.learning.dp_sgd import dp_sample_rate, train_dp_sgd


def separable(n=64, d=5, seed=0, scale=1.0):
    """A linearly separable problem (y = 1 when w.x > 0), features scaled by `scale`."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(size=(n, d))).astype(np.float32)
    y = (x @ rng.normal(size=d) > 0).astype(np.float32)
    return ClientData("site", x, y, x.copy(), y.copy())


def _model(name, d, seed=0):
    return build_model(name, d, hidden=(8,), seed=seed) if name == "mlp" else build_model(name, d, seed=seed)


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_same_seed_same_params_other_seed_differs(name):
    data, cfg = separable(), TrainConfig(lr=0.1, batch_size=8, local_steps=15)
    rate = dp_sample_rate(cfg, data.num_train)
    runs = []
    for seed in (3, 3, 4):
        model = _model(name, 5)
        runs.append(train_dp_sgd(model, data, cfg, noise_multiplier=1.0, max_grad_norm=1.0,
                                 sample_rate=rate, seed=seed))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert runs[0].dtype == np.float32 and np.all(np.isfinite(runs[0]))
    start = get_flat_params(_model(name, 5))
    assert not np.array_equal(runs[0], start)


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_returns_the_trained_model_params_and_leaves_the_model_plain(name):
    data, cfg = separable(), TrainConfig(lr=0.1, batch_size=8, local_steps=5)
    model = _model(name, 5)
    params = train_dp_sgd(model, data, cfg, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.125, seed=0)
    np.testing.assert_array_equal(params, get_flat_params(model))
    # Opacus's hooks and per-sample attributes are gone: the model trains as usual afterwards
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(not hasattr(p, "grad_sample") for p in model.parameters())
    fresh = _model(name, 5)
    set_flat_params(fresh, params)
    np.testing.assert_array_equal(train_local(model, data, cfg, seed=1), train_local(fresh, data, cfg, seed=1))


def test_dp_sgd_learns_with_little_noise():
    data = separable(n=128)
    cfg = TrainConfig(lr=0.5, batch_size=16, local_steps=150)
    model = _model("logreg", 5)
    train_dp_sgd(model, data, cfg, noise_multiplier=0.1, max_grad_norm=1.0,
                 sample_rate=dp_sample_rate(cfg, data.num_train), seed=0)
    with torch.no_grad():
        prob = model(torch.from_numpy(data.x_train)).numpy()
    assert np.mean((prob > 0.5) == (data.y_train > 0.5)) > 0.9


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_per_record_clipping_bounds_the_step(name):
    # Full batch, lr 1, one step, no noise to speak of: the step is the mean of the clipped
    # per-record gradients, whose norm is at most max_grad_norm.
    data = separable(n=32, scale=50.0)
    cfg, clip = TrainConfig(lr=1.0, batch_size=32, local_steps=1), 0.5
    model = _model(name, 5)
    start = get_flat_params(model)
    params = train_dp_sgd(model, data, cfg, noise_multiplier=1e-9, max_grad_norm=clip, sample_rate=1.0, seed=0)
    dp_step = np.linalg.norm(params.astype(np.float64) - start)
    assert 0 < dp_step <= clip + 1e-5
    # the same step without DP goes well past the clipping norm: the clipping is what held it back
    plain = train_local(_model(name, 5), data, cfg, seed=0)
    assert np.linalg.norm(plain.astype(np.float64) - start) > 4 * clip


def test_logreg_step_is_the_mean_of_clipped_per_record_gradients():
    data = separable(n=16, d=3, scale=10.0)
    clip = 0.7
    model = _model("logreg", 3)
    w = get_flat_params(model).astype(np.float64)
    params = train_dp_sgd(model, data, TrainConfig(lr=1.0, batch_size=16, local_steps=1),
                          noise_multiplier=1e-9, max_grad_norm=clip, sample_rate=1.0, seed=0)
    x1 = np.hstack([data.x_train, np.ones((16, 1), np.float32)]).astype(np.float64)
    p = 1 / (1 + np.exp(-x1 @ w))
    per_record = (p - data.y_train)[:, None] * x1                    # BCE gradient of each record
    norms = np.linalg.norm(per_record, axis=1)
    assert norms.max() > clip                                        # some records are clipped
    clipped = per_record * np.minimum(1.0, clip / (norms + 1e-6))[:, None]
    np.testing.assert_allclose(params, w - clipped.mean(axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rate,expected_batch", [(1.0, 64), (0.5, 32)])
def test_noise_std_is_noise_times_clip_over_expected_batch(rate, expected_batch):
    # With large noise one step's change is all noise: lr * noise * clip / expected batch size
    # per parameter (the clipped gradient moves the whole vector by at most lr * clip).
    d, n = 20, 64
    data = separable(n=n, d=d)
    cfg = TrainConfig(lr=0.5, batch_size=expected_batch, local_steps=1)
    noise, clip = 40.0, 0.8
    model = build_model("mlp", d, hidden=(64,), seed=0)      # 1409 parameters
    start = get_flat_params(model).astype(np.float64)
    change = train_dp_sgd(model, data, cfg, noise_multiplier=noise, max_grad_norm=clip,
                          sample_rate=rate, seed=5).astype(np.float64) - start
    assert change.size > 1000
    expected = cfg.lr * noise * clip / expected_batch
    assert change.std() == pytest.approx(expected, rel=0.1)
    assert abs(change.mean()) < 5 * expected / np.sqrt(change.size)


def test_prox_mu_is_refused():
    data = separable()
    with pytest.raises(ConfigError):
        train_dp_sgd(_model("logreg", 5), data, TrainConfig(prox_mu=0.1), noise_multiplier=1.0,
                     max_grad_norm=1.0, sample_rate=0.1, seed=0)


@pytest.mark.parametrize("noise,clip,rate", [
    (0.0, 1.0, 0.1), (-1.0, 1.0, 0.1), (float("nan"), 1.0, 0.1),
    (1.0, 0.0, 0.1), (1.0, -0.5, 0.1), (1.0, float("nan"), 0.1),
    (1.0, 1.0, 0.0), (1.0, 1.0, -0.1), (1.0, 1.0, 1.5), (1.0, 1.0, float("nan")),
])
def test_bad_noise_clip_or_rate_is_refused(noise, clip, rate):
    model = _model("logreg", 5)
    start = get_flat_params(model)
    with pytest.raises(ConfigError):
        train_dp_sgd(model, separable(), TrainConfig(local_steps=2), noise_multiplier=noise,
                     max_grad_norm=clip, sample_rate=rate, seed=0)
    np.testing.assert_array_equal(get_flat_params(model), start)


def test_no_training_rows_is_a_data_error():
    empty = np.zeros((0, 5), np.float32)
    data = ClientData("empty", empty, np.zeros(0, np.float32), np.zeros((1, 5), np.float32), np.zeros(1, np.float32))
    with pytest.raises(DataError):
        train_dp_sgd(_model("logreg", 5), data, TrainConfig(), noise_multiplier=1.0, max_grad_norm=1.0,
                     sample_rate=0.5, seed=0)
    with pytest.raises(DataError):
        dp_sample_rate(TrainConfig(), 0)


def test_dp_sample_rate():
    assert dp_sample_rate(TrainConfig(batch_size=8), 64) == 0.125
    assert dp_sample_rate(TrainConfig(batch_size=8), 5) == 1.0
    assert dp_sample_rate(TrainConfig(batch_size=1), 1) == 1.0


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_empty_poisson_batches_still_train(name):
    # 3 rows at rate 0.01: nearly every batch is empty; those steps carry noise only
    data = separable(n=3)
    model = _model(name, 5)
    start = get_flat_params(model)
    params = train_dp_sgd(model, data, TrainConfig(lr=0.1, batch_size=1, local_steps=30),
                          noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.01, seed=0)
    assert np.all(np.isfinite(params))
    assert not np.array_equal(params, start)


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_global_torch_rng_is_not_consumed(name):
    data, cfg = separable(), TrainConfig(lr=0.1, batch_size=8, local_steps=10)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    model = _model(name, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_dp_sgd(model, data, cfg, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.125, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
