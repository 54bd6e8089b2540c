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


def test_architectures_benchmark_smoke():
    out = smoke("architectures.py")
    assert re.search(r"\| audit of the honest run +\| ok \(\d+ s\) +\| ok \(\d+ s\) +\| ok \(\d+ s\) +\|", out), out
    for engine in ("py-evm", "revm"):
        assert re.search(rf"\| loose +\| {engine} +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ +\| 1\.0500 +\| (met|missed) +\|", out), out
    assert re.search(r"\| full +\| \d+ +\| \d+ +\| \d+ +\|", out), out     # the chain costs per round


def test_audit_scaling_benchmark_smoke():
    out = smoke("audit_scaling.py")
    assert re.search(r"\| 3 +\| 2 +\| [\d.]+ +\| [\d.]+ +\| - +\| yes +\|", out), out
    assert re.search(r"largest / smallest CPU s per round at 3 members: [\d.]+", out), out


def test_breast_cancer_benchmark_smoke():
    assert re.search(r"\| 42 +\| 32/30/112/191/30 +\| 0\.\d+ +\| 0\.\d+ +\|", smoke("breast_cancer.py"))


def test_ckks_aggregation_benchmark_smoke():
    # 1,000 parameters: one chunk per member, 4,000 plain bytes, an error in the small exponents
    assert re.search(r"\| 1000 +\|.*\| 1 +\| \d+ +\| 4000 +\| \d\.\de-\d\d +\|", smoke("ckks_aggregation.py"))


def test_deployment_benchmark_smoke(hardhat_installed):
    out = smoke("deployment.py", timeout=600)
    # 2 institutions and the coordinator as processes, the simulated model, a passing audit
    assert re.search(r"\| loose +\| 2 +\| 3 +\|.*\| yes +\| pass +\|", out), out


def test_flower_comparison_benchmark_smoke():
    # Flower comes with requirements-dev.lock; 2 rounds of 10 steps through Flower's FedAdagrad and
    # FedLedger's run_study (chain off and on): the same study, so the same final model up to rounding
    out = smoke("flower_comparison.py")
    assert re.search(r"\| Flower FedAdagrad, in-process loop +\| [\d.]+ +\| 1\.0000 +\|", out), out
    for engine in ("py-evm", "revm"):
        assert re.search(rf"\| FedLedger, chain on \(embedded EVM, {engine}\) +\| [\d.]+ +\| [\d.]+ +\|", out), out


def test_flamby_heart_disease_benchmark_smoke():
    assert re.search(r"\| FedYogi +\| 0\.7314 +\| 0\.\d+ +\|", smoke("flamby_heart_disease.py"))


def test_leakage_benchmark_smoke():
    out = smoke("leakage.py")
    assert re.search(r"\| plain +\| - +\| 10 +\| [\d.e-]+ +\| [\d.e-]+ +\| 100% +\|", out), out
    assert re.search(r"\| DP-SGD, epsilon 1 +\| 12\.793 +\| 10 +\|", out), out


def test_ledger_overhead_benchmark_smoke():
    out = smoke("ledger_overhead.py")
    assert re.search(r"\| transactions per round +\| 1 +\|", out), out
    assert re.search(r"\| rounds +\| 2 +\|", out), out


def test_privacy_utility_benchmark_smoke():
    # epsilon 1 spent exactly, by every hospital's calibrated noise
    assert re.search(r"\| 1 +\| 0\.\d+ \(.*\) +\| 0\.\d+ \(.*\) +\| 1\.000 +\|", smoke("privacy_utility.py"))


def test_robustness_benchmark_smoke():
    out = smoke("robustness.py")
    # every defence ran clean; the scale attack against fedavg and reputation only
    assert re.search(r"^\| clean +(\| 0\.\d+ \([\d.-]+\) +){6}\|$", out, re.M), out
    assert re.search(r"^\| scale 25% +\| 0\.\d+ \([\d.-]+\) +(\| - +){4}\| 0\.\d+ \([\d.-]+\) +\|$", out, re.M), out
    assert "honest members ever suspended (all reputation runs, clean included): 0" in out


def test_secure_study_benchmark_smoke():
    out = smoke("secure_study.py")
    assert re.search(r"\| loose +\| secagg +\|.*\| same bytes +\|", out), out
    assert re.search(r"\| loose +\| ckks +\|.*\| (same bytes|max diff \d\.\de-\d\d) +\|", out), out


def test_aggregation_throughput_benchmark_smoke():
    out = smoke("aggregation_throughput.py")
    assert "FedLedger equals the stacked int64 reference in both orders" in out
    assert re.search(r"\| large values +\| FedLedger +\| \d+\.\d\d +\|", out), out


def test_secure_aggregation_benchmark_smoke():
    out = smoke("secure_aggregation.py")
    assert "every secure result equals plain FedAvg byte for byte" in out
    for dropout in ("0%", "10%"):
        for protocol in ("SecAgg ", "SecAgg+"):
            assert re.search(rf"\| 10 +\| {dropout} +\| {re.escape(protocol)} +\| k=", out), out
    assert "wrote section" not in out


def test_survival_benchmark_smoke():
    out = smoke("survival.py")
    assert re.search(r"\| gbsg2 +\| 42 +\| \d+/\d+/\d+/\d+ +\| 0\.\d+ +\| 0\.\d+ +\|", out), out


def test_personalization_benchmark_smoke():
    out = smoke("personalization.py")
    assert re.search(r"\| 42 +\| 0\.\d+ +\| 0\.\d+ +\| 0\.\d+ +\| 0\.\d+ +\| \d+/\d+/\d+/\d+ +\|", out), out


def test_intrusion_detection_benchmark_smoke():
    out = smoke("intrusion_detection.py")
    assert re.search(r"\| federated +\| [01]\.\d{4} +\| [01]\.\d{4} +\| [01]\.\d{4} +\| [01]\.\d{4} +\| [01]\.\d{4} +\|", out)
    assert re.search(r"\| pooled, logistic regression +\| [01]\.\d{4} +\|", out)


def test_non_iid_benchmark_smoke():
    out = smoke("non_iid.py")
    assert re.search(r"\| two-stage \(FedAvg, 5% shared\) +\| 0\.\d+ +\| 0\.\d+ +\|", out), out


def test_wearables_benchmark_smoke():
    out = smoke("wearables.py")
    assert re.search(r"\| federated \(FedLedger\) +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ +\|", out), out
    assert re.search(r"\| 20 +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ +\| 1 +\|", out), out    # one anchor per round


def test_access_decisions_benchmark_smoke():
    out = smoke("access_decisions.py")
    for engine in ("py-evm", "revm"):
        assert re.search(rf"\| {engine} +\| 20 +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ +\|", out), out
