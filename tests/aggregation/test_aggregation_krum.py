"""Krum and Multi-Krum: exact against a plain reference written with Python ints and Fractions,
the same bytes in any order even with tied scores and identical updates, the documented
small-round behaviour, and the honest mean recovered when f attackers join."""

import itertools
import json
from fractions import Fraction

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, FedAvg, Krum, MultiKrum, make_strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.aggregation.krum import krum_scores, tolerated
from fedledger.errors import ConfigError


def _grid(updates):
    return [[int(q) for q in fx.to_fixed(u.params)] for u in updates]


def _reference_scores(q, f):
    n, k = len(q), len(q) - f - 2
    dist = [[sum((a - b) ** 2 for a, b in zip(q[i], q[j])) for j in range(n)] for i in range(n)]
    return [sum(sorted(dist[i][j] for j in range(n) if j != i)[:k]) for i in range(n)]


def _reference_kept(updates, byzantine, keep):
    """Indices Multi-Krum keeps, written out plainly from the papers plus the documented rules."""
    q, n = _grid(updates), len(updates)
    if n <= 2:
        return list(range(n))
    f = byzantine
    while n < 2 * f + 3:                 # lowered to the largest f the round allows
        f -= 1
    scores = _reference_scores(q, f)
    m = n - f if keep == 0 else min(keep, n - f)
    order = sorted(range(n), key=lambda i: (scores[i], q[i], updates[i].num_samples))
    return sorted(order[:m])


def _weighted_mean(updates, kept):
    q = _grid(updates)
    total = sum(updates[i].num_samples for i in kept)
    out = [round(Fraction(sum(q[i][j] * updates[i].num_samples for i in kept), total))  # half to even
           for j in range(len(q[0]))]
    return fx.to_float32(np.array(out, dtype=np.int64))


def _on_grid(params):
    return fx.to_float32(fx.to_fixed(params)).tobytes()


def _reference(updates, byzantine=1, keep=0):
    return _weighted_mean(updates, _reference_kept(updates, byzantine, keep))


def _line(offsets, weights, size=8):
    """Updates along one direction at the given offsets (grid units), so scores tie by symmetry."""
    e = np.zeros(size, np.float64)
    e[0], e[3] = 3.0, 4.0
    return [ClientUpdate(f"h{i}", (e * o / fx.SCALE).astype(np.float32), w)
            for i, (o, w) in enumerate(zip(offsets, weights))]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("byzantine, keep", [(0, 0), (1, 0), (2, 0), (2, 1), (1, 3), (3, 0)])
def test_multikrum_matches_the_reference(seed, byzantine, keep, make_updates):
    g, updates = make_updates(seed=seed, count=9, size=40, spread=0.05 * (1 + seed))
    got = MultiKrum(byzantine=byzantine, keep=keep).aggregate(g, updates, {})[0]
    assert got.tobytes() == _reference(updates, byzantine, keep).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_krum_keeps_the_single_lowest_score(seed, make_updates):
    g, updates = make_updates(seed=seed, count=7, size=40)
    for byzantine in (0, 1, 2):
        got = Krum(byzantine=byzantine).aggregate(g, updates, {})[0]
        kept = _reference_kept(updates, byzantine, 1)
        assert len(kept) == 1
        assert got.tobytes() == _weighted_mean(updates, kept).tobytes()
        assert got.tobytes() == _on_grid(updates[kept[0]].params)


@pytest.mark.parametrize("seed", range(3))
def test_scores_are_exact_integers(seed, make_updates):
    _, updates = make_updates(seed=seed, count=8, size=33, spread=10.0)
    q = _grid(updates)
    for f in (0, 1, 2):
        assert krum_scores(np.array(q, dtype=np.int64), f) == _reference_scores(q, f)


def test_scores_at_the_fixed_point_bound_do_not_overflow():
    top = fx.MAX_FIXED
    q = [[top] * 50, [-top] * 50, [top, -top] * 25, [0] * 50, [-top] * 25 + [top] * 25]
    assert krum_scores(np.array(q, dtype=np.int64), 1) == _reference_scores(q, 1)
    assert max(_reference_scores(q, 1)) > 2**80          # far beyond int64


def test_scores_need_enough_updates():
    with pytest.raises(ValueError, match="n >= 2f \\+ 3"):
        krum_scores(np.zeros((4, 3), np.int64), 1)


@pytest.mark.parametrize("n, byzantine, f", [(1, 1, 0), (2, 3, 0), (3, 1, 0), (4, 1, 0), (5, 1, 1), (5, 2, 1),
                                             (6, 2, 1), (7, 2, 2), (7, 5, 2), (20, 3, 3)])
