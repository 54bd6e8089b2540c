"""SCAFFOLD: the global vector carries the server's control variate after the model, and the
aggregation that makes both is FedAvg's, so the audit replays it bit for bit."""

import numpy as np
import pytest

from fedledger.aggregation import make_strategy
from fedledger.audit import verify_run
from fedledger.bundle import export_bundle, load_bundle
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError
from fedledger.learning import get_flat_params
from fedledger.protocol.setup import initial_params, model_spec
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore

STEPS, LR = 20, 0.05


def test_the_control_variate_travels_after_the_model_and_the_audit_replays_it(tmp_path):
    cfg = config_from_dict({
        "study": {"name": "scaffold", "rounds": 3, "seed": 7},
        "data": {"dataset": "breast_cancer", "num_clients": 3, "alpha": 0.3},
        "training": {"lr": LR, "local_steps": STEPS, "batch_size": 8},
        "aggregation": {"strategy": "scaffold"},
    }, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    store = ArtifactStore(result.run_dir / "store")
    start = initial_params(cfg, model_spec(cfg, 30))
    first, last = (store.get_params(result.rounds[i]["model"]) for i in (0, -1))
    size = first.size // 2
    assert size == 31 and not start[size:].any()          # 30 weights and a bias; c starts at zero
    # round 1 (c = c_i = 0): each c_i is (x - y_i) / (steps x lr), so their weighted mean is
    # (x - the new model) / (steps x lr)
    np.testing.assert_allclose(first[size:], (start[:size] - first[:size]) / (STEPS * LR), atol=1e-4)
    assert np.abs(last[size:] - first[size:]).max() > 0
    assert result.final["pooled"]["accuracy"] > 0.85
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    # an export keeps the model half of the vector the ledger names
    bundle = load_bundle(export_bundle(result.run_dir, tmp_path / "bundle").path)
    np.testing.assert_array_equal(get_flat_params(bundle.model), last[:size])


def test_scaffold_refuses_differential_privacy_and_a_server_lr():
    with pytest.raises(ConfigError, match="scaffold.*control variates"):
        config_from_dict({"aggregation": {"strategy": "scaffold"},
                          "privacy": {"mechanism": "dp-fedavg", "epsilon": 3.0}})
    with pytest.raises(ConfigError, match="server_lr must be 1"):
        make_strategy("scaffold", server_lr=0.5)
