"""A real study on the embedded EVM, then the auditor, then every kind of tampering it must catch."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fedledger.audit import verify_run
from fedledger.cli.main import main
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore


def test_run_directory_holds_everything_an_auditor_needs(finished_run):
    run = finished_run.run_dir
    for name in ["run.json", "config.json", "metrics.jsonl", "metrics.png", "results.json", "store", "chain"]:
        assert (run / name).exists(), name
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["round"] for e in lines] == [1, 2, 3]
    for entry in lines:
        assert entry["transactions"] == 1          # loose: one anchor per round
        assert entry["gas"] > 21000
        assert len(entry["accepted"]) == 4 and entry["rejected"] == []
        per = entry["metrics"]["per_institution"]
        assert set(per) == {"cleveland", "hungarian", "switzerland", "va"}
        assert 0.0 <= entry["metrics"]["pooled"]["accuracy"] <= 1.0
    assert (run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_of_an_untouched_run_passes(finished_run):
    report = verify_run(finished_run.run_dir)
    assert report.ok, report.summary()
    assert report.rounds == 3
    checks = {f.check for f in report.findings}
    assert {"aggregation recomputed", "signature by the institution", "Merkle root of the updates",
            "parent is the previous round's model", "institution was a member when anchored"} <= checks


def test_audit_in_another_process_after_the_run_exited(finished_run):
    proc = subprocess.run([sys.executable, "-m", "fedledger", "audit", "verify", str(finished_run.run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


def test_seeded_study_is_reproducible(finished_run, tmp_path, make_study):
    again = run_study(make_study(tmp_path), run_dir=tmp_path / "again", progress=False)
    assert [r["model"] for r in again.rounds] == [r["model"] for r in finished_run.rounds]


def _blob(run, digest):
    return run / "store" / digest[:2] / digest[2:]


def _failures(run):
    report = verify_run(run)
    assert not report.ok
    return [(f.subject, f.check, f.detail) for f in report.failures]


def _manifest(run, round):
    store = ArtifactStore(run / "store")
    line = (run / "metrics.jsonl").read_text().splitlines()[round - 1]
    return store.get_json(json.loads(line)["manifest"])


def test_tampered_model_blob_is_caught(run_copy):
    model = _manifest(run_copy, 2)["model"]
    path = _blob(run_copy, model)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    failures = _failures(run_copy)
    assert ("round 2", "global model artifact intact") in [(s, c) for s, c, _ in failures]
    assert any("corrupt" in d for _, _, d in failures)


def test_substituted_update_is_caught(run_copy):
    """An update replaced by other, perfectly valid parameters: the digest no longer matches."""
    entry = _manifest(run_copy, 1)["updates"][0]
    store = ArtifactStore(run_copy / "store")
    params = store.get_params(entry["update"])
    other = store.put_params((params + np.float32(0.5)).astype(np.float32))
    _blob(run_copy, entry["update"]).write_bytes(_blob(run_copy, other).read_bytes())
    failures = _failures(run_copy)
    assert (f"round 1 update of {entry['institution']}", "update artifact intact") in [(s, c) for s, c, _ in failures]


def test_missing_update_is_caught(run_copy):
    entry = _manifest(run_copy, 3)["updates"][-1]
    _blob(run_copy, entry["update"]).unlink()
    failures = _failures(run_copy)
    assert any(s == f"round 3 update of {entry['institution']}" and "not in the store" in d for s, _, d in failures)


def test_rewritten_manifest_is_caught(run_copy):
    """Editing the manifest (e.g. to claim other sample counts) breaks its digest on chain."""
    manifest_digest = json.loads((run_copy / "metrics.jsonl").read_text().splitlines()[0])["manifest"]
    path = _blob(run_copy, manifest_digest)
    path.write_bytes(path.read_bytes().replace(b'"num_samples":199', b'"num_samples":999'))
    assert ("round 1", "manifest artifact intact") in [(s, c) for s, c, _ in _failures(run_copy)]


def test_edited_chain_history_is_caught(run_copy):
    """Rewriting a transaction in the persisted chain (e.g. to change an anchored digest) fails the reopen."""
    log = run_copy / "chain" / "blocks.jsonl"
    lines = log.read_text().splitlines()
    block = json.loads(lines[-1])                          # the last round's anchor
    tx = block["transactions"][0]
    block["transactions"][0] = tx[:-80] + ("0" if tx[-80] != "0" else "1") + tx[-79:]
    lines[-1] = json.dumps(block, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    failures = _failures(run_copy)
    assert [s for s, _, _ in failures] == ["chain"]
    assert "block" in failures[0][2]



@pytest.mark.parametrize("field, value, fragment", [
    ("contracts", None, "contracts must name the consortium and ledger"),
    ("contracts", {"ledger": "0x" + "11" * 20}, "contracts.consortium is None, not an Ethereum address"),
    ("contracts.consortium", "nope", "contracts.consortium is 'nope', not an Ethereum address"),
    ("contracts.ledger", "nope", "contracts.ledger is 'nope', not an Ethereum address"),
    ("chain", "embedded", "chain must be an object"),
    ("chain", {"kind": "rpc", "chain_id": 31337}, "chain.rpc_url must be the node's URL, got None"),
    ("architecture", ["semi"], "architecture is ['semi']; allowed: loose, semi, full"),
    ("peers", "http://127.0.0.1:1", "peers must be a list of endpoint URLs"),
])
def test_a_malformed_run_description_is_one_clear_line(run_copy, capsys, field, value, fragment):
    """run.json is checked once, before anyone reads it: the CLI prints one line, no traceback."""
    path = run_copy / "run.json"
    info = json.loads(path.read_text())
    table, _, key = field.rpartition(".")
    (info[table] if table else info)[key] = value
    path.write_text(json.dumps(info))
    assert main(["audit", "verify", str(run_copy)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedledger: error: ") and fragment in lines[0], lines
    assert str(path) in lines[0]


def test_without_the_ledger_the_study_runs_and_the_audit_says_there_is_nothing_to_verify(make_study, tmp_path):
    result = run_study(make_study(tmp_path, chain={"enabled": False}, study={"rounds": 1}),
                       run_dir=tmp_path / "off", progress=False)
    assert result.rounds[0]["transactions"] == 0 and not (result.run_dir / "chain").exists()
    report = verify_run(result.run_dir)
    assert not report.ok and "ledger switched off" in report.failures[0].detail


def test_a_rebuilt_chain_lacks_the_head_the_run_printed(finished_run, make_study, tmp_path):
    """Anyone holding a run directory could rebuild a consistent chain from scratch; the head hash
    recorded elsewhere at the end of the run tells the real one apart."""
    assert verify_run(finished_run.run_dir, expected_head=finished_run.chain_head).ok
    other = run_study(make_study(tmp_path, study={"rounds": 1}), run_dir=tmp_path / "other", progress=False)
    report = verify_run(finished_run.run_dir, expected_head=other.chain_head)
    assert [(f.subject, f.check) for f in report.failures] == [("chain", "contains the expected head block")]
    assert not verify_run(finished_run.run_dir, expected_head="0x1234").ok


def test_institution_names_in_run_json_must_be_the_chains(run_copy):
    """Issue 14, finding 12: run.json's names were trusted; reports show them."""
    path = run_copy / "run.json"
    info = json.loads(path.read_text())
    (first, address), *_ = info["institutions"].items()
    info["institutions"] = {**{k: v for k, v in info["institutions"].items() if k != first}, "Mallory": address}
    path.write_text(json.dumps(info))
    report = verify_run(run_copy)
    assert [(f.subject, f.check) for f in report.failures] == [("study", "run.json's institution names are the "
                                                                         "consortium's")]
    assert f"Mallory ({address})" in report.failures[0].detail


