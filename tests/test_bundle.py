"""`fedledger export` and `fedledger predict`: a run's model, checked against the digest the
ledger names, scores new rows exactly as the institutions' own evaluations scored them."""

import csv
import hashlib
import json

import numpy as np
import pytest

from fedledger.bundle import export_bundle, load_bundle, predict_csv
from fedledger.cli.main import main
from fedledger.config import load_config
from fedledger.errors import ConfigError, DataError
from fedledger.simulation import run_study

SITES = ("north", "south")


def write_site(path, rng, n, task):
    """Rows with an id, two features, a label and a given split (the last third is test)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "age", "bp", "outcome", "split"])
        for i in range(n):
            age, bp = rng.normal(60, 10), rng.normal(130, 15)
            score = (age - 60) / 10 + (bp - 130) / 15 + rng.normal(0, 0.5)
            label = ("ill" if score > 0 else "well") if task == "binary" else \
                ("low", "mid", "high")[int(np.digitize(score, [-0.7, 0.7]))]
            w.writerow([f"{path.stem}-{i}", f"{age:.1f}", f"{bp:.1f}", label, "test" if i >= 2 * n // 3 else "train"])


def study(tmp_path, task, standardize):
    rng = np.random.default_rng(5)
    for site, n in zip(SITES, (90, 60)):
        write_site(tmp_path / f"{site}.csv", rng, n, task)
    classes = 'classes = ["low", "mid", "high"]\n' if task == "multiclass" else ""
    (tmp_path / "study.toml").write_text(f"""
[study]
name = "bundle-{task}"
rounds = 3
[data]
dataset = "csv"
clients = {{ north = "north.csv", south = "south.csv" }}
task = "{task}"
label = "outcome"
{classes}features = ["age", "bp"]
split_column = "split"
standardize = "{standardize}"
[training]
optimizer = "adam"
lr = 0.05
batch_size = 16
local_steps = 20
""")
    cfg = load_config(tmp_path / "study.toml")
    return run_study(cfg, run_dir=tmp_path / "run", progress=False)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binary")
    result = study(tmp, "binary", "site")
    return tmp, result, export_bundle(result.run_dir)


def test_the_bundle_holds_the_ledgers_model_and_what_scoring_needs(binary_run):
    tmp, result, exported = binary_run
    doc = json.loads((exported.path / "bundle.json").read_text())
    model_bytes = (exported.path / "model.safetensors").read_bytes()
    assert hashlib.sha256(model_bytes).hexdigest() == doc["model_digest"] == result.rounds[-1]["model"]
    assert doc["round"] == exported.round == 3 and doc["study"] == "bundle-binary"
    assert doc["features"] == ["age", "bp"] and doc["task"]["classes"] == ["ill", "well"]
    assert sorted(doc["scaling"]) == list(SITES) and doc["contracts"]["ledger"].startswith("0x")
    assert exported.onnx and (exported.path / "model.onnx").stat().st_size > 0


def test_predictions_on_a_sites_test_rows_reproduce_its_evaluation(binary_run, tmp_path):
    tmp, result, exported = binary_run
    bundle = load_bundle(exported.path)
    for site in SITES:
        rows = list(csv.reader(open(tmp / f"{site}.csv")))
        test = [rows[0]] + [r for r in rows[1:] if r[-1] == "test"]
        with open(tmp_path / f"{site}-test.csv", "w", newline="") as f:
            csv.writer(f).writerows(test)
        header, predictions = predict_csv(bundle, tmp_path / f"{site}-test.csv", site, keep=["patient_id", "outcome"])
        assert header == ["patient_id", "outcome", "p_well", "predicted"]
        assert [p[0] for p in predictions] == [r[0] for r in test[1:]]
        accuracy = np.mean([p[1] == p[3] for p in predictions])
        assert accuracy == pytest.approx(result.final["per_institution"][site]["accuracy"])


def test_the_onnx_model_gives_what_the_torch_model_gives(binary_run):
    import onnxruntime

    _, _, exported = binary_run
    bundle = load_bundle(exported.path)
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(exported.path / "model.onnx"))
    (onnx_out,) = session.run(None, {"x": x})
    import torch
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, bundle.model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_a_bundle_whose_model_is_not_the_named_one_is_refused(binary_run, tmp_path):
    _, _, exported = binary_run
    export_bundle(exported.path.parent, tmp_path / "copy", round=2)
    model = tmp_path / "copy" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(DataError, match="is not the model .* the bundle names"):
        load_bundle(tmp_path / "copy")


def test_bad_requests_get_clear_errors(binary_run, tmp_path):
    tmp, _, exported = binary_run
    bundle = load_bundle(exported.path)
    with pytest.raises(DataError, match=r"name the one whose scaling to use with --institution \(north, south\)"):
        predict_csv(bundle, tmp / "north.csv")
    (tmp_path / "other.csv").write_text("age,weight\n50,80\n")
    with pytest.raises(DataError, match="no column 'bp', which the model needs"):
        predict_csv(bundle, tmp_path / "other.csv", "north")
    (tmp_path / "bad.csv").write_text("age,bp\n50,high\n")
    with pytest.raises(DataError, match="line 2, column 'bp': 'high' is not a number"):
        predict_csv(bundle, tmp_path / "bad.csv", "north")
    with pytest.raises(ConfigError, match="has no model of round 9"):
        export_bundle(exported.path.parent, tmp_path / "nine", round=9)
    with pytest.raises(ConfigError, match="is not empty"):
        export_bundle(exported.path.parent, exported.path)


def test_multiclass_predictions_name_the_classes_through_the_cli(tmp_path, capsys):
    result = study(tmp_path, "multiclass", "consortium")
    assert main(["export", str(result.run_dir), "--out", str(tmp_path / "bundle")]) == 0
    scaling = json.loads((tmp_path / "bundle" / "bundle.json").read_text())["scaling"]
    assert scaling["north"] == scaling["south"]      # the consortium's: no institution to name
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(tmp_path / "bundle"), str(tmp_path / "south.csv"), "--keep", "outcome",
                 "--out", str(out)]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["outcome", "p_low", "p_mid", "p_high", "predicted"]
    assert all(r[4] in ("low", "mid", "high") and abs(sum(map(float, r[1:4])) - 1) < 1e-4 for r in rows[1:])
    assert np.mean([r[0] == r[4] for r in rows[1:]]) > 0.6
    assert "scored 60 rows with the model" in capsys.readouterr().err
