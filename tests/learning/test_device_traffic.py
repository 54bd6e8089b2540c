"""The simulated hospital device traffic for federated intrusion detection."""

import math

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.learning import ClientData, TrainConfig, build_model, evaluate, make_task, train_local
from fedledger.learning.device_traffic import (
    DEVICE_TRAFFIC_CLASSES,
    DEVICE_TRAFFIC_FEATURES,
    MAX_SEEN_ATTACKS,
    load_device_traffic,
)

CLASSES = set(range(len(DEVICE_TRAFFIC_CLASSES)))


def test_names_classes_and_shapes():
    assert DEVICE_TRAFFIC_CLASSES == ("normal", "spoofing", "replay", "flooding", "injection")
    assert 10 <= len(DEVICE_TRAFFIC_FEATURES) <= 20 and len(set(DEVICE_TRAFFIC_FEATURES)) == len(DEVICE_TRAFFIC_FEATURES)
    clients = load_device_traffic(4, seed=1, test_fraction=0.25, rows_per_client=400)
    assert [c.name for c in clients] == [f"hospital_{i}" for i in range(4)]
    for c in clients:
        assert c.x_train.dtype == c.x_test.dtype == c.y_train.dtype == c.y_test.dtype == np.float32
        assert c.x_train.shape == (300, len(DEVICE_TRAFFIC_FEATURES)) and c.x_test.shape == (100, len(DEVICE_TRAFFIC_FEATURES))
        assert c.y_train.shape == (300,) and c.y_test.shape == (100,)
        assert c.feature_names == DEVICE_TRAFFIC_FEATURES and c.classes == DEVICE_TRAFFIC_CLASSES
        assert np.all(np.isfinite(c.x_train)) and np.all(np.isfinite(c.x_test))
        assert set(np.unique(np.concatenate([c.y_train, c.y_test]))) <= CLASSES


def test_test_side_rounds_up_as_a_split_does():
    c = load_device_traffic(2, seed=0, test_fraction=0.33, rows_per_client=101)[0]
    assert len(c.y_test) == math.ceil(0.33 * 101) and c.num_train == 101 - math.ceil(0.33 * 101)


