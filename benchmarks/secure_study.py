"""What secure aggregation costs a whole study: Fed-Heart-Disease on the embedded chain, loose,
plain against pairwise masking against CKKS (and masking in the semi architecture), side by side: seconds, transactions and gas per round, bytes stored per round,
and the final model against the plain one.

    python benchmarks/secure_study.py [--rounds 5]
    python benchmarks/secure_study.py --smoke    # loose only, 1 round; exit 1 if a secure model strays from plain
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402

from fedledger.config import config_from_dict  # noqa: E402
from fedledger.report import format_table  # noqa: E402
from fedledger.rundir import RunDir  # noqa: E402
from fedledger.simulation import run_study  # noqa: E402
from fedledger.store import ArtifactStore  # noqa: E402

RUNS = (("loose", "none"), ("loose", "secagg"), ("loose", "ckks"), ("semi", "none"), ("semi", "secagg"))
CKKS_MAX_DIFF = 1e-4     # CKKS is approximate (the full run: 1e-06 from plain); masking must be exact


def run_one(architecture: str, scheme: str, rounds: int, out: Path) -> dict:
    raw = {"study": {"name": f"{architecture}-{scheme}", "seed": 42, "rounds": rounds, "architecture": architecture},
           "training": {"optimizer": "sgd", "lr": 0.003162, "batch_size": 4, "local_steps": 100},
           "aggregation": {"strategy": "fedadagrad", "params": {"server_lr": 0.316228, "beta1": 0.9, "tau": 1e-8}},
           "privacy": {"secure_aggregation": scheme}}
    result = run_study(config_from_dict(raw, base_dir=out), run_dir=out / f"{architecture}-{scheme}", progress=False)
    store = RunDir(result.run_dir).store
    return {"rounds": result.rounds, "model": ArtifactStore(store).get_params(result.rounds[-1]["model"]),
            "digest": result.rounds[-1]["model"], "accuracy": result.final["pooled"]["accuracy"],
            "bytes": sum(p.stat().st_size for p in store.rglob("*") if p.is_file())}


def model_problems(runs: dict[tuple[str, str], dict]) -> list[str]:
    """Masking must give the plain model's bytes, CKKS the plain model within CKKS_MAX_DIFF."""
    problems = []
    for (architecture, scheme), r in runs.items():
        plain = runs[(architecture, "none")]
        diff = float(np.abs(r["model"] - plain["model"]).max())
        if scheme == "ckks" and diff > CKKS_MAX_DIFF or scheme != "ckks" and r["digest"] != plain["digest"]:
            problems.append(f"{architecture} {scheme}: final model {diff:.1e} from the plain one")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    add_smoke_flag(parser, "the loose runs only, 1 round")
    args = parser.parse_args()
    cases = RUNS
    if args.smoke:
        args.rounds, cases = 1, tuple(key for key in RUNS if key[0] == "loose")
    with tempfile.TemporaryDirectory() as out:
        runs = {key: run_one(*key, args.rounds, Path(out)) for key in cases}
    rows = []
    for (architecture, scheme), r in runs.items():
        plain = runs[(architecture, "none")]
        per_round = r["rounds"]
        rows.append([architecture, scheme,
                     f"{statistics.median(x['seconds'] for x in per_round):.2f}",
                     f"{statistics.median(x['transactions'] for x in per_round):.0f}",
                     f"{statistics.median(x['gas'] for x in per_round) / 1e6:.2f}",
                     f"{r['bytes'] / args.rounds / 1e6:.2f}",
                     "same bytes" if r["digest"] == plain["digest"]
                     else f"max diff {np.abs(r['model'] - plain['model']).max():.1e}",
                     f"{r['accuracy']:.3f}"])
    table = format_table(["architecture", "secure aggregation", "s per round", "transactions per round",
                          "Mgas per round", "MB stored per round", "final model vs plain", "pooled accuracy"], rows)
    print(table)
    if args.smoke:
        end_smoke(model_problems(runs))
    body = (f"Fed-Heart-Disease, 4 hospitals, {args.rounds} rounds, seed 42, the hyperparameters of "
            "examples/fed_heart_disease.toml, on the embedded chain; medians over rounds. Masking: round keys, "
            "sealed shares and reveals, each member's own transactions; CKKS: keys made and distributed in "
            "round 1 (in its figures), ciphertexts of 8192-slot chunks, one decryption per round.\n\n" + table)
    write_section("secure-study", "Secure aggregation in a study: cost against plain", body)


if __name__ == "__main__":
    main()
