"""Every malformed input is refused with UpdateRejected or ConfigError naming what is wrong."""

import dataclasses

import numpy as np
import pytest

from fedledger.aggregation import (
    STRATEGIES,
    ClientUpdate,
    FedAdam,
    FedAvg,
    make_strategy,
)
from fedledger.errors import ConfigError, UpdateRejected


def _replace(update, **change):
    return dataclasses.replace(update, **change)


BAD_UPDATES = {
    "wrong length": (lambda u: _replace(u, params=u.params[:-1]), "has 256 parameters, the global model has 257"),
    "float64": (lambda u: _replace(u, params=u.params.astype(np.float64)), "dtype float64, expected float32"),
    "2-D": (lambda u: _replace(u, params=u.params.reshape(1, -1)), r"shape \(1, 257\)"),
    "list": (lambda u: _replace(u, params=u.params.tolist()), "list, expected a numpy array"),
    "NaN": (lambda u: _replace(u, params=np.where(np.arange(257) == 3, np.nan, u.params).astype(np.float32)),
            "NaN or infinite"),
    "Inf": (lambda u: _replace(u, params=np.where(np.arange(257) == 3, -np.inf, u.params).astype(np.float32)),
            "NaN or infinite"),
    "huge magnitude": (lambda u: _replace(u, params=(u.params * 1e6).astype(np.float32)),
                       "above the fixed-point bound 32768"),
    "zero samples": (lambda u: _replace(u, num_samples=0), "num_samples is 0"),
    "negative samples": (lambda u: _replace(u, num_samples=-5), "num_samples is -5"),
    "float samples": (lambda u: _replace(u, num_samples=10.0), "num_samples is 10.0"),
    "bool samples": (lambda u: _replace(u, num_samples=True), "num_samples is True"),
    "too many samples": (lambda u: _replace(u, num_samples=2**23 + 1), "num_samples is 8388609"),
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("case", sorted(BAD_UPDATES))
def test_bad_update_is_rejected_naming_the_client(round_inputs, strategy, case):
    g, updates = round_inputs
    spoil, reason = BAD_UPDATES[case]
    updates[2] = spoil(updates[2])
    s = make_strategy(strategy)
    with pytest.raises(UpdateRejected, match=f"update from hospital-2 rejected: .*{reason}") as info:
        s.aggregate(g, updates, s.initial_state(g))
    assert "\n" not in str(info.value)


def test_duplicate_client_is_rejected(round_inputs):
    g, updates = round_inputs
    updates.append(_replace(updates[4], client="hospital-1"))
    with pytest.raises(UpdateRejected, match="update from hospital-1 rejected: second update from the same client"):
        FedAvg().aggregate(g, updates, {})


@pytest.mark.parametrize("client", ["", None, 7])
def test_missing_client_id_is_rejected(round_inputs, client):
    g, updates = round_inputs
    updates[0] = _replace(updates[0], client=client)
    with pytest.raises(UpdateRejected, match="client id .* is not a non-empty string"):
        FedAvg().aggregate(g, updates, {})


def test_empty_round_is_rejected(round_inputs):
    g, _ = round_inputs
    with pytest.raises(UpdateRejected, match="no client updates"):
        FedAvg().aggregate(g, [], {})


def test_total_weight_above_the_bound_names_the_largest_client(round_inputs):
    g, updates = round_inputs
    updates[1] = _replace(updates[1], num_samples=2**23)
    with pytest.raises(UpdateRejected, match="above the fixed-point limit 8388608 .largest: hospital-1"):
        FedAvg().aggregate(g, updates, {})


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((1, 3), np.float32), np.array([np.nan], np.float32),
                                 np.zeros(0, np.float32), np.full(3, 1e5, np.float32)])
def test_bad_global_model_is_rejected(bad):
    updates = [ClientUpdate("a", np.zeros(3, np.float32), 1)]
    with pytest.raises(UpdateRejected, match="global model rejected"):
        FedAvg().aggregate(bad, updates, {})


def test_bad_server_state_is_rejected(round_inputs):
    g, updates = round_inputs
    good = FedAdam().initial_state(g)
    bad_states = [{}, {"m": good["m"]}, {**good, "extra": good["m"]}, {**good, "v": -np.ones(g.size)},
                  {**good, "m": good["m"][:-1]}, {**good, "m": good["m"].astype(np.float32)},
                  {**good, "v": np.full(g.size, np.inf)}]
    for state in bad_states:
        with pytest.raises(UpdateRejected, match="server state rejected"):
            FedAdam().aggregate(g, updates, state)
    with pytest.raises(UpdateRejected, match="server state rejected: fedavg keeps no state"):
        FedAvg().aggregate(g, updates, good)


def test_a_step_that_leaves_the_fixed_point_range_is_refused():
    g = np.zeros(2, np.float32)
    updates = [ClientUpdate("a", np.full(2, 30000.0, np.float32), 1)]
    with pytest.raises(UpdateRejected, match="fedavg: the new global model exceeds the fixed-point bound"):
        FedAvg(server_lr=1.5).aggregate(g, updates, {})
    with pytest.raises(UpdateRejected, match="fedavg: the server step leaves the fixed-point range"):
        FedAvg(server_lr=1e6).aggregate(g, updates, {})


def test_unknown_strategy_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown aggregation strategy 'fedsgd'; allowed: fedadagrad, fedadam, "
                                          "fedavg, fedmedian, fedprox, fedtrimmedmean, fedyogi, krum, "
                                          "multikrum, normclip"):
        make_strategy("fedsgd")
    with pytest.raises(ConfigError, match="unknown aggregation strategy"):
        make_strategy("FedAvg")


def test_unknown_hyperparameter_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="fedadagrad: unknown hyperparameter 'beta2'; allowed: beta1, server_lr, tau"):
        make_strategy("fedadagrad", beta2=0.99)
    with pytest.raises(ConfigError, match="fedavg: unknown hyperparameters 'lr', 'mu'; allowed: server_lr"):
        make_strategy("fedavg", mu=0.1, lr=1.0)


@pytest.mark.parametrize("name, params, message", [
    ("fedavg", {"server_lr": 0}, r"server_lr must be a number in \(0, inf\), got 0"),
    ("fedavg", {"server_lr": -1.0}, "server_lr"),
    ("fedavg", {"server_lr": "1"}, "server_lr must be a number .* got '1'"),
    ("fedavg", {"server_lr": True}, "server_lr"),
    ("fedavg", {"server_lr": float("nan")}, "server_lr"),
    ("fedprox", {"mu": -0.1}, r"mu must be a number in \[0, inf\)"),
    ("fedadam", {"beta1": 1.0}, r"beta1 must be a number in \[0, 1\), got 1.0"),
    ("fedyogi", {"beta2": -0.5}, "beta2"),
    ("fedadam", {"tau": 0.0}, "tau"),
    ("fedadagrad", {"server_lr": float("inf")}, "server_lr"),
])
def test_invalid_hyperparameter_values(name, params, message):
    with pytest.raises(ConfigError, match=f"{name}: {message}"):
        make_strategy(name, **params)


def test_direct_construction_validates_too():
    with pytest.raises(ConfigError, match="fedadam: beta2"):
        FedAdam(beta2=2.0)
