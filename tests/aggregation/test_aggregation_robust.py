"""Coordinate-wise median and trimmed mean: exact against a plain reference on the fixed-point
grid, the same bytes in any order even with tied values, and unmoved by a poisoned minority."""

import itertools
from fractions import Fraction

import numpy as np
import pytest

from fedledger.aggregation import (
    ClientUpdate,
    FedAvg,
    FedMedian,
    FedTrimmedMean,
    make_strategy,
)
from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import ConfigError


def _grid(updates):
    return [[int(q) for q in fx.to_fixed(u.params)] for u in updates]


def _reference_median(updates):
    """Lower weighted median per parameter, written out plainly."""
    q, total = _grid(updates), sum(u.num_samples for u in updates)
    out = []
    for j in range(len(q[0])):
        pairs = sorted((q[i][j], u.num_samples) for i, u in enumerate(updates))
        seen = 0
        for value, w in pairs:
            seen += w
            if 2 * seen >= total:
                out.append(value)
                break
    return fx.to_float32(np.array(out, dtype=np.int64))


def _reference_trimmed(updates, beta):
    q, k = _grid(updates), int(beta * len(updates))
    out = []
    for j in range(len(q[0])):
        kept = sorted((q[i][j], u.num_samples) for i, u in enumerate(updates))[k:len(updates) - k]
        mean = Fraction(sum(v * w for v, w in kept), sum(w for _, w in kept))
        out.append(round(mean))          # Python rounds a Fraction half to even
    return fx.to_float32(np.array(out, dtype=np.int64))


def _tied(seed, count=6, size=40):
    """Updates whose values collide often (few distinct values) and whose weights differ."""
    rng = np.random.default_rng(seed)
    g = np.zeros(size, np.float32)
    return g, [ClientUpdate(f"h{i}", rng.integers(-3, 4, size).astype(np.float32) / 4, int(rng.integers(1, 60)))
               for i in range(count)]


@pytest.mark.parametrize("seed", range(5))
def test_median_is_the_lower_weighted_median(seed, make_updates):
    g, updates = make_updates(seed=seed, count=7, size=64)
    assert FedMedian().aggregate(g, updates, {})[0].tobytes() == _reference_median(updates).tobytes()
    g, updates = _tied(seed)
    assert FedMedian().aggregate(g, updates, {})[0].tobytes() == _reference_median(updates).tobytes()


@pytest.mark.parametrize("beta", [0.0, 0.15, 0.2, 0.34, 0.49])
def test_trimmed_mean_matches_a_rational_reference(beta, make_updates):
    g, updates = make_updates(seed=3, count=7, size=64)
    got = FedTrimmedMean(beta=beta).aggregate(g, updates, {})[0]
    assert got.tobytes() == _reference_trimmed(updates, beta).tobytes()
    g, updates = _tied(4)
    assert FedTrimmedMean(beta=beta).aggregate(g, updates, {})[0].tobytes() == \
        _reference_trimmed(updates, beta).tobytes()


def test_trimming_nothing_is_fedavg(make_updates):
    g, updates = make_updates(seed=5, count=5, size=100)
    assert FedTrimmedMean(beta=0.0).aggregate(g, updates, {})[0].tobytes() == \
        FedAvg().aggregate(g, updates, {})[0].tobytes()


@pytest.mark.parametrize("strategy", [FedMedian(), FedTrimmedMean(beta=0.2)], ids=lambda s: s.name)
def test_tied_values_with_different_weights_give_the_same_bytes_in_any_order(strategy):
    g, updates = _tied(9, count=6)
    expected = strategy.aggregate(g, updates, {})[0].tobytes()
    for perm in itertools.permutations(updates):
        assert strategy.aggregate(g, list(perm), {})[0].tobytes() == expected


@pytest.mark.parametrize("strategy", [FedMedian(), FedTrimmedMean(beta=0.3)], ids=lambda s: s.name)
def test_a_poisoned_minority_cannot_drag_the_model_away(strategy, make_updates):
    g, honest = make_updates(seed=2, count=7, size=50)
    # the attackers claim ordinary sample counts: weighting trusts the claimed counts (see FedMedian)
    poisoned = [ClientUpdate(f"attacker-{i}", np.full(50, 1000.0, np.float32), 100) for i in range(3)]
    assert 2 * sum(u.num_samples for u in poisoned) < sum(u.num_samples for u in honest)
    low = np.min([u.params for u in honest], axis=0)
    high = np.max([u.params for u in honest], axis=0)
    robust = strategy.aggregate(g, honest + poisoned, {})[0]
    assert np.all((robust >= low) & (robust <= high))
    assert np.all(FedAvg().aggregate(g, honest + poisoned, {})[0] > high)   # the plain mean is dragged off


def test_server_lr_applies_to_the_robust_step(make_updates):
    g, updates = make_updates(seed=6, count=5, size=30)
    full = FedMedian().aggregate(g, updates, {})[0].astype(np.float64)
    half = FedMedian(server_lr=0.5).aggregate(g, updates, {})[0].astype(np.float64)
    np.testing.assert_allclose(half - g, 0.5 * (full - g), atol=2 / fx.SCALE)


@pytest.mark.parametrize("beta", [-0.1, 0.5, 1, "0.1", True, float("nan")])
def test_trim_fraction_out_of_range_is_a_config_error(beta):
    with pytest.raises(ConfigError, match="fedtrimmedmean: beta must be a number in \\[0, 0.5\\)"):
        make_strategy("fedtrimmedmean", beta=beta)
