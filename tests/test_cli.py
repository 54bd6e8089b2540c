"""The command line: real processes, one clear line for every expected failure."""

import socket
import subprocess
import sys

import pytest


def fedledger(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fedledger", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _one_clear_line(proc, fragment):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedledger: error: "), proc.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["audit", "--help"], ["audit", "verify", "--help"]])
def test_help_everywhere(args):
    proc = fedledger(*args)
    assert proc.returncode == 0 and "usage: fedledger" in proc.stdout


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[training]\nlearning_rate = 0.1\n")
    _one_clear_line(fedledger("run", cfg), "unknown key [training].learning_rate")


def test_missing_config_file(tmp_path):
    _one_clear_line(fedledger("run", tmp_path / "missing.toml"), "config file not found")


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)) * 4, "is not a text file: byte 128 is not UTF-8"),
    (b"x = " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"[training]\nlr = 1e300\n", "[training].lr must be positive and at most 1000"),
    (b"[training]\nlr = 1e6\n", "[training].lr must be positive and at most 1000"),   # ran, rejecting every update
    (b"[study]\nrounds = 100000000000000000000\n", "[study].rounds must be between 1 and 100000"),
], ids=["binary", "deeply-nested", "lr-1e300", "lr-1e6", "rounds-1e20"])
def test_unusable_config_file(tmp_path, content, fragment):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(content)
    _one_clear_line(fedledger("run", cfg, "--run-dir", tmp_path / "run"), fragment)
    assert not (tmp_path / "run").exists()   # refused before anything was set up


def test_missing_data_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\ndataset = "csv"\nlabel = "y"\nclients = { a = "a.csv", b = "b.csv" }\n')
    _one_clear_line(fedledger("run", cfg, "--run-dir", tmp_path / "run"), "a.csv")


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_node(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[study]\nrounds = 1\n[chain]\nrpc_url = "http://127.0.0.1:{_closed_port()}"\n')
    _one_clear_line(fedledger("run", cfg, "--run-dir", tmp_path / "run"), "no Ethereum JSON-RPC node answers")


def test_audit_of_something_that_is_not_a_run(tmp_path):
    _one_clear_line(fedledger("audit", "verify", tmp_path), "is not a FedLedger run directory")


def test_run_then_audit_from_the_command_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[study]\nname = "cli"\nrounds = 2\noutput_dir = "out"\n[training]\nlocal_steps = 10\n')
    proc = fedledger("run", cfg)
    assert proc.returncode == 0, proc.stderr
    assert "client average" in proc.stdout and "pooled" in proc.stdout
    run_dir = tmp_path / "out" / "cli-1"
    assert f"run directory: {run_dir}" in proc.stdout
    head = next(line.split()[2] for line in proc.stdout.splitlines() if line.startswith("chain head: "))
    audit = fedledger("audit", "verify", run_dir, "--head", head)
    assert audit.returncode == 0, audit.stdout
    # the same audit fails (exit 1) once an artifact is gone, and says which
    blobs = sorted(p for p in (run_dir / "store").rglob("*") if p.is_file())
    blobs[0].unlink()
    audit = fedledger("audit", "verify", run_dir)
    assert audit.returncode == 1 and "FAIL" in audit.stdout and "not in the store" in audit.stdout
