"""The benchmarks that have a smoke mode run in it, so that none breaks unnoticed."""

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_deployed_secure_aggregation_benchmark_smoke(hardhat_installed):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "deployed_secure.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| loose        | 3            | secagg" in done.stdout


def test_hostile_blobs_benchmark_smoke():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "hostile_blobs.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\| empty tensors \(a million in 64 MB\) +\| 1\.0 +\|", done.stdout), done.stdout


def test_secure_aggregation_benchmark_smoke():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "secure_aggregation.py"), "--smoke"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every secure result equals plain FedAvg byte for byte" in done.stdout
    for dropout in ("0%", "10%"):
        for protocol in ("SecAgg ", "SecAgg+"):
            assert re.search(rf"\| 10 +\| {dropout} +\| {re.escape(protocol)} +\| k=", done.stdout), done.stdout
    assert "wrote section" not in done.stdout
