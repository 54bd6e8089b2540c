"""Secure aggregation in studies, end to end. Masking: the keys, shares and reveals are on chain,
the aggregate is bit for bit the plain one, dropouts after sharing are unmasked, and `audit
verify` redoes the unmasking. CKKS: the coordinator adds ciphertexts, a member decrypts the sum,
the model is within float rounding of the plain one, and the audit re-adds the ciphertexts."""

import numpy as np
import pytest

from fedledger.audit import verify_run
from fedledger.chain import open_chain
from fedledger.chain.loose import LooseStudy
from fedledger.chain.rounds import SemiStudy
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM, REVEAL, SHARES
from fedledger.privacy import ckks
from fedledger.protocol.masking import MASKED, Masking
from fedledger.rundir import RunDir
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.validation import Reason

WRAPPERS = {"loose": LooseStudy, "semi": SemiStudy}


def _run(make_study, tmp_path, architecture, secure, **sections):
    cfg = make_study(tmp_path / f"{architecture}-{secure}", study={"architecture": architecture, "rounds": 2},
                     privacy={**sections.pop("privacy", {}), "secure_aggregation": secure}, **sections)
    return run_study(cfg, run_dir=tmp_path / f"{architecture}-{secure}" / "run", progress=False)


def _board(run_dir):
    info = RunDir(run_dir).read_run_info()
    backend = open_chain(info["chain"], RunDir(run_dir).chain)
    return backend, WRAPPERS[info["architecture"]](backend, info["contracts"]["ledger"])


@pytest.mark.parametrize("architecture", ["loose", "semi"])
def test_masked_updates_aggregate_to_the_plain_model_and_audit(make_study, tmp_path, architecture):
    plain = _run(make_study, tmp_path, architecture, "none")
    secure = _run(make_study, tmp_path, architecture, "secagg")
    assert [r["model"] for r in secure.rounds] == [r["model"] for r in plain.rounds]
    store = ArtifactStore(RunDir(secure.run_dir).store)
    backend, board = _board(secure.run_dir)
    try:
        for r in secure.rounds:
            manifest = store.get_json(r["manifest"])
            record = manifest["secure_aggregation"]
            members = set(board.advertised_keys(r["round"]))
            shares = {p.member: p.value for p in board.data_posts(r["round"], SHARES)}
            assert len(members) == 4 and set(shares) == members
            assert record["shares"] == {m: sha256_hex(data) for m, data in shares.items()}     # the shares, on chain
            assert set(record["reveals"]) == {p.member for p in board.data_posts(r["round"], REVEAL)} == members
            assert record["dropped"] == [] and sorted(record["senders"]) == sorted(members)
            for entry in manifest["updates"]:     # what the aggregator holds is masked, not parameters
                assert set(store.get_arrays(entry["update"])) == {MASKED}
    finally:
        backend.close()
    report = verify_run(secure.run_dir)
    assert report.ok, report.summary()
    assert any(f.check == "keys and shares are the ones logged on chain" and f.ok for f in report.findings)


def test_a_member_dropping_out_after_sharing_is_unmasked(make_study, tmp_path):
    short = {"commit_window": 5, "result_window": 5}    # the dropout makes each round wait out its window
    plain = _run(make_study, tmp_path, "semi", "none", faults={"no_update": 1}, protocol=short)
    secure = _run(make_study, tmp_path, "semi", "secagg", faults={"no_update": 1}, protocol=short)
    assert [r["model"] for r in secure.rounds] == [r["model"] for r in plain.rounds]
    dropped = RunDir(secure.run_dir).read_run_info()["institutions"]["cleveland"]
    store = ArtifactStore(RunDir(secure.run_dir).store)
    for r in secure.rounds:
        assert store.get_json(r["manifest"])["secure_aggregation"]["dropped"] == [dropped]
    report = verify_run(secure.run_dir)
    assert report.ok, report.summary()


