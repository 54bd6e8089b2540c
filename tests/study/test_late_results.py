"""A committee member or validator whose correct answer lands after its round finalized is
judged against the finalized result, and agrees with it (issue 14, finding 8: a deployed member
aggregated from the model its round had just finalized, `latest_model`, and lost 50 reputation)."""

from fedledger.audit import verify_run
from fedledger.chain import Phase, SemiStudy, open_chain
from fedledger.protocol import CommitteeMember
from fedledger.protocol.aggregate import reason_codes
from fedledger.protocol.context import waiting
from fedledger.rundir import RunDir
from fedledger.simulation import run_study


def test_a_late_but_correct_committee_result_is_not_a_dissent(tmp_path, monkeypatch, make_study):
    honest_step = CommitteeMember.step
    late: dict[str, tuple[int, int]] = {}     # member -> (round, draw) it answers only once finalized
    answered_late: list[str] = []

    def step(self):
        study, ctx = self.ctx.study, self.ctx
        if ctx.address in late:
            r, attempt = late[ctx.address]
            if study.finalized(r) is None:
                return waiting(f"round {r}: the others' results (answering late)")
            result = self.result(r)
            del late[ctx.address]
            answered_late.append(ctx.address)
            self.submitted.add((r, attempt))
            study.submit_result(ctx.account, r, attempt, result.model, result.manifest_digest,
                                reason_codes(study.commitments(r), result.manifest))
            return honest_step(self)
        r = study.round_count() + 1
        if r == 1 and not self.submitted and study.phase() == Phase.AGGREGATING:
            committee = study.committee(r, study.attempt())
            if ctx.address == committee[-1]:          # the last one drawn in round 1 answers late
                late[ctx.address] = (r, study.attempt())
                return waiting(f"round {r}: the others' results (answering late)")
        return honest_step(self)

    monkeypatch.setattr(CommitteeMember, "step", step)
    cfg = make_study(tmp_path, study={"architecture": "semi", "rounds": 2}, protocol={"committee_size": 3})
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert not late and len(result.rounds) == 2
    report = verify_run(result.run_dir)
    assert report.ok, report.failures
    run = RunDir(result.run_dir)
    info = run.read_run_info()
    backend = open_chain(info["chain"], run.chain)
    try:
        changes = SemiStudy(backend, info["contracts"]["ledger"]).events("ReputationChanged", round=1)
    finally:
        backend.close()
    (late_member,) = answered_late
    assert [e["reason"] for e in changes if e["member"] == late_member and e["reason"] in ("agreed", "disagreed")] \
        == ["agreed"]
