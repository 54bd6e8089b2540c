"""The seeded Dirichlet split of Breast Cancer Wisconsin across hospitals."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

from fedledger.errors import ConfigError
from fedledger.learning import load_breast_cancer
from fedledger.learning.breast_cancer import MIN_PER_CLASS, MIN_ROWS, dirichlet_partition

Y = sklearn_breast_cancer().target


def test_partition_is_reproducible_and_seed_dependent():
    a, b = dirichlet_partition(Y, 5, 0.5, seed=7), dirichlet_partition(Y, 5, 0.5, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = dirichlet_partition(Y, 5, 0.5, seed=8)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("num_clients,alpha", [(2, 0.05), (5, 0.1), (5, 0.5), (20, 0.3), (50, 1.0), (8, 100.0)])
def test_partition_covers_every_row_once_and_meets_minimums(num_clients, alpha):
    for seed in range(3):
        parts = dirichlet_partition(Y, num_clients, alpha, seed)
        assert len(parts) == num_clients
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(Y)))
        for rows in parts:
            assert len(rows) >= MIN_ROWS
            assert min(np.sum(Y[rows] == 0), np.sum(Y[rows] == 1)) >= MIN_PER_CLASS


def test_smaller_alpha_skews_labels_more():
    def spread(alpha):
        return np.mean([np.std([Y[r].mean() for r in dirichlet_partition(Y, 5, alpha, s)]) for s in range(5)])
    assert spread(0.1) > 2 * spread(100.0)


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_clients_have_both_classes_in_training_and_consortium_scaling(alpha):
    for seed in range(3):
        clients = load_breast_cancer(5, alpha, seed)
        assert [c.name for c in clients] == [f"hospital_{i}" for i in range(5)]
        assert sum(c.num_train + len(c.y_test) for c in clients) == len(Y)
        for c in clients:
            assert c.num_features == 30
            assert set(np.unique(c.y_train)) == {0.0, 1.0}
            np.testing.assert_array_equal(c.feature_mean, clients[0].feature_mean)  # one scaling for all
        # z-scored with all training rows together, not site by site (label skew would erase the signal)
        pooled = np.concatenate([c.x_train for c in clients]).astype(np.float64)
        np.testing.assert_allclose(pooled.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(pooled.std(axis=0, ddof=1), 1.0, atol=1e-4)
        assert np.abs(clients[0].x_train.mean(axis=0)).max() > 0.05


def test_test_fraction_is_applied_per_client():
    for c in load_breast_cancer(4, 1.0, seed=3, test_fraction=0.5):
        n = c.num_train + len(c.y_test)
        assert len(c.y_test) == int(np.ceil(0.5 * n))


@pytest.mark.parametrize("kwargs,word", [
    ({"num_clients": 1}, "num_clients"),
    ({"alpha": 0.0}, "alpha"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"seed": -1}, "seed"),
    ({"num_clients": 60}, "too many"),
])
def test_bad_arguments_raise_config_error(kwargs, word):
    args = {"num_clients": 5, "alpha": 0.5, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=word):
        load_breast_cancer(**args)


def test_a_shared_share_of_the_rows_joins_every_hospital_and_leaves_the_split_alone():
    plain = load_breast_cancer(5, 0.1, 42)
    mixed = load_breast_cancer(5, 0.1, 42, shared_fraction=0.05)

    everyone = sklearn_breast_cancer().data

    def raw(c, x):      # which of the dataset's rows these are (the nearest to each, unscaled)
        unscaled = x.astype(np.float64) * c.feature_std + c.feature_mean
        return {int(np.argmin(np.abs(everyone - r).max(axis=1))) for r in unscaled}

    shared = raw(mixed[0], mixed[0].x_train[-29:])
    assert len(shared) == 29      # ceil(0.05 x 569) rows, the same at every hospital
    for p, m in zip(plain, mixed):
        assert raw(m, m.x_train[-29:]) == shared
        before = raw(p, p.x_train) | raw(p, p.x_test)
        after = raw(m, m.x_train[:-29]) | raw(m, m.x_test)
        assert after == before - shared      # the same hospital's rows, less the shared ones