def test_same_seed_same_data_other_seed_other_data():
    a, b = load_device_traffic(3, seed=5), load_device_traffic(3, seed=5)
    for x, y in zip(a, b):
        for field in ("x_train", "y_train", "x_test", "y_test", "feature_mean", "feature_std"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
    c = load_device_traffic(3, seed=6)
    assert not np.array_equal(a[0].x_train, c[0].x_train)
    assert any(not np.array_equal(x.y_train, y.y_train) for x, y in zip(a, c))


@pytest.mark.parametrize("num_clients", [2, 3, 5, 8])
def test_every_test_set_holds_every_class_and_training_is_skewed(num_clients):
    for seed in range(4):
        clients = load_device_traffic(num_clients, seed, rows_per_client=200)
        seen = [set(np.unique(c.y_train).astype(int)) for c in clients]
        for c, mine in zip(clients, seen):
            assert set(np.unique(c.y_test).astype(int)) == CLASSES          # every attack is measured at every site
            assert 0 in mine and 1 <= len(mine - {0}) <= MAX_SEEN_ATTACKS   # normal traffic and 1 to 3 attacks
        # each hospital lacks some attack, yet the consortium together trains on every one
        assert all(mine != CLASSES for mine in seen)
        assert set().union(*seen) == CLASSES
        # hospitals differ in their attack mixes
        assert len({tuple(sorted(mine)) for mine in seen}) > 1 or num_clients == 2


def test_consortium_wide_standardization():
    clients = load_device_traffic(5, seed=3)
    pooled = np.concatenate([c.x_train for c in clients]).astype(np.float64)
    np.testing.assert_allclose(pooled.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pooled.std(axis=0, ddof=1), 1.0, atol=1e-4)
    for c in clients:
        np.testing.assert_array_equal(c.feature_mean, clients[0].feature_mean)   # one scaling for all
        np.testing.assert_array_equal(c.feature_std, clients[0].feature_std)
    # and the raw values come back from it: plausible traffic (shares in [0, 1], entropy in [0, 8] bits)
    raw = pooled * clients[0].feature_std + clients[0].feature_mean
    column = {name: raw[:, k] for k, name in enumerate(DEVICE_TRAFFIC_FEATURES)}
    for share in ("tcp_share", "udp_share", "tls_share", "stale_sequence_ratio", "repeated_payload_ratio"):
        assert column[share].min() >= -1e-4 and column[share].max() <= 1 + 1e-4
    assert np.all(column["tcp_share"] + column["udp_share"] <= 1 + 1e-4)
    assert column["payload_entropy_bits"].min() >= -1e-4 and column["payload_entropy_bits"].max() <= 8 + 1e-4
    assert column["packets_per_s"].min() > 0


def test_attacks_shift_the_features_they_should():
    clients = load_device_traffic(5, seed=4)
    c = clients[0]
    x = np.concatenate([k.x_test for k in clients]).astype(np.float64) * c.feature_std + c.feature_mean
    y = np.concatenate([k.y_test for k in clients]).astype(int)
    median = lambda name, label: np.median(x[y == label, DEVICE_TRAFFIC_FEATURES.index(name)])  # noqa: E731
    assert median("identity_mismatch_ratio", 1) > 3 * median("identity_mismatch_ratio", 0)      # spoofing
    assert median("stale_sequence_ratio", 2) > 3 * median("stale_sequence_ratio", 0)            # replay
    assert median("packets_per_s", 3) > 1.5 * median("packets_per_s", 0)                       # flooding
    assert median("commands_per_min", 4) > 1.5 * median("commands_per_min", 0)                 # injection


@pytest.mark.parametrize("kwargs", [
    {"num_clients": 1}, {"num_clients": 0}, {"num_clients": 2.5}, {"num_clients": True},
    {"seed": -1}, {"seed": 1.0}, {"test_fraction": 0.0}, {"test_fraction": 1.0}, {"test_fraction": float("nan")},
    {"rows_per_client": 0}, {"rows_per_client": 50}, {"rows_per_client": 10**9},
    {"rows_per_client": 600, "test_fraction": 0.95},
])
def test_bad_arguments(kwargs):
    args = {"num_clients": 3, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        load_device_traffic(**args)


def _pooled(clients: list[ClientData]) -> ClientData:
    return ClientData("pooled", np.concatenate([c.x_train for c in clients]), np.concatenate([c.y_train for c in clients]),
                      np.concatenate([c.x_test for c in clients]), np.concatenate([c.y_test for c in clients]))


def test_linear_detector_beats_chance_and_mlp_beats_it():
    task = make_task("multiclass", classes=len(DEVICE_TRAFFIC_CLASSES))
    data = _pooled(load_device_traffic(5, seed=0))
    cfg = TrainConfig(optimizer="adam", lr=0.01, batch_size=32, local_steps=600)
    scores = {}
    for name in ("logreg", "mlp"):
        model = build_model(name, data.num_features, hidden=(32,), seed=0, task=task)
        train_local(model, data, cfg, seed=0)
        figures = evaluate(model, data.x_test, data.y_test)
        confusion = np.array(figures["confusion"])
        detection = confusion[1:, 1:].sum() / confusion[1:].sum()    # attacks flagged as any attack
        false_alarms = confusion[0, 1:].sum() / confusion[0].sum()
        scores[name] = figures["accuracy"], figures["macro_f1"], detection, false_alarms
    (lin_acc, lin_f1, lin_det, lin_fa), (mlp_acc, mlp_f1, mlp_det, _) = scores["logreg"], scores["mlp"]
    majority = np.mean(data.y_test == 0)           # always saying "normal"
    assert majority < lin_acc < 0.97 and lin_det > lin_fa + 0.5
    assert mlp_acc > lin_acc + 0.02 and mlp_f1 > lin_f1 + 0.02 and mlp_det > lin_det