def test_the_audit_says_what_it_did_not_verify(finished_run):
    """Without the head hash kept elsewhere, a rebuilt chain would pass: the summary says so
    rather than implying the chain was proven (issue 14, finding 5, in part)."""
    without = verify_run(finished_run.run_dir).summary()
    assert "NOT VERIFIED: that this is the chain the run ended on" in without
    assert "NOT VERIFIED" not in verify_run(finished_run.run_dir, expected_head=finished_run.chain_head).summary()


# --- what a user reads (issue 14, finding 4) ---------------------------------------------------


def _edit_json(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, sort_keys=True))


def _edit_lines(path, round, change):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines[round - 1])
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in lines))


def test_every_file_a_reader_sees_is_checked(finished_run):
    checks = {(f.subject, f.check) for f in verify_run(finished_run.run_dir).findings if f.ok}
    assert {("run directory", "config.json is the anchored config"),
            ("run directory", "results.json's final figures and rounds are metrics.jsonl's"),
            ("run directory", "metrics.png plots metrics.jsonl"),
            ("run directory", "preprocessing.json is what the study's public data gives"),
            ("round 3", "metrics.jsonl's figures summarize signed evaluations"),
            ("round 3", "the final model's evaluations on chain are metrics.jsonl's"),
            ("round 2", "metrics summarize signed evaluations of the parent")} <= checks


