"""The same study against a real JSON-RPC node (Hardhat on loopback), then audited from a new process."""

import subprocess
import sys

from fedledger.audit import verify_run
from fedledger.simulation import run_study


def test_study_on_a_json_rpc_node_is_anchored_and_audits(hardhat_url, make_study, tmp_path):
    cfg = make_study(tmp_path, chain={"rpc_url": hardhat_url}, study={"rounds": 2})
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert [r["transactions"] for r in result.rounds] == [1, 1]
    assert not (result.run_dir / "chain").exists()      # the node holds the chain, not the run directory
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    proc = subprocess.run([sys.executable, "-m", "fedledger", "audit", "verify", str(result.run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