def test_a_malformed_masked_update_is_rejected_and_its_masks_removed(make_study, tmp_path, monkeypatch):
    honest = Masking.protect
    sent = []

    def first_one_broken(self, ctx, task, params, num_samples):
        sent.append(ctx.address)
        if len(sent) == 1:
            return ctx.store.put_arrays({MASKED: np.zeros(3, dtype=np.int64)})
        return honest(self, ctx, task, params, num_samples)

    monkeypatch.setattr(Masking, "protect", first_one_broken)
    result = _run(make_study, tmp_path, "loose", "secagg")
    first = result.rounds[0]
    assert [(x["institution"], x["code"]) for x in first["rejected"]] == [(sent[0], Reason.WRONG_LAYOUT)]
    store = ArtifactStore(RunDir(result.run_dir).store)
    assert store.get_json(first["manifest"])["secure_aggregation"]["dropped"] == [sent[0]]
    assert len(first["accepted"]) == 3
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()


def test_a_lost_reveal_fails_the_audit(make_study, tmp_path):
    result = _run(make_study, tmp_path, "loose", "secagg")
    store = ArtifactStore(RunDir(result.run_dir).store)
    reveal = next(iter(store.get_json(result.rounds[0]["manifest"])["secure_aggregation"]["reveals"].values()))
    path = store._path(reveal)   # lost from the store: nothing else changes
    path.unlink()
    report = verify_run(result.run_dir)
    assert [f.check for f in report.failures] == ["aggregation recomputed"]


def test_with_the_ledger_off_and_client_level_dp(make_study, tmp_path):
    dp = {"mechanism": "dp-fedavg", "epsilon": 8.0}
    plain = _run(make_study, tmp_path, "loose", "none", chain={"enabled": False}, privacy=dp)
    secure = _run(make_study, tmp_path, "loose", "secagg", chain={"enabled": False}, privacy=dp)
    assert [r["model"] for r in secure.rounds] == [r["model"] for r in plain.rounds]
    assert all(len(r["accepted"]) == 4 for r in secure.rounds)


def test_ckks_the_coordinator_adds_ciphertexts_and_a_member_decrypts(make_study, tmp_path):
    plain = _run(make_study, tmp_path, "loose", "none")
    secure = _run(make_study, tmp_path, "loose", "ckks")
    run = RunDir(secure.run_dir)
    store = ArtifactStore(run.store)
    for p, s in zip(plain.rounds, secure.rounds):   # CKKS is approximate: close to the plain model
        assert np.abs(store.get_params(s["model"]) - ArtifactStore(RunDir(plain.run_dir).store).get_params(p["model"])
                      ).max() < 1e-6
    backend, board = _board(secure.run_dir)
    try:
        (dealer, context), = board.secagg_posts(1, CKKS_CONTEXT).items()
        assert list(board.secagg_posts(1, CKKS_KEYS)) == [dealer] and len(board.advertised_keys(1)) == 4
        assert board.secagg_posts(2, CKKS_CONTEXT) == {}
        for r in secure.rounds:
            record = store.get_json(r["manifest"])["secure_aggregation"]
            assert record["scheme"] == "ckks/1" and record["context"] == context
            assert board.secagg_posts(r["round"], CKKS_SUM) == {record["decrypted_by"]: record["decrypted_sum"]}
            for entry in store.get_json(r["manifest"])["updates"]:
                assert store.get(entry["update"]).startswith(b"FLCKKS")     # ciphertexts, not parameters
    finally:
        backend.close()
    report = verify_run(secure.run_dir)
    assert report.ok, report.summary()
    assert any(f.check == "CKKS context is the one logged on chain" and f.ok for f in report.findings)


def test_ckks_an_update_under_other_keys_is_rejected(make_study, tmp_path, monkeypatch):
    honest = ckks.encrypt
    calls = []

    def first_under_other_keys(public_context, values):
        calls.append(1)
        return honest(ckks.CkksKeys.generate().public_context() if len(calls) == 1 else public_context, values)

    monkeypatch.setattr(ckks, "encrypt", first_under_other_keys)
    result = _run(make_study, tmp_path, "loose", "ckks")
    first = result.rounds[0]
    assert [x["code"] for x in first["rejected"]] == [Reason.INVALID_FORMAT]
    assert "another key set" in first["rejected"][0]["reason"] and len(first["accepted"]) == 3
    assert verify_run(result.run_dir).ok
