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