def test_an_edited_final_table_is_caught(run_copy):
    _edit_json(run_copy / "results.json", lambda d: d["final"]["pooled"].update(accuracy=0.97))
    assert [f[:2] for f in _failures(run_copy)] == [
        ("run directory", "results.json's final figures and rounds are metrics.jsonl's")]


def test_an_edited_scaling_of_a_vendored_dataset_is_caught(run_copy):
    _edit_json(run_copy / "preprocessing.json", lambda d: next(iter(d["scaling"].values()))["mean"].__setitem__(0, 1.0))
    assert [f[:2] for f in _failures(run_copy)] == [
        ("run directory", "preprocessing.json is what the study's public data gives")]


def test_edited_round_figures_are_caught_even_when_every_file_agrees(run_copy):
    _edit_lines(run_copy / "metrics.jsonl", 3, lambda e: e["metrics"]["pooled"].update(accuracy=0.97))
    _edit_json(run_copy / "results.json", lambda d: d["final"]["pooled"].update(accuracy=0.97))
    failures = [f[:2] for f in _failures(run_copy)]
    assert ("round 3", "metrics.jsonl's figures summarize signed evaluations") in failures
    assert ("run directory", "metrics.png plots metrics.jsonl") in failures     # the plot shows the old figure


def test_a_forged_evaluation_in_metrics_jsonl_is_caught(run_copy):
    """A reader's figures can only come from evaluations the institutions signed: a new document
    with better figures, stored and named in metrics.jsonl, is not signed by its institution."""
    store = ArtifactStore(run_copy / "store")
    line = json.loads((run_copy / "metrics.jsonl").read_text().splitlines()[1])
    doc = store.get_json(line["evaluations"]["va"])
    forged = store.put_json({**doc, "figures": {**doc["figures"], "loss": doc["figures"]["loss"] / 2}})
    _edit_lines(run_copy / "metrics.jsonl", 2, lambda e: e["evaluations"].update(va=forged))
    assert ("round 2", "evaluation by va in metrics.jsonl intact and signed by its institution",
            "not a signed evaluation: the signature is not the institution's") in _failures(run_copy)


def test_a_replaced_plot_is_caught(run_copy, tmp_path):
    (run_copy / "metrics.png").write_bytes((run_copy / "metrics.png").read_bytes()[:-10] + b"\0" * 10)
    assert [f[:2] for f in _failures(run_copy)] == [("run directory", "metrics.png plots metrics.jsonl")]


def test_an_edited_config_is_caught(run_copy):
    _edit_json(run_copy / "config.json", lambda d: d["training"].update(lr=0.5))
    assert [f[:2] for f in _failures(run_copy)] == [("run directory", "config.json is the anchored config")]


def test_a_deleted_evaluation_behind_the_anchored_metrics_is_caught(run_copy):
    store = ArtifactStore(run_copy / "store")
    metrics = store.get_json(_manifest(run_copy, 2)["metrics"])
    _blob(run_copy, metrics["evaluations"]["cleveland"]).unlink()
    failures = [f[:2] for f in _failures(run_copy)]
    assert ("round 2", "evaluation by cleveland intact and signed by its institution") in failures


