"""`fedledger compare`: one real comparison (three architectures, nine fault studies) from the CLI.

Three hospitals keep it short and make the fault outcomes certain: a semi committee of three is
the whole roster, so the faulty member is always on it, and two of three is a majority in both
semi and full.
"""

import json
import re
import statistics
import subprocess
import sys

import pytest

from fedledger.simulation.compare import in_rounds, spans

MEMBERS = 3
CONFIG = f"""
[study]
name = "cmp"
seed = 3
rounds = 2
output_dir = "out"
[data]
dataset = "breast_cancer"
num_clients = {MEMBERS}
validation_fraction = 0.2
[training]
lr = 0.05
batch_size = 8
local_steps = 5
[protocol]
commit_window = 5
result_window = 3
"""


def fedledger(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fedledger", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    (base / "c.toml").write_text(CONFIG)
    proc = fedledger("compare", base / "c.toml", "--fault-rounds", 2, "--quiet")
    out = base / "out" / "compare-cmp-1"
    return proc, out, json.loads((out / "compare.json").read_text()) if out.exists() else None


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_prints_the_tables_and_writes_the_files(compared):
    proc, out, _ = compared
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"model digests identical across the three *\| yes *\| yes *\| yes *\|", proc.stdout)
    assert "Injected faults, 2 rounds each" in proc.stdout and "stalled at round 1" in proc.stdout
    written = {p.name for p in out.iterdir()}
    assert {"compare.json", "compare.md", "accuracy.png", "loose", "semi", "full", "faults"} <= written
    assert (out / "compare.md").read_text().strip() in proc.stdout
    assert len(list((out / "faults").iterdir())) == 9


def test_honest_runs_agree_and_match_their_metrics(compared):
    _, out, data = compared
    assert data["digests_identical"] and data["first_divergent_round"] is None
    models = {arch: figures["models"] for arch, figures in data["architectures"].items()}
    assert models["loose"] == models["semi"] == models["full"] and len(models["loose"]) == 2
    for arch, figures in data["architectures"].items():
        lines = _metrics(out / arch)
        assert [line["model"] for line in lines] == figures["models"]
        assert figures["transactions_per_round"] == statistics.mean(line["transactions"] for line in lines)
        assert figures["gas_per_round"] == statistics.mean(line["gas"] for line in lines)
        assert figures["calldata_bytes_per_round"] == statistics.mean(line["calldata_bytes"] for line in lines)
        assert figures["median_seconds_per_round"] == lines[1]["seconds"]   # round 1 left out
        assert figures["accuracy"]["pooled"] == lines[-1]["metrics"]["pooled"]["accuracy"]
        assert len(figures["accuracy"]["per_institution"]) == MEMBERS
        assert figures["setup_transactions"] > 0 and figures["audit"]["ok"], figures["audit"]
    tx = {arch: data["architectures"][arch]["transactions_per_round"] for arch in models}
    assert tx["loose"] == 1 and tx["semi"] > MEMBERS and tx["full"] > MEMBERS


def test_fault_outcomes_come_from_what_happened(compared):
    _, _, data = compared
    f = {(e["architecture"], e["fault"]): e for e in data["faults"]}
    assert not f["loose", "silent"]["survived"] and f["loose", "silent"]["stalled_at"] == 1
    assert f["loose", "silent"]["outcome"].startswith("stalled at round 1")
    assert f["loose", "wrong_result"]["audit"]["failed_rounds"] == [1, 2]
    assert "audit flags rounds 1-2" in f["loose", "wrong_result"]["outcome"]
    assert not f["loose", "wrong_result"]["same_models_as_honest"]
    for arch in ("semi", "full"):
        silent, liar = f[arch, "silent"], f[arch, "wrong_result"]
        assert silent["survived"] and silent["same_models_as_honest"] and silent["audit"]["ok"]
        (faulty,) = liar["faulty"]
        assert liar["outvoted"] == {"1": [faulty], "2": [faulty]}    # JSON keys are strings
        assert faulty in liar["penalties"] and liar["same_models_as_honest"] and liar["audit"]["ok"]
        assert f"{faulty} outvoted in rounds 1-2" in liar["outcome"] and "penalized" in liar["outcome"]
    for arch in ("loose", "semi", "full"):
        assert f[arch, "no_update"]["missing"] == {"hospital_0": [1, 2]}
        assert "hospital_0 missing from rounds 1-2" in f[arch, "no_update"]["outcome"]


def test_full_needs_validation_data(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.replace("validation_fraction = 0.2", "validation_fraction = 0.0"))
    proc = fedledger("compare", cfg, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "set [data].validation_fraction above 0" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_spans():
    assert spans([3, 1, 2, 5, 7, 8]) == "1-3, 5, 7-8" and spans([]) == ""
    assert in_rounds([2]) == "round 2" and in_rounds([1, 2]) == "rounds 1-2"


def test_diverging_digests_are_reported_with_the_reason():
    from fedledger.simulation.compare import _digest_agreement

    def run(models, accepted, rejected=None):
        return {"models": models, "accepted": accepted, "rejected": rejected or [{} for _ in models]}

    same = run(["a", "b"], [["x", "y"], ["x", "y"]])
    excluded = run(["a", "c"], [["x", "y"], ["x"]], [{}, {"y": "median validation score too low"}])
    result = _digest_agreement({"loose": same, "semi": same, "full": excluded})
    assert result == {"digests_identical": False, "first_divergent_round": 2,
                      "divergence": "full left out y (median validation score too low)"}
    bug = _digest_agreement({"loose": same, "full": run(["a", "d"], same["accepted"])})
    assert "determinism bug" in bug["divergence"]
