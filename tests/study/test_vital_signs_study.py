"""A fleet of simulated wearables as a study: the 1-D CNN, client sampling, the audit, the export."""

import json

import numpy as np
import pytest

from fedledger.audit import verify_run
from fedledger.bundle import export_bundle, load_bundle
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError
from fedledger.learning.vital_signs import VITAL_SIGNS_CLASSES, vital_signs_shape
from fedledger.protocol.sampling import ClientDraw
from fedledger.simulation import run_study


def wearables(tmp_path, **model):
    return config_from_dict({
        "study": {"name": "wearables", "seed": 5, "rounds": 3},
        "data": {"dataset": "vital_signs", "num_clients": 10},
        "model": {"name": "cnn", "hidden": [4, 8], **model},
        "training": {"optimizer": "adam", "lr": 0.003, "batch_size": 8, "local_steps": 5},
        "protocol": {"sample_fraction": 0.5, "commit_window": 5},
    }, base_dir=tmp_path)


def test_a_sampled_fleet_trains_the_cnn_passes_the_audit_and_exports(tmp_path):
    cfg = wearables(tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    names = json.loads((tmp_path / "run" / "run.json").read_text())["institutions"]
    draw = ClientDraw.of(cfg.to_dict(), {address: name for name, address in names.items()})
    for entry in result.rounds:
        assert sorted(entry["accepted"]) == sorted(draw.members(entry["round"], names.values()))
    assert result.final["pooled"]["n"] == 10 * 3          # every device's 3 test windows, pooled
    assert set(result.final["per_institution"]) == {f"device_{i}" for i in range(10)}
    report = verify_run(tmp_path / "run")
    assert report.ok, [f for f in report.findings if not f.ok]

    exported = export_bundle(tmp_path / "run")
    bundle = load_bundle(exported.path)
    doc = json.loads((exported.path / "bundle.json").read_text())
    assert doc["model"]["shape"] == list(vital_signs_shape()) and doc["task"]["classes"] == list(VITAL_SIGNS_CLASSES)
    assert len(doc["features"]) == 3 * 500 and doc["features"][500] == "ppg_0"
    import onnxruntime
    import torch
    x = np.random.default_rng(0).normal(size=(4, 1500)).astype(np.float32)
    (onnx_out,) = onnxruntime.InferenceSession(str(exported.path / "model.onnx")).run(None, {"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, bundle.model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_vital_signs_take_any_model_and_a_cnn_takes_only_shaped_data(tmp_path):
    cfg = config_from_dict({"data": {"dataset": "vital_signs", "num_clients": 4}, "model": {"name": "mlp"}})
    assert cfg.model.name == "mlp"
    with pytest.raises(ConfigError, match="reads images or signals"):
        config_from_dict({"data": {"dataset": "breast_cancer"}, "model": {"name": "cnn"}})
    with pytest.raises(ConfigError, match="vital_signs is a multiclass task"):
        config_from_dict({"data": {"dataset": "vital_signs", "task": "binary"}, "model": {"name": "cnn"}})
