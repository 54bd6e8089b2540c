"""A user's own data: one CSV per institution, an MLP, a study run through the CLI's config path, audited."""

import numpy as np
import pytest

from fedledger.audit import verify_run
from fedledger.config import config_from_dict
from fedledger.errors import DataError
from fedledger.simulation import run_study


def _write_site(path, rng, n, shift):
    x = rng.normal(shift, 1.0, size=(n, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] - shift > 0).astype(int)
    rows = ["age,marker,noise,outcome"] + [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")


def test_csv_sites_with_an_mlp(tmp_path):
    rng = np.random.default_rng(0)
    for name, n, shift in [("north", 120, 0.0), ("south", 80, 0.5), ("east", 60, -0.5)]:
        _write_site(tmp_path / f"{name}.csv", rng, n, shift)
    cfg = config_from_dict({
        "study": {"name": "csv", "rounds": 3, "seed": 3},
        "data": {"dataset": "csv", "label": "outcome", "features": ["age", "marker"],
                 "clients": {"north": "north.csv", "south": "south.csv", "east": "east.csv"}},
        "model": {"name": "mlp", "hidden": [8]},
        "training": {"lr": 0.05, "local_steps": 30, "batch_size": 8},
        "aggregation": {"strategy": "fedprox", "params": {"mu": 0.1}},
    }, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert set(result.final["per_institution"]) == {"north", "south", "east"}
    assert result.final["pooled"]["accuracy"] > 0.8      # a learnable rule, learned together
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()


@pytest.mark.parametrize("huge", ["1e308", "-1e308"])
def test_values_too_large_to_standardize_are_refused_naming_file_and_column(tmp_path, huge):
    rng = np.random.default_rng(1)
    for name in ("north", "south"):
        _write_site(tmp_path / f"{name}.csv", rng, 40, 0.0)
    path = tmp_path / "north.csv"
    lines = path.read_text().splitlines()
    for i in (3, 7, 11):   # a few rows, so some fall into each split
        lines[i] = f"0.1,{huge},0.2,{i % 2}"
    path.write_text("\n".join(lines) + "\n")
    cfg = config_from_dict({
        "study": {"rounds": 1}, "training": {"local_steps": 5}, "chain": {"enabled": False},
        "data": {"dataset": "csv", "label": "outcome", "clients": {"north": "north.csv", "south": "south.csv"}},
    }, base_dir=tmp_path)
    with pytest.raises(DataError) as err:
        run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert str(path) in str(err.value) and "column 'marker'" in str(err.value)
    assert "too large to standardize" in str(err.value)


def _write_task_site(path, rng, n, task):
    """Rows with an id, three features and the task's labels (learnable from the first two)."""
    x = rng.normal(size=(n, 3))
    signal = x[:, 0] - 0.7 * x[:, 1]
    if task == "survival":
        time = rng.exponential(10 / np.exp(signal))
        censored = rng.exponential(15, size=n)
        labels = [f"{min(t, c):.3f},{int(t <= c)}" for t, c in zip(time, censored)]
        header = "days,died"
    else:
        value = {"multiclass": lambda s: ("stable", "serious", "critical")[int(np.digitize(s, [-0.6, 0.6]))],
                 "regression": lambda s: f"{120 + 15 * s + rng.normal(0, 2):.2f}"}[task]
        labels, header = [value(s) for s in signal], "target"
    rows = [f"id,a,b,c,{header}"] + [f"p{i},{a:.4f},{b:.4f},{c:.4f},{lab}" for i, ((a, b, c), lab) in
                                      enumerate(zip(x, labels))]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("task, architecture, privacy", [
    ("multiclass", "full", {}), ("regression", "semi", {}), ("survival", "loose", {}),
    ("multiclass", "loose", {"mechanism": "dp-sgd", "epsilon": 5.0}),
    ("survival", "semi", {"mechanism": "dp-fedavg", "epsilon": 5.0}),
])
def test_each_task_runs_as_a_study_and_audits(tmp_path, task, architecture, privacy):
    rng = np.random.default_rng(4)
    for name, n in (("north", 150), ("south", 120)):
        _write_task_site(tmp_path / f"{name}.csv", rng, n, task)
    labels = {"multiclass": {"label": "target", "classes": ["stable", "serious", "critical"]},
              "regression": {"label": "target"}, "survival": {"time": "days", "event": "died"}}[task]
    cfg = config_from_dict({
        "study": {"name": task, "rounds": 3, "seed": 5, "architecture": architecture},
        "data": {"dataset": "csv", "task": task, "exclude": ["id"], "validation_fraction": 0.2,
                 "clients": {"north": "north.csv", "south": "south.csv"}, **labels},
        "training": {"optimizer": "adam", "lr": 0.05, "local_steps": 30, "batch_size": 32},
        "privacy": privacy,
    }, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    pooled = result.final["pooled"]
    # under client-level DP (noise on two members' updates) a survival model learns little in 3 rounds
    c_index = 0.5 if privacy.get("mechanism") == "dp-fedavg" else 0.7
    learnt = {"multiclass": lambda: pooled["balanced_accuracy"] > 0.7, "regression": lambda: pooled["r2"] > 0.8,
              "survival": lambda: pooled["c_index"] > c_index}[task]
    assert learnt(), pooled
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