# --- a truncated or rebuilt chain (issue 14, finding 5) ------------------------------------------


def _truncate(run, dropped):
    """Drop the last `dropped` blocks of the persisted chain and record the new last one as its
    head, as someone holding the run directory could."""
    log, meta_path = run / "chain" / "blocks.jsonl", run / "chain" / "chain.json"
    lines = log.read_text().splitlines()[:-dropped]
    log.write_text("\n".join(lines) + "\n")
    meta = json.loads(meta_path.read_text())
    meta["head"] = {"number": len(lines), "hash": json.loads(lines[-1])["hash"]}
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("dropped", [1, 2, 4])
def test_a_truncated_chain_fails_the_audit_without_a_head(run_copy, dropped):
    """Dropping the last blocks and rewriting the head passed; with three blocks dropped the audit
    said "0 rounds, OK". Now the chain must hold every planned round and the final model's
    evaluations, whatever head it claims."""
    _truncate(run_copy, dropped)
    report = verify_run(run_copy)
    assert not report.ok
    failed = {(f.subject, f.check) for f in report.failures}
    assert failed & {("study", "every planned round is on chain"),
                     ("round 3", "the final model's evaluations on chain are metrics.jsonl's")}, report.summary()


def test_fedledger_run_keeps_the_head_outside_the_run_directory(tmp_path, monkeypatch, capsys):
    """The head a run ended on is recorded outside its directory, and the audit uses it without
    being told: a chain rebuilt inside the directory no longer passes unnoticed."""
    home = tmp_path / "home"
    monkeypatch.setenv("FEDLEDGER_HOME", str(home))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[study]\nname = "heads"\nrounds = 2\n[training]\nlocal_steps = 5\n')
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"recorded in {home / 'heads.json'}" in out
    assert (home / "heads.json").stat().st_mode & 0o077 == 0
    assert main(["audit", "verify", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "checking the chain against the head recorded in" in out and "NOT VERIFIED: that this is the chain" not in out
    _truncate(tmp_path / "run", 1)
    assert main(["audit", "verify", str(tmp_path / "run")]) == 1
    assert "contains the expected head block" in capsys.readouterr().out


def test_a_round_left_out_of_metrics_jsonl_is_caught(run_copy):
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    (run_copy / "metrics.jsonl").write_text("\n".join([lines[0], lines[2]]) + "\n")
    failures = [f[:2] for f in _failures(run_copy)]
    assert failures == [("run directory", "metrics.jsonl has one line per finalized round, in order")]


def test_an_invented_suspension_in_results_json_is_caught(run_copy):
    _edit_json(run_copy / "results.json", lambda d: d.update(suspended={"va": 2}))
    assert [f[:2] for f in _failures(run_copy)] == [("run directory", "results.json's suspensions are the chain's")]


def test_anchored_metrics_naming_someone_who_is_no_member_fail(finished_run):
    """A summary whose evaluations name someone the consortium never admitted used to pass
    unchecked: the loose audit returned before comparing it."""
    from fedledger.audit.loose import LooseAuditor
    from fedledger.audit.report import AuditReport
    from fedledger.chain import open_chain
    from fedledger.rundir import RunDir

    run = RunDir(finished_run.run_dir)
    info = run.read_run_info()
    backend = open_chain(info["chain"], run.chain)
    try:
        auditor = LooseAuditor(AuditReport("metrics"), backend, info, ArtifactStore(run.store))
        record = auditor.contract.get_round(2)
        metrics = auditor.store.get_json(record.metrics_digest)
        metrics["evaluations"]["Mallory"] = metrics["evaluations"].pop("va")
        auditor._verify_metrics("round 2", metrics, record.parent_model)
    finally:
        backend.close()
    assert [(f.subject, f.check) for f in auditor.report.failures] == [
        ("round 2", "evaluations name members' signed evaluations")]
