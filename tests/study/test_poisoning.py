"""Attacked studies on the embedded chain, end to end: validation and the reputation policy act on
chain, and `audit verify` checks every rejection, re-screens the updates and replays reputation."""

import dataclasses
import json

import pytest

from fedledger.audit import verify_run
from fedledger.config import config_from_dict
from fedledger.protocol import Coordinator
from fedledger.rundir import RunDir
from fedledger.simulation import run_study
from fedledger.validation import Reason, Rejection


def _cfg(tmp_path, architecture="loose", rounds=6, **sections):
    raw = {"study": {"name": "poisoned", "seed": 3, "rounds": rounds, "architecture": architecture},
           "data": {"dataset": "breast_cancer", "num_clients": 6, "validation_fraction": 0.2},
           "training": {"lr": 0.05, "batch_size": 8, "local_steps": 20},
           "attack": {"kind": "scale", "fraction": 0.34, "scale": 50.0}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return config_from_dict(raw, base_dir=tmp_path)


def _names(result):
    return RunDir(result.run_dir).read_run_info()["institutions"]


def test_outliers_lose_reputation_until_the_contract_suspends_them(tmp_path):
    result = run_study(_cfg(tmp_path, validation={"outlier_factor": 4.0}, protocol={"suspension_threshold": 50}),
                       run_dir=tmp_path / "run", progress=False)
    names = _names(result)
    attackers = {names[n] for n in result.attackers}
    assert len(attackers) == 2
    # rejected as outliers from round 1; three rejections suspend, after which they are refused as suspended
    codes = {(r["round"], x["institution"]): x["code"] for r in result.rounds for x in r["rejected"]}
    for address in attackers:
        assert [codes[(n, address)] for n in range(1, 7)] == [Reason.OUTLIER] * 3 + [Reason.SUSPENDED] * 3
        assert all(address not in r["accepted"] for r in result.rounds)
    assert result.suspended == {name: 3 for name in result.attackers}      # no honest member suspended
    assert json.loads((result.run_dir / "results.json").read_text())["suspended"] == result.suspended
    assert all(len(r["accepted"]) == 4 for r in result.rounds)
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()


def test_a_norm_bound_rejects_the_scaled_updates_on_every_architecture(tmp_path):
    for architecture in ("semi", "full"):
        result = run_study(_cfg(tmp_path / architecture, architecture, rounds=2,
                                validation={"max_update_norm": 5.0}),
                           run_dir=tmp_path / architecture / "run", progress=False)
        attackers = {_names(result)[n] for n in result.attackers}
        for r in result.rounds:
            assert {x["institution"]: x["code"] for x in r["rejected"]} == \
                {a: Reason.NORM_ABOVE_BOUND for a in attackers}
        report = verify_run(result.run_dir)
        assert report.ok, report.summary()


def test_the_audit_catches_a_coordinator_that_rejects_an_honest_update(tmp_path, monkeypatch):
    honest_screen = Coordinator.screen

    def censoring_screen(self, task, submissions):
        accepted, rejected = honest_screen(self, task, submissions)
        victim = accepted[0]
        c = victim.commitment
        fake = Rejection(victim.institution, Reason.OUTLIER, "far from the others (it is not)", c.update,
                         c.num_samples)
        return accepted[1:], rejected + [fake]

    monkeypatch.setattr(Coordinator, "screen", censoring_screen)
    result = run_study(_cfg(tmp_path, rounds=2, attack={"kind": "none", "fraction": 0.0}),
                       run_dir=tmp_path / "run", progress=False)
    failures = {(f.subject, f.check) for f in verify_run(result.run_dir).failures}
    assert failures == {("round 1", "rejections screened again"), ("round 2", "rejections screened again")}


@pytest.mark.parametrize("strategy", [{"strategy": "multikrum", "params": {"byzantine": 2}},
                                      {"strategy": "normclip", "params": {"bound": 0.0}}])
def test_robust_rules_are_recomputed_by_the_audit(tmp_path, strategy):
    cfg = _cfg(tmp_path, "semi", rounds=2, aggregation=strategy)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    assert dataclasses.asdict(cfg.aggregation)["strategy"] == strategy["strategy"]


def test_a_malformed_submission_is_anchored_and_audits_clean(tmp_path, monkeypatch):
    """What a deployed coordinator does with a document it cannot parse: a rejection naming no
    update, on chain like any other, which the audit accepts without anything to screen again."""
    honest_screen = Coordinator.screen
    outsider = "0x" + "ab" * 20

    def screen_with_malformed(self, task, submissions):
        accepted, rejected = honest_screen(self, task, submissions)
        return accepted, rejected + [Rejection(outsider, Reason.BAD_SIGNATURE, "malformed signed update")]

    monkeypatch.setattr(Coordinator, "screen", screen_with_malformed)
    result = run_study(_cfg(tmp_path, rounds=2, attack={"kind": "none", "fraction": 0.0}),
                       run_dir=tmp_path / "run", progress=False)
    assert all(r["rejected"] == [{"institution": outsider, "code": Reason.BAD_SIGNATURE, "update": None,
                                  "num_samples": None, "reason": "malformed signed update"}] for r in result.rounds)
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
