"""Client sampling, dropouts and stragglers in whole studies on the embedded chain, with the audit."""

import json

import pytest

from fedledger.audit import verify_run
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError
from fedledger.protocol.sampling import ClientDraw
from fedledger.simulation import run_study
from fedledger.simulation.faults import Faults
import fedledger.simulation.study as simulation


def fleet(tmp_path, architecture="loose", faults=None, **protocol):
    return config_from_dict({
        "study": {"name": "fleet", "seed": 11, "rounds": 3, "architecture": architecture},
        "data": {"dataset": "breast_cancer", "num_clients": 12, "validation_fraction": 0.2},
        "training": {"lr": 0.01, "local_steps": 5},
        "protocol": {"sample_fraction": 0.5, "commit_window": 10, "result_window": 10, **protocol},
        "faults": faults or {},
    }, base_dir=tmp_path)


def drawn_names(cfg, run_dir, round):
    """Who the draw picks for `round`, recomputed from the run's names and config."""
    names = json.loads((run_dir / "run.json").read_text())["institutions"]     # name -> address
    draw = ClientDraw.of(cfg.to_dict(), {address: name for name, address in names.items()})
    by_address = {address: name for name, address in names.items()}
    return {by_address[a] for a in draw.members(round, names.values())}, by_address


@pytest.mark.parametrize("architecture", ["loose", "semi"])
def test_only_the_drawn_members_train_and_the_audit_agrees(tmp_path, architecture):
    cfg = fleet(tmp_path, architecture)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    draws = []
    for entry in result.rounds:
        drawn, by_address = drawn_names(cfg, tmp_path / "run", entry["round"])
        assert {by_address[a] for a in entry["accepted"]} == drawn and not entry["rejected"]
        draws.append(drawn)
    assert len({frozenset(d) for d in draws}) == 3 and all(0 < len(d) < 12 for d in draws)
    report = verify_run(tmp_path / "run")
    assert report.ok, [f for f in report.findings if not f.ok]


def test_a_seeded_sampled_study_ends_on_the_same_model_with_other_keys(tmp_path):
    first = run_study(fleet(tmp_path), run_dir=tmp_path / "a", progress=False)
    second = run_study(fleet(tmp_path), run_dir=tmp_path / "b", progress=False)
    assert [r["model"] for r in first.rounds] == [r["model"] for r in second.rounds]


def test_the_audit_fails_a_coordinator_that_aggregates_members_not_drawn(tmp_path, monkeypatch):
    # every member trains and the coordinator takes every update, as if no one were drawn out,
    # while the anchored config says half are drawn each round
    everyone = simulation.update_scheme
    monkeypatch.setattr(simulation, "update_scheme", lambda cfg, board, names: _undrawn(everyone(cfg, board, names)))
    result = run_study(fleet(tmp_path), run_dir=tmp_path / "run", progress=False)
    assert all(len(r["accepted"]) == 12 for r in result.rounds)
    report = verify_run(tmp_path / "run")
    failed = [f for f in report.findings if not f.ok]
    assert not report.ok and any(f.check == "rejections screened again" for f in failed), failed


def _undrawn(scheme):
    """The scheme with every member drawn for every round."""
    scheme.draw = ClientDraw()
    return scheme


@pytest.mark.parametrize("architecture, secure_aggregation", [("semi", "none"), ("loose", "secagg")])
def test_dropouts_and_stragglers_miss_their_rounds_and_the_rest_go_on(tmp_path, architecture, secure_aggregation):
    cfg = fleet(tmp_path, architecture, faults={"dropout": 0.25, "straggler": 0.25})
    cfg = config_from_dict({**cfg.to_dict(), "privacy": {"secure_aggregation": secure_aggregation}}, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    faults = Faults(dropout=0.25, straggler=0.25, seed=11)
    missed = 0
    for entry in result.rounds:
        drawn, by_address = drawn_names(cfg, tmp_path / "run", entry["round"])
        on_time = {n for n in drawn if faults.fate(entry["round"], n) == "on time"}
        missed += len(drawn - on_time)
        if secure_aggregation == "secagg" and len(on_time) < 3:
            on_time = set()    # too few keys to mask with: everyone sits the round out, which ends empty
        assert {by_address[a] for a in entry["accepted"]} == on_time
    assert missed > 0
    report = verify_run(tmp_path / "run")
    assert report.ok, [f for f in report.findings if not f.ok]


def test_a_fraction_that_would_stall_a_round_is_refused_with_its_odds(tmp_path):
    cfg = config_from_dict({"study": {"rounds": 5, "architecture": "semi"}, "protocol": {"sample_fraction": 0.5}},
                           base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"sample_fraction = 0.5 draws fewer than the 1 update\(s\) a round needs "
                                          r"from 4 members in some round of 5 with probability 0.28"):
        run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "chain").exists()


@pytest.mark.parametrize("section, values, message", [
    ("protocol", {"sample_fraction": 0.0}, "sample_fraction must be above 0 and at most 1"),
    ("protocol", {"sample_fraction": 1.5}, "sample_fraction must be above 0 and at most 1"),
    ("faults", {"dropout": 1.0}, r"\[faults\].dropout must be a probability"),
    ("faults", {"straggler": -0.1}, r"\[faults\].straggler must be a probability"),
    ("faults", {"dropout": 0.5, "straggler": 0.5}, "dropout \\+ straggler must be below 1"),
])
def test_bad_sampling_and_fault_settings_are_refused(section, values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({section: values})
