"""Differentially private studies on the embedded chain, end to end: every member's spend is on
chain with its mechanism, the contract holds the budget, and `audit verify` recomputes every
epsilon and catches a member that understates its spend or runs another mechanism."""

import dataclasses
import json
import math

import pytest

from fedledger.audit import verify_run
from fedledger.chain import open_chain
from fedledger.chain.loose import LooseStudy
from fedledger.chain.rounds import SemiStudy, FullStudy
from fedledger.privacy.accountant import Mechanism, epsilon_micro
from fedledger.protocol.privacy import MemberPrivacy, PrivacyPlan
from fedledger.rundir import RunDir
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore

WRAPPERS = {"loose": LooseStudy, "semi": SemiStudy, "full": FullStudy}


def _cfg(make_study, tmp_path, architecture="loose", rounds=3, **privacy):
    return make_study(tmp_path, study={"architecture": architecture, "rounds": rounds},
                      data={"validation_fraction": 0.2},
                      privacy={"mechanism": "dp-sgd", "epsilon": 3.0, **privacy})


def _spends(run_dir):
    """Every PrivacySpent record of the run's study contract, and the contract's budget."""
    info = RunDir(run_dir).read_run_info()
    backend = open_chain(info["chain"], RunDir(run_dir).chain)
    try:
        study = WRAPPERS[info["architecture"]](backend, info["contracts"]["ledger"])
        names = {address: name for name, address in info["institutions"].items()}
        return study.privacy_spends(), (study.epsilon_budget(), study.delta()), names
    finally:
        backend.close()


def _failed(report, check):
    return [f for f in report.failures if f.check == check]


@pytest.mark.parametrize("architecture", ["loose", "semi", "full"])
def test_each_release_is_on_chain_and_the_audit_recomputes_its_epsilon(make_study, tmp_path, architecture):
    result = run_study(_cfg(make_study, tmp_path, architecture), run_dir=tmp_path / "run", progress=False)
    spends, budget, names = _spends(result.run_dir)
    assert budget == (3_000_000, 10**13)
    assert len(spends) == 4 * 3 and {s.round for s in spends} == {1, 2, 3}
    for name, spent in result.privacy.items():
        mine = [s.spend for s in spends if names[s.member] == name]
        history = [Mechanism(m.noise_multiplier, m.sample_rate, m.steps) for m in mine]
        # calibrated: the three releases spend the budget, and no more
        assert [m.epsilon for m in mine] == [epsilon_micro(history[:i + 1], 1e-5) for i in range(3)]
        assert 2.95 < spent["epsilon"] <= 3.0 and mine[-1].epsilon == math.ceil(spent["epsilon"] * 1e6)
        assert spent["releases"] == 3 and mine[0].steps == 20
    assert json.loads((result.run_dir / "results.json").read_text())["privacy"] == result.privacy
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    checks = [f for f in report.findings if f.check == "epsilon recomputed from the recorded mechanisms"]
    assert len(checks) == 12 and all(f.ok for f in checks)


def test_the_same_seed_gives_the_same_private_model_on_every_architecture(make_study, tmp_path):
    models = {a: run_study(_cfg(make_study, tmp_path / a, a, rounds=2), run_dir=tmp_path / a / "run",
                           progress=False).rounds[-1]["model"] for a in ("loose", "semi")}
    assert models["loose"] == models["semi"]


def test_a_member_understating_its_spend_is_caught(make_study, tmp_path, monkeypatch):
    honest = MemberPrivacy.release

    def understated(self, round):
        spend = honest(self, round)
        return dataclasses.replace(spend, epsilon=spend.epsilon - 1000)

    monkeypatch.setattr(MemberPrivacy, "release", understated)
    result = run_study(_cfg(make_study, tmp_path, rounds=2), run_dir=tmp_path / "run", progress=False)
    report = verify_run(result.run_dir)
    assert len(_failed(report, "epsilon recomputed from the recorded mechanisms")) == 8


def test_a_member_running_less_noise_than_the_config_says_is_caught(make_study, tmp_path, monkeypatch):
    prescribed = PrivacyPlan.release

    def weaker(self, num_samples, training):
        m = prescribed(self, num_samples, training)
        return Mechanism(m.noise_micro * 9 // 10, m.rate_ppb, m.steps)

    with monkeypatch.context() as patch:
        patch.setattr(PrivacyPlan, "release", weaker)
        result = run_study(_cfg(make_study, tmp_path, "semi", rounds=3), run_dir=tmp_path / "run", progress=False)
    # with less noise the budgets run out early: the study ends when too few can afford a round
    report = verify_run(result.run_dir)
    assert _failed(report, "mechanism is the config's")
    assert not _failed(report, "epsilon recomputed from the recorded mechanisms")


def test_a_spent_budget_ends_the_study_early(make_study, tmp_path):
    # noise 1.2 at full participation: about 2.5 epsilon a release for dp-fedavg, two fit in 6
    cfg = make_study(tmp_path, study={"rounds": 5}, protocol={"min_participants": 2},
                     privacy={"mechanism": "dp-fedavg", "epsilon": 6.0, "noise_multiplier": 1.2})
    per_release = [epsilon_micro([Mechanism.of(1.2, 1.0, 1)] * k, 1e-5) for k in (1, 2, 3)]
    assert per_release[1] <= 6_000_000 < per_release[2]
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert len(result.rounds) == 2 and "ended after round 2" in result.stopped
    assert json.loads((result.run_dir / "results.json").read_text())["stopped"] == result.stopped
    assert all(p["releases"] == 2 for p in result.privacy.values())
    assert verify_run(result.run_dir).ok


def test_dp_fedavg_weighs_members_alike_and_audits_the_noise(make_study, tmp_path):
    cfg = make_study(tmp_path, study={"architecture": "semi", "rounds": 2}, protocol={"min_participants": 4},
                     privacy={"mechanism": "dp-fedavg", "epsilon": 8.0, "max_grad_norm": 0.5})
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    spends, _, _ = _spends(result.run_dir)
    assert {(s.spend.sample_rate, s.spend.steps) for s in spends} == {(10**9, 1)}
    store = ArtifactStore(RunDir(result.run_dir).store)
    for r in result.rounds:
        assert {e["num_samples"] for e in store.get_json(r["manifest"])["updates"]} == {1}
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    assert [f.ok for f in report.findings if f.check == "DP-FedAvg noise complete"] == [True, True]
