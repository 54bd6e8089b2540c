"""Screening: norm bounds and outliers decided exactly on the grid, the same in any order, and
exact at the boundary (a vector exactly at the bound or threshold is not above it)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, exceeds_norm, find_outliers, update_norm
from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import UpdateRejected

UNIT = 1 / fx.SCALE      # one grid step


def _grid(params):
    return [int(q) for q in fx.to_fixed(params)]


def _reference_outliers(updates, factor):
    """{client: (d**2, median d**2)} for the flagged updates, written out plainly."""
    q = [_grid(u.params) for u in updates]
    n = len(q)
    if n < 3:
        return {}
    center = [sorted(row[j] for row in q)[(n - 1) // 2] for j in range(len(q[0]))]
    sq = [sum((a - c) ** 2 for a, c in zip(row, center)) for row in q]
    median = sorted(sq)[(n - 1) // 2]
    return {u.client: (s, median) for u, s in zip(updates, sq)
            if Fraction(s) > Fraction(factor) ** 2 * median}


def _along(offsets, size=4):
    """Updates at the given offsets (grid steps) along the direction (3, 4): distances are 5 x offsets."""
    e = np.zeros(size)
    e[0], e[1] = 3.0, 4.0
    return [ClientUpdate(f"h{i}", (e * o * UNIT).astype(np.float32), 10 + i) for i, o in enumerate(offsets)]


def test_update_norm_is_the_norm_on_the_grid(make_updates):
    g, updates = make_updates(seed=1, count=3, size=100)
    for u in updates:
        d = [a - b for a, b in zip(_grid(u.params), _grid(g))]
        assert update_norm(g, u.params) == math.sqrt(sum(x * x for x in d)) / fx.SCALE
    assert update_norm(np.zeros(2, np.float32), np.array([0.75, -1.0], np.float32)) == 1.25


def test_exceeds_norm_is_exact_at_the_bound():
    g = np.zeros(4, np.float32)
    params = np.array([0.0, 0.75, 0.0, -1.0], np.float32)      # norm exactly 1.25
    assert not exceeds_norm(g, params, 1.25)
    assert exceeds_norm(g, params, float(np.nextafter(1.25, 0)))    # one float64 ulp below
    assert not exceeds_norm(g, params, float(np.nextafter(1.25, 2)))
    assert exceeds_norm(g, params, 0.0) and not exceeds_norm(g, g, 0.0)
    # a bound that is not a grid value: 3 * 5 steps = 15 steps against 15 - tiny and 15 + tiny
    p = np.array([9 * UNIT, 12 * UNIT, 0, 0], np.float32)
    assert not exceeds_norm(g, p, 15 * UNIT) and exceeds_norm(g, p, 15 * UNIT * (1 - 1e-15))


def test_exceeds_norm_beyond_int64_squares():
    g = np.full(1000, -fx.MAX_ABS, np.float32)
    p = np.full(1000, fx.MAX_ABS, np.float32)       # each entry changes by 2**16: squared norm 1000 * 2**80
    norm = 2.0**16 * math.sqrt(1000)
    assert update_norm(g, p) == norm
    exact = Fraction(2**32 * 1000)                   # norm**2 in parameter units
    below = float(np.nextafter(norm, 0))
    above = float(np.nextafter(norm, np.inf))
    assert Fraction(below) ** 2 < exact < Fraction(above) ** 2
    assert exceeds_norm(g, p, below) and not exceeds_norm(g, p, above)


@pytest.mark.parametrize("bound", [-1.0, float("nan"), float("inf"), "1", True, None])
def test_exceeds_norm_refuses_a_bad_bound(bound):
    g = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="norm bound"):
        exceeds_norm(g, g, bound)


def test_screening_refuses_unusable_vectors():
    g = np.zeros(3, np.float32)
    with pytest.raises(UpdateRejected, match="update rejected: has 2 parameters"):
        update_norm(g, np.zeros(2, np.float32))
    with pytest.raises(UpdateRejected, match="global model rejected"):
        exceeds_norm(np.zeros(3), g, 1.0)
    with pytest.raises(UpdateRejected, match="update from b rejected: .*NaN"):
        find_outliers(g, [ClientUpdate("a", g, 1), ClientUpdate("b", np.full(3, np.nan, np.float32), 1),
                          ClientUpdate("c", g, 1)], 2.0)
    with pytest.raises(UpdateRejected, match="update from a rejected: second update"):
        find_outliers(g, [ClientUpdate("a", g, 1), ClientUpdate("a", g, 2), ClientUpdate("c", g, 1)], 2.0)


def test_outlier_threshold_is_exact():
    # offsets -1, 0, 1, 2, x: center 1, distances 5 x (2, 1, 0, 1, x - 1), median 5
    g = np.zeros(4, np.float32)
    assert find_outliers(g, _along([0, 1, -1, 2, 4]), 3.0) == {}                  # distance exactly 3 x median
    flagged = find_outliers(g, _along([0, 1, -1, 2, 5]), 3.0)
    assert list(flagged) == ["h4"]
    assert find_outliers(g, _along([0, 1, -1, 2, 5]), 4.0) == {}                  # exactly 4 x median
    assert list(find_outliers(g, _along([0, 1, -1, 2, 5]), float(np.nextafter(4.0, 0)))) == ["h4"]
    assert list(find_outliers(g, _along([0, 1, -1, 2, 4]), 2.5)) == ["h4"]            # 15 > 12.5
    # center 0, distances 0, 5, 5, 5, 5, 6 (x 5 steps), median 5: the float 1.2 is slightly below
    # 6/5, so 6 is above 1.2 x 5; the next float up is above 6/5
    assert list(find_outliers(g, _along([0, 5, -5, 5, -5, 6]), 1.2)) == ["h5"]
    assert find_outliers(g, _along([0, 5, -5, 5, -5, 6]), float(np.nextafter(1.2, 2))) == {}


def test_outlier_reason_names_both_distances():
    g = np.zeros(4, np.float32)
    reason = find_outliers(g, _along([0, 1, -1, 2, 5]), 3.0)["h4"]
    distance, median = 20 * UNIT, 5 * UNIT
    assert reason == (f"distance {distance:.4g} from the round's median update, "
                      f"more than 3 x the median distance {median:.4g}")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor", [1.0, 1.3, 2.0, 0.7])
def test_outliers_match_the_reference(seed, factor, make_updates):
    g, updates = make_updates(seed=seed, count=9, size=30)
    rng = np.random.default_rng(seed)
    for i in rng.choice(9, 2, replace=False):        # two planted outliers of various sizes
        updates[i] = ClientUpdate(updates[i].client, (updates[i].params + rng.uniform(0, 3)).astype(np.float32), 5)
    got = find_outliers(g, updates, factor)
    expected = _reference_outliers(updates, factor)
    assert list(got) == sorted(expected)
    for client, (sq, median) in expected.items():
        assert f"distance {math.sqrt(sq) / fx.SCALE:.4g} " in got[client]
        assert f"median distance {math.sqrt(median) / fx.SCALE:.4g}" in got[client]


def test_a_planted_outlier_is_found(make_updates):
    g, updates = make_updates(seed=7, count=8, size=64)
    updates[3] = ClientUpdate("attacker", np.full(64, 50.0, np.float32), 400)
    assert list(find_outliers(g, updates, 3.0)) == ["attacker"]


def test_fewer_than_three_updates_flag_nothing(make_updates):
    g, updates = make_updates(seed=2, count=3, size=20)
    updates[1] = ClientUpdate("far", np.full(20, 1000.0, np.float32), 1)
    assert find_outliers(g, updates[:2], 1.0) == {}
    assert find_outliers(g, updates[:1], 1.0) == {}
    assert find_outliers(g, [], 1.0) == {}
    assert list(find_outliers(g, updates, 1.0)) == ["far"]


def test_a_majority_at_the_center_flags_every_other_update():
    g = np.zeros(4, np.float32)
    assert list(find_outliers(g, _along([0, 0, 0, 1, 2]), 100.0)) == ["h3", "h4"]


@pytest.mark.parametrize("factor", [0, 0.0, -1.0, float("nan"), float("inf"), "2", True, None])
def test_a_bad_factor_is_a_value_error(factor):
    g = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="outlier factor"):
        find_outliers(g, _along([0, 1, 2]), factor)


def test_outliers_are_the_same_in_any_order_with_ties():
    g = np.zeros(4, np.float32)
    # two identical updates with different weights, and updates at equal distances on both sides
    updates = _along([0, 0, 3, -3, 1, -9])
    updates[1] = ClientUpdate("h1", updates[0].params.copy(), 99)
    expected = find_outliers(g, updates, 1.5)
    assert list(expected) == ["h2", "h3", "h5"]
    assert expected == {c: v for c, v in sorted(expected.items())}
    for perm in itertools.permutations(updates):
        assert find_outliers(g, list(perm), 1.5) == expected


def test_screening_does_not_modify_its_inputs(make_updates):
    g, updates = make_updates(seed=4, count=5, size=40)
    before = (g.tobytes(), [u.params.tobytes() for u in updates], [u.client for u in updates])
    find_outliers(g, updates, 1.0)
    exceeds_norm(g, updates[0].params, 0.1)
    update_norm(g, updates[1].params)
    assert before == (g.tobytes(), [u.params.tobytes() for u in updates], [u.client for u in updates])
