"""Every benchmark runs in its smoke mode (tiny sizes, nothing written, exit 1 when a result is
wrong), so that none breaks unnoticed. Each runs as its own process, as from the command line."""

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def smoke(name: str, timeout: int = 300) -> str:
    """Run benchmarks/`name` --smoke; its stdout, once it exited 0."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), "--smoke"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_deployed_secure_aggregation_benchmark_smoke(hardhat_installed):
    assert "| loose        | 3            | secagg" in smoke("deployed_secure.py", timeout=600)


def test_hostile_blobs_benchmark_smoke():
    out = smoke("hostile_blobs.py")
    assert re.search(r"\| empty tensors \(a million in 64 MB\) +\| 1\.0 +\|", out), out


def test_chain_throughput_benchmark_smoke():
    out = smoke("chain_throughput.py")
    # a SemiStudy commit through the wrapper, batched into one block of the embedded chain
    assert re.search(r"\| embedded \| commit +\| batch\(\) +\| [\d.]+ +\| [\d.]+ +\| 1 +\|", out), out
    assert re.search(r"\| embedded \| enrol +\| one by one +\| [\d.]+ +\| [\d.]+ +\| 3 +\|", out), out
