"""Deployed round time with secure aggregation (pairwise masking) and with CKKS against plain
updates, one OS process per member over a Hardhat node, at 4 and 10 institutions.

Each row runs `fedledger demo` (one `fedledger node` process per member, plus the coordinator for
loose) and, for comparison, the same config simulated in one process on the embedded EVM. Seconds
per round are medians over rounds 2 and later (round 1 includes starting the processes and, under
CKKS, making the keys). Masking runs under loose and semi; CKKS under loose only (semi's
aggregators are members that would hold the key).

    python benchmarks/deployed_secure.py                 # the full table, written to BENCHMARKS.md
    python benchmarks/deployed_secure.py --smoke         # one masked study of 3, 2 rounds; exit 1 if it fails
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import end_smoke, write_section  # noqa: E402

from fedledger.config import Config, load_config  # noqa: E402
from fedledger.deploy.demo import run_demo  # noqa: E402
from fedledger.deploy.devchain import HardhatNode  # noqa: E402
from fedledger.report import format_table  # noqa: E402
from fedledger.rundir import RunDir  # noqa: E402
from fedledger.simulation import run_study  # noqa: E402
from fedledger.store import ArtifactStore  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BLOCK_INTERVAL_MS = 500
CASES = (("loose", "none"), ("loose", "secagg"), ("loose", "ckks"), ("semi", "none"), ("semi", "secagg"))


def study(members: int, rounds: int, architecture: str, scheme: str) -> Config:
    cfg = load_config(EXAMPLES / "breast_cancer.toml")
    return dataclasses.replace(
        cfg, study=dataclasses.replace(cfg.study, rounds=rounds, architecture=architecture),
        data=dataclasses.replace(cfg.data, num_clients=members),
        privacy=dataclasses.replace(cfg.privacy, secure_aggregation=scheme),
        protocol=dataclasses.replace(cfg.protocol, commit_window=40, result_window=40))


def later_median(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] or seconds)


def run_case(cfg: Config, directory: Path, rpc_url: str) -> list:
    """[s/round deployed, s/round simulated, same model as simulated, audit]."""
    simulated = run_study(cfg, run_dir=directory / "simulated", progress=False)
    demo = run_demo(cfg, directory / "demo", rpc_url=rpc_url, log=lambda line: print("  " + line, flush=True))
    models = {s["final_evaluation"]["model"] for s in demo.nodes.values() if s and s.get("final_evaluation")}
    expected = simulated.rounds[-1]["model"]
    if cfg.privacy.secure_aggregation == "ckks":     # approximate: how far from the simulated model
        (model,) = models
        gap = np.abs(ArtifactStore(directory / "demo" / "consortium" / "store").get_params(model)
                     - ArtifactStore(RunDir(simulated.run_dir).store).get_params(expected)).max()
        same = f"within {gap:.1e}"
    else:
        same = "yes" if models == {expected} else "no"
    return [later_median(demo.round_seconds), later_median([r["seconds"] for r in simulated.rounds]), same,
            "pass" if demo.audit.ok else "FAIL"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--members", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--smoke", action="store_true",
                        help="one loose masked study of 3 institutions, 2 rounds; write nothing, exit 1 if it fails")
    args = parser.parse_args()
    members, rounds = ([3], 2) if args.smoke else (args.members, args.rounds)
    cases = [("loose", "secagg")] if args.smoke else CASES
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, \
            HardhatNode(Path(tmp_name) / "chain.log", BLOCK_INTERVAL_MS) as chain:
        tmp = Path(tmp_name)
        for count in members:
            plain: dict[str, float] = {}
            for architecture, scheme in cases:
                print(f"== {architecture}, {scheme}, {count} institutions, {rounds} rounds", flush=True)
                deployed, simulated, same, audit = run_case(study(count, rounds, architecture, scheme),
                                                            tmp / f"{architecture}-{scheme}-{count}", chain.url)
                plain.setdefault(architecture, deployed)   # the first case of an architecture is its plain one
                rows.append([architecture, count, scheme, deployed, deployed / plain[architecture], simulated,
                             same, audit])
                print(f"  deployed {deployed:.3f} s/round, simulated {simulated:.3f}", flush=True)
    table = format_table(["architecture", "institutions", "secure aggregation", "deployed s/round",
                          "against plain", "simulated s/round", "same model as simulated", "audit"], rows)
    print(table)
    if args.smoke:
        end_smoke([f"{row[0]} {row[2]}: same model as simulated {row[6]}, audit {row[7]}" for row in rows
                   if row[6] != "yes" or row[7] != "pass"])
    write_section("deployed-secure", "Secure aggregation deployed: round time against plain", "\n\n".join([
        f"Breast Cancer Wisconsin (examples/breast_cancer.toml) split over 4 and 10 hospitals, {rounds} rounds, "
        f"commit windows of 40 blocks. Deployed: `run_demo`, one `fedledger node` process per member on a "
        f"Hardhat node that mines a block per transaction and one every {BLOCK_INTERVAL_MS} ms; simulated: "
        "`run_study` in one process on the embedded EVM. Seconds per round: median over rounds 2 and later. "
        "`against plain`: deployed seconds per round over the same architecture's plain run.",
        table]))


if __name__ == "__main__":
    main()
