"""The fixed-point grid: exact sums, round half to even, and the overflow bound."""

import numpy as np

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.aggregation import fixedpoint as fx


def test_weighted_mean_rounds_half_to_even_on_both_signs():
    values = np.array([[1, 2, -1, -3, 0, 5, -5, 3], [2, 3, 0, -2, 1, 6, -6, 3]], dtype=np.int64)
    # means:           1.5 2.5 -0.5 -2.5 0.5 5.5 -5.5  3
    out = fx.weighted_mean(values, np.array([1, 1], dtype=np.int64))
    assert out.tolist() == [2, 2, 0, -2, 0, 6, -6, 3]


def test_weighted_mean_rounds_to_nearest_off_ties():
    values = np.array([[0, 0, -10], [1, 2, 0]], dtype=np.int64)
    # means with weights 2:1 -> 1/3, 2/3, -20/3
    out = fx.weighted_mean(values, np.array([2, 1], dtype=np.int64))
    assert out.tolist() == [0, 1, -7]


def test_grid_conversions():
    x = np.array([0.5, -0.75, 32768.0, -32768.0, 2.0**-24, 2.0**-26], dtype=np.float32)
    q = fx.to_fixed(x)
    assert q.tolist() == [2**23, -3 * 2**22, 2**39, -(2**39), 1, 0]
    assert fx.to_float32(q)[:5].tobytes() == x[:5].tobytes()


def test_extreme_values_at_the_bounds_do_not_overflow():
    half = fx.MAX_TOTAL_SAMPLES // 2
    size = 4
    top = np.full(size, fx.MAX_ABS, np.float32)
    updates = [ClientUpdate("a", top, half), ClientUpdate("b", top.copy(), half)]
    new, _ = FedAvg().aggregate(np.zeros(size, np.float32), updates, {})
    assert new.tolist() == [fx.MAX_ABS] * size
    updates = [ClientUpdate("a", top, half), ClientUpdate("b", -top, half)]
    new, _ = FedAvg().aggregate(np.zeros(size, np.float32), updates, {})
    assert new.tolist() == [0.0] * size
