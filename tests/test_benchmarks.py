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


def test_aggregation_throughput_benchmark_smoke():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "aggregation_throughput.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FedLedger equals the stacked int64 reference in both orders" in done.stdout
    assert re.search(r"\| large values +\| FedLedger +\| \d+\.\d\d +\|", done.stdout), done.stdout
