"""The fixed-point grid: exact sums, round half to even, and the overflow bound."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _py_sq(rows):
    return [sum(int(x) * int(x) for x in row) for row in rows]


def test_squared_norms_are_exact_beyond_int64():
    rng = np.random.default_rng(0)
    q = rng.integers(-fx.MAX_DIFF, fx.MAX_DIFF + 1, size=(5, 300), dtype=np.int64)
    q[0] = fx.MAX_DIFF
    q[1] = -fx.MAX_DIFF
    q[2, ::2] = -fx.MAX_DIFF
    assert fx.squared_norms(q) == _py_sq(q.tolist())
    assert fx.squared_norms(q)[0] == 300 * 2**80
    assert fx.squared_norm(q[3]) == _py_sq([q[3].tolist()])[0]
    assert fx.squared_norms(np.zeros((2, 0), np.int64)) == [0, 0]


def test_chunked_sums_agree_with_the_whole(monkeypatch):
    rng = np.random.default_rng(1)
    q = rng.integers(-fx.MAX_FIXED, fx.MAX_FIXED + 1, size=(6, 101), dtype=np.int64)
    center = rng.integers(-fx.MAX_FIXED, fx.MAX_FIXED + 1, size=101, dtype=np.int64)
    rows = q.tolist()
    expected = ([_py_sq([[a - b for a, b in zip(r, s)] for s in rows]) for r in rows],
                _py_sq([[a - c for a, c in zip(r, center.tolist())] for r in rows]),
                _py_sq(rows))
    for elements, cols in [(2**21, 2**22), (7, 5), (1, 1), (600, 3)]:
        monkeypatch.setattr(fx, "_CHUNK_ELEMENTS", elements)
        monkeypatch.setattr(fx, "_MAX_CHUNK_COLS", cols)
        assert (fx.pairwise_squared_distances(q), fx.squared_distances_to(q, center), fx.squared_norms(q)) == expected


def test_squared_norm_helpers_refuse_what_could_overflow():
    with pytest.raises(ValueError, match="beyond"):
        fx.squared_norms(np.array([[fx.MAX_DIFF + 1]], np.int64))
    with pytest.raises(ValueError, match="beyond"):
        fx.pairwise_squared_distances(np.array([[fx.MAX_FIXED + 1], [0]], np.int64))
    with pytest.raises(ValueError, match="int64"):
        fx.squared_norms(np.zeros((2, 2), np.float64))
    with pytest.raises(ValueError, match="2-D"):
        fx.squared_norms(np.zeros(3, np.int64))


def _rounded_quotient(a: int, t: int) -> int:
    q, r = divmod(a, t)
    return q + (2 * r > t or (2 * r == t and q % 2 == 1))


_BELOW_FLOAT_PATH = 2**52 - 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-_BELOW_FLOAT_PATH, _BELOW_FLOAT_PATH), min_size=1, max_size=40),
       st.integers(1, fx.MAX_TOTAL_SAMPLES), st.integers(-3, 3))
def test_division_on_floats_rounds_exactly_as_integer_division(values, total, nudge):
    # Exact halves and their neighbours, near the path's bound where the float quotient is off by
    # one, besides whatever hypothesis draws.
    ties = [q * total + total // 2 + nudge for q in (0, 1, 2, -1, -2, 2**52 // total - 1, -(2**52 // total - 1))]
    values += [v for v in ties if abs(v) <= _BELOW_FLOAT_PATH]
    out = fx.divide_rounded(np.array(values, dtype=np.int64), total)
    assert out.tolist() == [_rounded_quotient(v, total) for v in values]


def test_division_beyond_the_float_path_stays_exact():
    values = [2**62 - 1, -(2**62) + 3, 2**52 + 1, 5]
    out = fx.divide_rounded(np.array(values, dtype=np.int64), 7)
    assert out.tolist() == [_rounded_quotient(v, 7) for v in values]


_GRID_VALUES = st.one_of(st.floats(-fx.MAX_ABS, fx.MAX_ABS, width=32),
                         st.sampled_from([fx.MAX_ABS, -fx.MAX_ABS, 0.5, -2.5 * 2**-24, 2**-25, 1e-45, -0.0]))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.data())
def test_weighted_sums_equal_the_stacked_integer_sum(clients, size, data):
    vectors = [np.array(data.draw(st.lists(_GRID_VALUES, min_size=size, max_size=size)), dtype=np.float32)
               for _ in range(clients)]
    weights = data.draw(st.lists(st.integers(1, fx.MAX_TOTAL_SAMPLES // clients), min_size=clients, max_size=clients))
    expected = (np.stack([fx.to_fixed(v) for v in vectors]) * np.array(weights, dtype=np.int64)[:, None]).sum(axis=0)
    assert fx.weighted_sum(vectors, weights).tobytes() == expected.tobytes()
    assert fx.weighted_sum(vectors[::-1], weights[::-1]).tobytes() == expected.tobytes()


@pytest.mark.parametrize("weight", [1, fx.MAX_TOTAL_SAMPLES // 3])   # the float path, the int64 path
def test_weighted_sums_across_chunks_equal_the_stacked_integer_sum(weight):
    rng = np.random.default_rng(5)
    size = 3 * fx._SUM_CHUNK + 17
    vectors = [rng.normal(0, 30, size).astype(np.float32) for _ in range(3)]
    expected = sum(fx.to_fixed(v) * weight for v in vectors)
    assert fx.weighted_sum(vectors, [weight] * 3).tobytes() == expected.tobytes()


def test_lower_median():
    assert fx.lower_median([5]) == 5
    assert fx.lower_median([4, 1, 3, 2]) == 2
    assert fx.lower_median([2**90, 3, 2**90, 1, 7]) == 7