def test_f_is_lowered_to_what_the_round_allows(n, byzantine, f):
    assert tolerated(n, byzantine) == f


@pytest.mark.parametrize("name", ["krum", "multikrum"])
def test_one_or_two_updates_are_all_kept(name, make_updates):
    g, updates = make_updates(seed=4, count=2, size=30)
    strategy = make_strategy(name, byzantine=3)
    assert strategy.aggregate(g, updates[:1], {})[0].tobytes() == _on_grid(updates[0].params)
    assert strategy.aggregate(g, updates, {})[0].tobytes() == FedAvg().aggregate(g, updates, {})[0].tobytes()


def test_small_rounds_lower_f(make_updates):
    g, updates = make_updates(seed=8, count=5, size=30)
    fedavg = FedAvg().aggregate
    # 3 or 4 updates tolerate no attacker: Multi-Krum keeps n - 0 = n, which is FedAvg
    for n in (3, 4):
        assert MultiKrum(byzantine=2).aggregate(g, updates[:n], {})[0].tobytes() == \
            fedavg(g, updates[:n], {})[0].tobytes()
    # 5 updates tolerate 1: byzantine = 2 acts as 1
    assert MultiKrum(byzantine=2).aggregate(g, updates, {})[0].tobytes() == \
        MultiKrum(byzantine=1).aggregate(g, updates, {})[0].tobytes() == _reference(updates, 1).tobytes()
    # Krum still picks one update out of three
    got = Krum(byzantine=1).aggregate(g, updates[:3], {})[0]
    assert got.tobytes() == _reference(updates[:3], 0, 1).tobytes()
    assert any(got.tobytes() == _on_grid(u.params) for u in updates[:3])


def test_keep_above_n_minus_f_keeps_n_minus_f(make_updates):
    g, updates = make_updates(seed=2, count=7, size=30)
    default = MultiKrum(byzantine=2).aggregate(g, updates, {})[0].tobytes()
    for keep in (5, 6, 7, 100):
        assert MultiKrum(byzantine=2, keep=keep).aggregate(g, updates, {})[0].tobytes() == default
    assert MultiKrum(byzantine=2, keep=4).aggregate(g, updates, {})[0].tobytes() != default
    assert MultiKrum(byzantine=0).aggregate(g, updates, {})[0].tobytes() == \
        FedAvg().aggregate(g, updates, {})[0].tobytes()
    assert MultiKrum(byzantine=2, keep=1).aggregate(g, updates, {})[0].tobytes() == \
        Krum(byzantine=2).aggregate(g, updates, {})[0].tobytes()


def test_symmetric_ties_are_broken_by_the_values():
    # offsets -2..2 along one line: -1, 0 and +1 tie (two neighbours at distance 1 each), as do -2
    # and +2; keeping two takes the lexicographically smaller values, -1 and 0
    g = np.zeros(8, np.float32)
    updates = _line([2, -1, 0, 1, -2], [5, 6, 7, 8, 9])
    assert _reference_kept(updates, 1, 2) == [1, 2]
    for perm in itertools.permutations(updates):
        got = MultiKrum(byzantine=1, keep=2).aggregate(g, list(perm), {})[0]
        assert got.tobytes() == _weighted_mean(updates, [1, 2]).tobytes()


@pytest.mark.parametrize("keep", [1, 2, 3, 4])
def test_identical_updates_with_different_weights_give_the_same_bytes_in_any_order(keep):
    g = np.zeros(8, np.float32)
    # two copies of the center with different weights, then -5 and +5 tied: keep = 1 keeps one copy
    # (the smaller weight), keep = 3 one of -5 and +5 (the smaller values)
    updates = _line([0, 0, 5, -5, 9, -9], [10, 300, 20, 40, 1, 2])
    expected = _reference(updates, 1, keep)
    for perm in itertools.permutations(updates):
        got = MultiKrum(byzantine=1, keep=keep).aggregate(g, list(perm), {})[0]
        assert got.tobytes() == expected.tobytes()
    assert _reference_kept(updates, 1, keep) == [[0], [0, 1], [0, 1, 3], [0, 1, 2, 3]][keep - 1]


