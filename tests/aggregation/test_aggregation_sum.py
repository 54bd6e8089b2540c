"""Aggregating from the sum of the weighted updates (what secure aggregation reveals) gives the
bytes aggregating the updates gives, for every rule that needs no more than their mean."""

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, make_strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import ConfigError, UpdateRejected

MEAN_RULES = [("fedavg", {}), ("fedprox", {"mu": 0.1}), ("fedadam", {"server_lr": 0.1}),
              ("fedadagrad", {"server_lr": 0.1}), ("fedyogi", {"server_lr": 0.1})]
ROBUST_RULES = ["fedmedian", "fedtrimmedmean", "krum", "multikrum", "normclip"]


def _round(seed=0, clients=5, size=300):
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 1, size).astype(np.float32)
    updates = [ClientUpdate(f"c{i}", (g + rng.normal(0, 0.1, size)).astype(np.float32), int(rng.integers(1, 500)))
               for i in range(clients)]
    weighted = sum(fx.to_fixed(u.params) * np.int64(u.num_samples) for u in updates)
    return g, updates, weighted, sum(u.num_samples for u in updates)


@pytest.mark.parametrize("name, params", MEAN_RULES)
def test_the_sum_gives_the_same_bytes_as_the_updates(name, params):
    strategy = make_strategy(name, **params)
    g, updates, weighted, total = _round()
    state = strategy.initial_state(g)
    for _ in range(3):     # several rounds, so server state is carried too
        expected, expected_state = strategy.aggregate(g, updates, state)
        got, got_state = strategy.aggregate_sum(g, weighted, total, state)
        assert got.tobytes() == expected.tobytes()
        assert {k: v.tobytes() for k, v in got_state.items()} == {k: v.tobytes() for k, v in expected_state.items()}
        g, state = expected, expected_state


@pytest.mark.parametrize("name", ROBUST_RULES)
def test_rules_that_look_at_each_update_refuse_a_sum(name):
    strategy = make_strategy(name)
    assert strategy.combines_individually
    g, _, weighted, total = _round()
    with pytest.raises(ConfigError, match="needs each update, not only their sum"):
        strategy.aggregate_sum(g, weighted, total, {})


def test_a_bad_sum_is_refused_with_its_reason():
    strategy = make_strategy("fedavg")
    g, _, weighted, total = _round()
    with pytest.raises(UpdateRejected, match="expected 1 to"):
        strategy.aggregate_sum(g, weighted, 0, {})
    with pytest.raises(UpdateRejected, match="expected int64 of shape"):
        strategy.aggregate_sum(g, weighted[:-1], total, {})
    with pytest.raises(UpdateRejected, match="exceeds the fixed-point bound"):
        strategy.aggregate_sum(g, np.full_like(weighted, fx.MAX_FIXED + 1), 1, {})
