"""NormClip: exact against a plain reference written with Python ints and Fractions, every
client's change bounded, a change exactly at the bound untouched, and the same bytes in any order."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, FedAvg, NormClip, make_strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import ConfigError


def _grid(params):
    return [int(q) for q in fx.to_fixed(params)]


def _floor_scale(sq, bound_sq, shift):
    """The largest f with (f / 2**shift)**2 * sq <= bound_sq, by bisection on exact rationals."""
    lo, hi = 0, 2**shift
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if Fraction(mid, 2**shift) ** 2 * sq <= bound_sq:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _scale(sq, bound_sq, peak):
    """The documented factor / 2**shift: the largest shift up to 62 with peak * factor < 2**62."""
    for shift in range(62, -1, -1):
        f = _floor_scale(sq, bound_sq, shift)
        if peak * f < 2**62:
            return f, shift


def _reference_changes(g, updates, bound):
    """Each client's clipped change (grid units), written out plainly."""
    gq = _grid(g)
    deltas = [[a - b for a, b in zip(_grid(u.params), gq)] for u in updates]
    sq = [sum(d * d for d in row) for row in deltas]
    if bound > 0:
        bound_sq = (Fraction(bound) * 2**24) ** 2
    else:
        bound_sq = Fraction(sorted(sq)[(len(sq) - 1) // 2])
    out = []
    for row, s in zip(deltas, sq):
        if s <= bound_sq:
            out.append(row)
        else:
            f, shift = _scale(s, bound_sq, max(abs(d) for d in row))
            out.append([(1 if d > 0 else -1) * (abs(d) * f // 2**shift) for d in row])   # toward zero
    return gq, out, bound_sq


def _reference(g, updates, bound):
    gq, clipped, _ = _reference_changes(g, updates, bound)
    total = sum(u.num_samples for u in updates)
    mean = [round(Fraction(sum(c[j] * u.num_samples for c, u in zip(clipped, updates)), total))
            for j in range(len(gq))]
    return fx.to_float32(np.array([a + b for a, b in zip(gq, mean)], dtype=np.int64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bound", [0.0, 0.05, 0.3, 0.41, 2.5, 1e-7, 1e9])
def test_normclip_matches_the_reference(seed, bound, make_updates):
    g, updates = make_updates(seed=seed, count=7, size=50, spread=0.02 * (1 + seed))
    got = NormClip(bound=bound).aggregate(g, updates, {})[0]
    assert got.tobytes() == _reference(g, updates, bound).tobytes()


def test_a_bound_above_every_change_is_fedavg(make_updates):
    g, updates = make_updates(seed=1, count=6, size=80)
    assert NormClip(bound=100.0).aggregate(g, updates, {})[0].tobytes() == \
        FedAvg().aggregate(g, updates, {})[0].tobytes()


def test_every_clipped_change_is_within_the_bound(make_updates):
    g, updates = make_updates(seed=2, count=9, size=200, spread=3.0)
    for bound in (0.0, 0.5, 7.25, 30.0):
        _, clipped, bound_sq = _reference_changes(g, updates, bound)
        assert all(sum(d * d for d in row) <= bound_sq for row in clipped)
        assert any(sum(d * d for d in row) < bound_sq for row in clipped)


@pytest.mark.parametrize("bound", [0.125, 1.0, 3.3])
def test_one_client_moves_the_model_at_most_the_bound(bound):
    g = np.full(100, -0.5, np.float32)        # the new model stays below 1, where float32 holds the grid
    attacker = ClientUpdate("attacker", np.full(100, fx.MAX_ABS, np.float32), fx.MAX_TOTAL_SAMPLES)
    new = NormClip(bound=bound).aggregate(g, [attacker], {})[0]
    change = fx.to_fixed(new) - fx.to_fixed(g)
    assert fx.squared_norm(change) <= (Fraction(bound) * 2**24) ** 2
    assert math.sqrt(fx.squared_norm(change)) / fx.SCALE > bound * (1 - 1e-5)   # short by rounding only


def test_attackers_pull_by_at_most_the_bound_times_their_share(make_updates):
    g, honest = make_updates(seed=3, count=8, size=64, spread=0.01)
    attackers = [ClientUpdate(f"attacker-{i}", np.full(64, 1000.0, np.float32), 400) for i in range(2)]
    bound = 1.0            # above every honest change: those pass unchanged
    new = NormClip(bound=bound).aggregate(g, honest + attackers, {})[0]
    assert new.tobytes() == _reference(g, honest + attackers, bound).tobytes()
    share = 800 / sum(u.num_samples for u in honest + attackers)
    honest_mean = FedAvg().aggregate(g, honest, {})[0].astype(np.float64)
    pulled = np.linalg.norm(new - honest_mean)
    assert pulled <= share * (bound + np.linalg.norm(honest_mean - g)) + 1e-5
    assert np.linalg.norm(FedAvg().aggregate(g, honest + attackers, {})[0] - honest_mean) > 100


def test_a_change_exactly_at_the_bound_is_not_clipped():
    g = np.zeros(4, np.float32)
    params = np.array([0.75, 0.0, -1.0, 0.0], np.float32)     # norm exactly 1.25
    update = [ClientUpdate("a", params, 3)]
    assert NormClip(bound=1.25).aggregate(g, update, {})[0].tobytes() == params.tobytes()
    below = NormClip(bound=float(np.nextafter(1.25, 0))).aggregate(g, update, {})[0]
    assert below.tobytes() != params.tobytes()
    assert np.all(np.abs(below) <= np.abs(params))
    assert below.tobytes() == _reference(g, update, float(np.nextafter(1.25, 0))).tobytes()


def test_the_default_bound_is_the_median_norm():
    # changes of norm 1, 2, 3, 4, 5 along one axis: the median 3 clips 4 and 5 to (about) 3
    g = np.zeros(3, np.float32)
    updates = [ClientUpdate(f"h{i}", np.array([0.0, -float(i), 0.0], np.float32), 1) for i in range(1, 6)]
    new = NormClip().aggregate(g, updates, {})[0]
    np.testing.assert_allclose(new, [0.0, -(1 + 2 + 3 + 3 + 3) / 5, 0.0], rtol=0, atol=1e-6)
    assert new.tobytes() == _reference(g, updates, 0.0).tobytes()
    assert new.tobytes() == NormClip(bound=3.0).aggregate(g, updates, {})[0].tobytes()
    # even count: the lower median, 2 of 1, 2, 3, 4
    assert NormClip().aggregate(g, updates[:4], {})[0].tobytes() == \
        NormClip(bound=2.0).aggregate(g, updates[:4], {})[0].tobytes()


@pytest.mark.parametrize("bound", [0.0, 0.02])
def test_the_same_bytes_in_any_order(bound):
    rng = np.random.default_rng(4)
    g = np.zeros(16, np.float32)
    base = rng.normal(0, 0.05, 16).astype(np.float32)
    # identical changes with different weights, and changes of equal norm
    ups = [base, base, -base, base[::-1].copy(), rng.normal(0, 0.05, 16).astype(np.float32), 2 * base]
    updates = [ClientUpdate(f"h{i}", p.astype(np.float32), w) for i, (p, w) in enumerate(zip(ups, [3, 9, 4, 7, 1, 5]))]
    expected = _reference(g, updates, bound).tobytes()
    for perm in itertools.permutations(updates):
        assert NormClip(bound=bound).aggregate(g, list(perm), {})[0].tobytes() == expected


def test_extreme_values_stay_within_the_fixed_point_guards():
    size, top = 50, fx.MAX_ABS
    g = np.full(size, -top, np.float32)
    rng = np.random.default_rng(1)
    updates = [ClientUpdate(f"c{i}", (rng.choice([-1.0, 1.0], size) * top).astype(np.float32),
                            fx.MAX_TOTAL_SAMPLES // 5) for i in range(5)]
    updates[0] = ClientUpdate("c0", np.full(size, top, np.float32), fx.MAX_TOTAL_SAMPLES // 5)   # change 2**40
    for bound in (0.0, 1e5, 1e7):
        new = NormClip(bound=bound).aggregate(g, updates, {})[0]
        assert new.tobytes() == _reference(g, updates, bound).tobytes()
        assert np.abs(new).max() <= top


def test_server_lr_scales_the_clipped_step(make_updates):
    g, updates = make_updates(seed=6, count=5, size=30)
    full = NormClip().aggregate(g, updates, {})[0].astype(np.float64)
    half = NormClip(server_lr=0.5).aggregate(g, updates, {})[0].astype(np.float64)
    np.testing.assert_allclose(half - g, 0.5 * (full - g), atol=2 / fx.SCALE)


@pytest.mark.parametrize("bound", [-0.1, "1", True, float("nan"), float("inf"), None])
def test_invalid_bound_is_a_config_error(bound):
    with pytest.raises(ConfigError, match=r"normclip: bound must be a number in \[0, inf\)"):
        make_strategy("normclip", bound=bound)


def test_params_round_trip():
    s = make_strategy("normclip", bound=2)
    assert s.params() == {"server_lr": 1.0, "bound": 2.0} and s == NormClip(bound=2.0)
