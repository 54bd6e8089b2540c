"""A coordinator that lies still anchors consistent-looking records; the auditor and nodes catch it."""

import numpy as np
import pytest
from eth_account import Account

import fedledger.protocol.aggregate as aggregate_module
from fedledger.audit import verify_run
from fedledger.crypto import UpdateCommitment, sign_commitment
from fedledger.errors import FedLedgerError
from fedledger.simulation import run_study


def _failed_checks(run_dir):
    report = verify_run(run_dir)
    return {(f.subject, f.check) for f in report.failures}


def test_falsified_aggregate_is_caught(tmp_path, monkeypatch, make_study):
    honest = aggregate_module.aggregate_round
    calls = []

    def nudged(*args, **kwargs):
        params, state = honest(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # round 2: quietly shift the global model
            params = (params + np.float32(1e-3)).astype(np.float32)
        return params, state

    monkeypatch.setattr(aggregate_module, "aggregate_round", nudged)
    result = run_study(make_study(tmp_path), run_dir=tmp_path / "run", progress=False)
    failed = _failed_checks(result.run_dir)
    assert ("round 2", "aggregation recomputed") in failed
    assert not any(subject in ("round 1", "round 3") for subject, _ in failed)


def test_forged_signature_is_caught(tmp_path, monkeypatch, make_study):
    honest = aggregate_module.build_manifest

    def forged(**kwargs):
        manifest = honest(**kwargs)
        if kwargs["round"] == 1:  # claim institution 0's update but sign with some other key
            entry = manifest["updates"][0]
            c = UpdateCommitment(0, "0x" + "00" * 20, 1, kwargs["parent_model"], entry["update"], entry["num_samples"])
            entry["signature"] = sign_commitment(Account.create(), c)
        return manifest

    monkeypatch.setattr(aggregate_module, "build_manifest", forged)
    result = run_study(make_study(tmp_path), run_dir=tmp_path / "run", progress=False)
    first = sorted(result.rounds[0]["accepted"], key=str.lower)[0]
    assert _failed_checks(result.run_dir) == {(f"round 1 update of {first}", "signature by the institution")}


def test_an_unsigned_entry_is_caught_not_a_crash(tmp_path, monkeypatch, make_study):
    honest = aggregate_module.build_manifest

    def unsigned(**kwargs):
        manifest = honest(**kwargs)
        if kwargs["round"] == 2:
            del manifest["updates"][0]["signature"]
        return manifest

    monkeypatch.setattr(aggregate_module, "build_manifest", unsigned)
    result = run_study(make_study(tmp_path), run_dir=tmp_path / "run", progress=False)
    first = sorted(result.rounds[1]["accepted"], key=str.lower)[0]
    assert _failed_checks(result.run_dir) == {(f"round 2 update of {first}", "signature by the institution")}


def test_nodes_notice_a_root_that_leaves_them_out(tmp_path, monkeypatch, make_study):
    honest = aggregate_module.build_manifest

    def drop_one(**kwargs):
        manifest = honest(**kwargs)
        manifest["updates_root"] = honest(**{**kwargs, "entries": kwargs["entries"][1:]})["updates_root"]
        return manifest

    monkeypatch.setattr(aggregate_module, "build_manifest", drop_one)
    with pytest.raises(FedLedgerError, match="missing from the anchored Merkle root"):
        run_study(make_study(tmp_path), run_dir=tmp_path / "run", progress=False)


def test_a_made_up_rejection_of_an_honest_update_is_caught(tmp_path, monkeypatch, make_study):
    """A coordinator holds each institution's signed update, so the contract takes it as
    evidence for a penalty; rejecting an honest update as an outlier still fails the audit,
    which screens the update again (issue 14, finding 2)."""
    from fedledger.protocol import Coordinator
    from fedledger.validation import Reason, Rejection

    honest = Coordinator.screen

    def made_up(self, task, submissions):
        accepted, rejected = honest(self, task, submissions)
        if task.round == 1:
            victim = accepted.pop(0)
            rejected = [*rejected, Rejection.of(victim.candidate(), Reason.OUTLIER, "made up")]
        return accepted, rejected

    monkeypatch.setattr(Coordinator, "screen", made_up)
    result = run_study(make_study(tmp_path), run_dir=tmp_path / "run", progress=False)
    assert [r["code"] for r in result.rounds[0]["rejected"]] == [int(Reason.OUTLIER)]
    assert _failed_checks(result.run_dir) == {("round 1", "rejections screened again")}
