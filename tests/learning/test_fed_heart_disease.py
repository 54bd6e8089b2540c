"""Fed-Heart-Disease must come out exactly as FLamby's protocol defines it."""

import numpy as np
import pytest

from fedledger.learning import load_fed_heart_disease
from fedledger.learning.heart import FEATURES

# Protocol facts published with FLamby: rows left after dropping incomplete ones, and the split.
ROWS = {"cleveland": 303, "hungarian": 261, "switzerland": 46, "va": 130}
SPLIT = {"cleveland": (199, 104), "hungarian": (172, 89), "switzerland": (30, 16), "va": (85, 45)}


@pytest.fixture(scope="module")
def clients():
    return load_fed_heart_disease()


def test_centers_rows_and_split_sizes(clients):
    assert [c.name for c in clients] == list(ROWS)
    for c in clients:
        assert (c.num_train, len(c.y_test)) == SPLIT[c.name]
        assert c.num_train + len(c.y_test) == ROWS[c.name]


def test_thirteen_float32_features_and_binary_labels(clients):
    assert len(FEATURES) == 13
    for c in clients:
        assert c.num_features == 13 and c.x_test.shape[1] == 13
        assert c.x_train.dtype == np.float32 and c.y_train.dtype == np.float32
        assert set(np.unique(np.concatenate([c.y_train, c.y_test]))) <= {0.0, 1.0}


def test_each_center_is_scaled_with_its_own_training_statistics(clients):
    for c in clients:
        np.testing.assert_allclose(c.x_train.mean(axis=0), 0.0, atol=1e-5)
        std = c.x_train.std(axis=0, ddof=1)
        constant = np.isclose(std, 0.0)
        np.testing.assert_allclose(std[~constant], 1.0, atol=1e-4)
        # A constant column (Switzerland records chol as 0) stays finite on both sides.
        assert np.isfinite(c.x_test).all()


def test_test_rows_use_the_training_scaling(clients):
    # Undoing the stored scaling must give back raw values: one-hot columns are 0/1 on the test
    # side too, which fails if the test set were scaled with anything else.
    onehot = [FEATURES.index(f) for f in ("cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2")]
    for c in clients:
        raw_test = (c.x_test.astype(np.float64) * c.feature_std + c.feature_mean)[:, onehot]
        np.testing.assert_allclose(np.round(raw_test), raw_test, atol=1e-5)
        assert set(np.unique(np.round(raw_test))) <= {0.0, 1.0}


def test_split_is_stratified_where_both_classes_are_common(clients):
    cleveland = clients[0]
    assert abs(cleveland.y_train.mean() - cleveland.y_test.mean()) < 0.02


def test_loading_is_deterministic(clients):
    again = load_fed_heart_disease()
    for a, b in zip(clients, again):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_test, b.y_test)
