"""Every strategy: correct against a float64 reference, and the same bytes in any order or process."""

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedledger.aggregation import STRATEGIES, ClientUpdate, FedAvg, make_strategy
from fedledger.store import ArtifactStore, encode_arrays, encode_params

SERVER_OPT = {"fedadam": {"server_lr": 0.01}, "fedadagrad": {"server_lr": 0.316228},
              "fedyogi": {"server_lr": 0.01}}
ROBUST = {"fedmedian": {}, "fedtrimmedmean": {"beta": 0.2}, "krum": {"byzantine": 1},
          "multikrum": {"byzantine": 1, "keep": 3}, "normclip": {"bound": 0.0}}
ALL = {"fedavg": {}, "fedprox": {"mu": 0.01}, "scaffold": {}, **SERVER_OPT, **ROBUST}


def _weighted_mean64(updates):
    weights = np.array([u.num_samples for u in updates], dtype=np.float64)
    stacked = np.stack([u.params.astype(np.float64) for u in updates])
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


def _reference_step(name, hp, g, delta, m, v):
    """Reddi et al. / FLamby FedOpt, written out plainly in float64."""
    b1, b2, lr, tau = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp["server_lr"], hp.get("tau", 1e-8)
    m = b1 * m + (1 - b1) * delta
    if name == "fedadam":
        v = b2 * v + (1 - b2) * delta**2
    elif name == "fedadagrad":
        v = v + delta**2
    else:
        v = v - (1 - b2) * delta**2 * np.sign(v - delta**2)
    return g + lr * m / (np.sqrt(v) + tau), m, v


def test_fedavg_is_the_weighted_mean_within_the_grid_resolution(round_inputs):
    g, updates = round_inputs
    new, state = FedAvg().aggregate(g, updates, {})
    assert new.dtype == np.float32 and new.shape == g.shape and state == {}
    # every value is below 1 in magnitude, where the grid is finer than float32's
    assert np.abs(new - _weighted_mean64(updates)).max() <= 2.0**-24


def test_fedavg_server_lr_scales_the_pseudo_gradient(round_inputs):
    g, updates = round_inputs
    new, _ = FedAvg(server_lr=0.5).aggregate(g, updates, {})
    expected = g + 0.5 * (_weighted_mean64(updates) - g)
    assert np.abs(new - expected).max() <= 2.0**-23


def test_fedprox_aggregates_like_fedavg(round_inputs):
    g, updates = round_inputs
    assert (make_strategy("fedprox", mu=0.1).aggregate(g, updates, {})[0].tobytes()
            == FedAvg().aggregate(g, updates, {})[0].tobytes())