def _attack(kind, honest, g, count):
    rng = np.random.default_rng(3)
    if kind == "huge":
        return [ClientUpdate(f"attacker-{i}", np.full(g.size, 1000.0 + i, np.float32), 400)
                for i in range(count)]
    if kind == "huge-identical":
        return [ClientUpdate(f"attacker-{i}", np.full(g.size, -30000.0, np.float32), 10**6) for i in range(count)]
    # sign flip: the opposite of an honest change, amplified
    return [ClientUpdate(f"attacker-{i}", (g - 4.0 * (honest[i].params - g) + rng.normal(0, 1e-3, g.size))
                         .astype(np.float32), 499) for i in range(count)]


@pytest.mark.parametrize("kind", ["huge", "huge-identical", "sign-flip"])
@pytest.mark.parametrize("byzantine", [1, 2, 3])
def test_multikrum_with_f_attackers_is_the_weighted_mean_of_the_honest(kind, byzantine, make_updates):
    g, honest = make_updates(seed=5, count=7, size=60)
    attackers = _attack(kind, honest, g, byzantine)
    updates = honest + attackers
    honest_mean = FedAvg().aggregate(g, honest, {})[0]
    for perm in (updates, updates[::-1], attackers + honest[3:] + honest[:3]):
        assert MultiKrum(byzantine=byzantine).aggregate(g, perm, {})[0].tobytes() == honest_mean.tobytes()
        picked = Krum(byzantine=byzantine).aggregate(g, perm, {})[0]
        assert any(picked.tobytes() == _on_grid(u.params) for u in honest)
    dragged = np.abs(FedAvg().aggregate(g, updates, {})[0] - honest_mean).max()   # the plain mean is dragged
    assert dragged > (1 if kind.startswith("huge") else 0.01)


@pytest.mark.parametrize("strategy", [Krum(byzantine=1), MultiKrum(byzantine=2), MultiKrum(byzantine=1, keep=5)],
                         ids=repr)
def test_extreme_values_stay_within_the_fixed_point_guards(strategy):
    size, top = 64, fx.MAX_ABS
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(7, size))
    updates = [ClientUpdate(f"c{i}", (signs[i] * top).astype(np.float32), fx.MAX_TOTAL_SAMPLES // 7)
               for i in range(7)]
    g = np.full(size, -top, np.float32)
    new = strategy.aggregate(g, updates, {})[0]
    kept = _reference_kept(updates, strategy.byzantine, strategy.keep)
    assert new.tobytes() == _weighted_mean(updates, kept).tobytes()
    assert np.abs(new).max() <= top


@pytest.mark.parametrize("value, stored", [(2, 2), (2.0, 2), (np.int64(3), 3), (np.float32(4.0), 4), (0.0, 0)])
def test_integer_valued_hyperparameters_are_stored_as_ints(value, stored):
    s = make_strategy("multikrum", byzantine=value, keep=value)
    assert s.byzantine == stored and type(s.byzantine) is int and type(s.keep) is int
    assert make_strategy("krum", byzantine=value).byzantine == stored
    params = json.loads(json.dumps(s.params()))
    assert params == {"server_lr": 1.0, "byzantine": stored, "keep": stored}
    assert make_strategy("multikrum", **params) == s


def test_krum_has_no_keep():
    assert Krum(byzantine=2).params() == {"server_lr": 1.0, "byzantine": 2}
    assert Krum().keep == 1
    with pytest.raises(ConfigError, match="krum: unknown hyperparameter 'keep'; allowed: byzantine, server_lr"):
        make_strategy("krum", keep=1)
    with pytest.raises(TypeError):
        Krum(keep=2)


@pytest.mark.parametrize("name, field, value", [
    ("multikrum", "byzantine", 1.5), ("multikrum", "byzantine", -1), ("multikrum", "byzantine", -1.0),
    ("multikrum", "byzantine", "2"), ("multikrum", "byzantine", True), ("multikrum", "byzantine", float("nan")),
    ("multikrum", "byzantine", float("inf")), ("multikrum", "byzantine", None),
    ("multikrum", "keep", -2), ("multikrum", "keep", 0.5), ("krum", "byzantine", 2.25),
])
def test_invalid_integer_hyperparameters(name, field, value):
    with pytest.raises(ConfigError, match=rf"^{name}: {field} must be an integer in \[0, inf\).*, got {value!r}"):
        make_strategy(name, **{field: value})


def test_server_lr_scales_the_krum_step(make_updates):
    g, updates = make_updates(seed=6, count=6, size=30)
    full = MultiKrum().aggregate(g, updates, {})[0].astype(np.float64)
    half = MultiKrum(server_lr=0.5).aggregate(g, updates, {})[0].astype(np.float64)
    np.testing.assert_allclose(half - g, 0.5 * (full - g), atol=2 / fx.SCALE)