@pytest.mark.parametrize("name", sorted(SERVER_OPT))
def test_server_optimizers_match_a_float64_reference_over_rounds(name, make_updates):
    hp = SERVER_OPT[name]
    strategy = make_strategy(name, **hp)
    g, _ = make_updates(seed=3, count=1, size=300)
    state = strategy.initial_state(g)
    ref_g, ref_m, ref_v = g.astype(np.float64), np.zeros(g.size), np.zeros(g.size)
    for rnd in range(5):
        # locals move away from wherever each implementation's model is, by the same amounts
        base, noise = make_updates(seed=100 + rnd, count=4, size=300)
        ups = [ClientUpdate(u.client, (g + (u.params - base)).astype(np.float32), u.num_samples) for u in noise]
        ref_ups = [ClientUpdate(u.client, u.params.astype(np.float64) - g + ref_g, u.num_samples) for u in ups]
        g, state = strategy.aggregate(g, ups, state)
        ref_g, ref_m, ref_v = _reference_step(name, hp, ref_g, _weighted_mean64(ref_ups) - ref_g, ref_m, ref_v)
        assert np.abs(g - ref_g).max() < 1e-6, f"round {rnd}"
        # the state follows deltas measured from slightly different models (grid vs float64)
        np.testing.assert_allclose(state["m"], ref_m, rtol=0, atol=1e-7)
        np.testing.assert_allclose(state["v"], ref_v, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_permutation_gives_the_same_bytes(name, make_updates):
    strategy = make_strategy(name, **ALL[name])
    g, updates = make_updates(seed=7, count=6, size=100)
    state = strategy.initial_state(g)
    if state:  # a non-trivial state: one round already taken
        state = strategy.aggregate(g, updates[:3], state)[1]
    expected = strategy.aggregate(g, updates, state)
    for perm in itertools.permutations(updates):
        new, new_state = strategy.aggregate(g, list(perm), state)
        assert new.tobytes() == expected[0].tobytes()
        assert {k: a.tobytes() for k, a in new_state.items()} == {k: a.tobytes() for k, a in expected[1].items()}


# The helpers are loaded by path under their own name: several test directories have a conftest.py.
RUN_ROUNDS = """
import hashlib, importlib.util
from fedledger.aggregation import make_strategy
from fedledger.store import encode_arrays, encode_params
spec = importlib.util.spec_from_file_location("aggregation_helpers", {conftest!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
make_updates = helpers.updates_for
out = []
for name, hp in {all!r}.items():
    s = make_strategy(name, **hp)
    g, _ = make_updates(seed=11, count=1, size=1000)
    state = s.initial_state(g)
    for rnd in range(3):
        _, ups = make_updates(seed=20 + rnd, count=5, size=1000)
        ups = ups[::-1] if {reverse} else ups
        g, state = s.aggregate(g, ups, state)
    out.append(hashlib.sha256(encode_params(g) + encode_arrays(state)).hexdigest())
print(" ".join(out))
"""


def test_another_process_gets_the_same_digests():
    conftest = str(Path(__file__).with_name("conftest.py"))
    digests = []
    for reverse in (False, True):
        proc = subprocess.run([sys.executable, "-c", RUN_ROUNDS.format(conftest=conftest, all=ALL, reverse=reverse)],
                              capture_output=True, text=True, timeout=60, check=True)
        digests.append(proc.stdout.split())
    in_process = {}
    exec(RUN_ROUNDS.format(conftest=conftest, all=ALL, reverse=False).replace("print(", "result = ("), in_process)
    assert digests[0] == digests[1] == in_process["result"].split()
    assert len(set(digests[0])) == len(ALL) - 2  # fedprox and scaffold aggregate exactly like fedavg


def _rational_local(i, rnd, n=1000):
    """Inputs built from integers and one correctly rounded division: the same on every machine
    and numpy version, unlike a random generator's stream or sin/exp."""
    k = np.arange(n, dtype=np.int64)
    return (((k * (7919 + 104729 * i) + 31 * rnd) % 2001 - 1000) / 997.0).astype(np.float32)


# Digests of (model, state) after three rounds, recorded on x86-64 (numpy 2.4): a machine or
# library version that computes other bytes could not agree with the validators that recorded these.
GOLDEN = {
    "fedavg": "0d8c0c81db4ec6dd33cad63669e885322789838763f322665912c2fb22ed5127",
    "fedprox": "0d8c0c81db4ec6dd33cad63669e885322789838763f322665912c2fb22ed5127",
    "scaffold": "0d8c0c81db4ec6dd33cad63669e885322789838763f322665912c2fb22ed5127",
    "fedadam": "45994f7d1c45c14484d141609cdc06033845185b3afc91695620ad54ead66517",
    "fedadagrad": "3cc32b8723e1d95739d7f2d5cd84ae809e8b94d2fc0d7b46cfbae8ed62d9d1be",
    "fedyogi": "c150c0f08e81cbb52c76f1fc49bdab136b2ad67085798483d3ef2a5bd6531b6f",
    "fedmedian": "9652f82aae527f69dbc1a23574589b452344d425b7cfe5d28e8f6d3c315f2f68",
    "fedtrimmedmean": "5483841d2250e793c6f8a335b81a350e24b77c1ceb71968f16a24cd16b06378f",
    "krum": "efac3640ea9a7a75e4e112322289c5f8e872ef50811e6e5568c6092cf9d9be13",
    "multikrum": "8bcc8728ce1a016529c56bf9253d761403e4d1a6f38a862b166ad7770914c3e2",
    "normclip": "df5006a8207fb5329b22692f98ecdd3e87a1dc12a0744ba4023b7716f996750a",
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_recorded_digests_are_reproduced(name):
    strategy = make_strategy(name, **ALL[name])
    g = _rational_local(99, 0)
    state = strategy.initial_state(g)
    for rnd in range(3):
        updates = [ClientUpdate(f"h{i}", _rational_local(i, rnd), 10 + 37 * i) for i in range(5)]
        g, state = strategy.aggregate(g, updates, state)
    assert hashlib.sha256(encode_params(g) + encode_arrays(state)).hexdigest() == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(SERVER_OPT))
def test_state_roundtrips_through_the_store(name, tmp_path, make_updates):
    strategy = make_strategy(name, **SERVER_OPT[name])
    store = ArtifactStore(tmp_path)
    g, updates = make_updates(seed=5, count=4, size=64)
    g1, state = strategy.aggregate(g, updates, strategy.initial_state(g))
    restored = store.get_arrays(store.put_arrays(state))
    assert store.get_params(store.put_params(g1)).tobytes() == g1.tobytes()
    direct = strategy.aggregate(g1, updates, state)
    via_store = strategy.aggregate(store.get_params(store.put_params(g1)), updates, restored)
    assert direct[0].tobytes() == via_store[0].tobytes()
    assert all(direct[1][k].tobytes() == via_store[1][k].tobytes() for k in ("m", "v"))


@pytest.mark.parametrize("name", sorted(ALL))
def test_aggregate_does_not_modify_its_inputs(name, make_updates):
    strategy = make_strategy(name, **ALL[name])
    g, updates = make_updates(seed=9, count=4, size=50)
    state = strategy.aggregate(g, updates, strategy.initial_state(g))[1]
    before = (g.tobytes(), [u.params.tobytes() for u in updates], {k: a.tobytes() for k, a in state.items()})
    strategy.aggregate(g, updates, state)
    assert before == (g.tobytes(), [u.params.tobytes() for u in updates], {k: a.tobytes() for k, a in state.items()})


def test_initial_states():
    g = np.zeros(7, np.float32)
    assert FedAvg().initial_state(g) == {}
    for name in SERVER_OPT:
        state = make_strategy(name).initial_state(g)
        assert sorted(state) == ["m", "v"]  # zeros, as in FLamby (not tau^2)
        assert all(a.dtype == np.float64 and a.shape == (7,) and not a.any() for a in state.values())


def test_registry_round_trips_through_params():
    for name, cls in STRATEGIES.items():
        strategy = make_strategy(name, **ALL[name])
        assert isinstance(strategy, cls) and strategy.name == name
        params = json.loads(json.dumps(strategy.params()))
        assert make_strategy(name, **params) == strategy
    assert make_strategy("fedprox", mu=0.05).client_config() == {"prox_mu": 0.05}
    assert make_strategy("scaffold").client_config() == {"scaffold": 1.0}
    assert all(make_strategy(n).client_config() == {} for n in STRATEGIES if n not in ("fedprox", "scaffold"))
    assert make_strategy("fedavg", server_lr=1).params() == {"server_lr": 1.0}
