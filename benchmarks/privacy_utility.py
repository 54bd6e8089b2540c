"""Utility against privacy: Fed-Heart-Disease client-average accuracy with record-level DP-SGD at
epsilon 1, 3 and 8 (delta 1e-5) and without DP, over 5 seeds.

Every run is a whole `fedledger run` study of the 4 hospitals: FLamby's logistic regression and
local training (SGD, batch 4, 100 steps a round) with the FedAdagrad server of
examples/fed_heart_disease.toml, 15 rounds, with the ledger off (the chain changes no
arithmetic). Under DP each hospital trains with DP-SGD (Poisson sampling at batch_size / rows,
each record's gradient clipped to norm 1), its noise multiplier calibrated so that its 15 releases
spend exactly its budget. Reported: the final model's client-average and pooled test accuracy,
mean over seeds (lowest-highest), and each hospital's epsilon as spent.

    python benchmarks/privacy_utility.py [--seeds 5] [--rounds 15] [--workers 2]
    python benchmarks/privacy_utility.py --smoke    # 1 seed, 1 round of 10 steps, no DP and epsilon 1;
                                                    # exit 1 if a budget is not spent as calibrated
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402

from fedledger.config import config_from_dict  # noqa: E402
from fedledger.report import format_table  # noqa: E402
from fedledger.simulation import run_study  # noqa: E402

EPSILONS = (None, 8.0, 3.0, 1.0)   # None: no differential privacy
DELTA = 1e-5


def config(seed: int, rounds: int, epsilon: float | None, out: str, steps: int) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "study": {"name": "privacy-utility", "seed": seed, "rounds": rounds, "output_dir": out},
        "data": {"dataset": "fed_heart_disease"},
        "model": {"name": "logreg"},
        "training": {"optimizer": "sgd", "lr": 0.003162, "batch_size": 4, "local_steps": steps},
        "aggregation": {"strategy": "fedadagrad", "params": {"server_lr": 0.316228, "beta1": 0.9, "tau": 1e-8}},
        "chain": {"enabled": False},
    }
    if epsilon is not None:
        raw["privacy"] = {"mechanism": "dp-sgd", "epsilon": epsilon, "delta": DELTA, "max_grad_norm": 1.0}
    return raw


def run_one(job: tuple[int, int, float | None, int]) -> dict[str, Any]:
    seed, rounds, epsilon, steps = job
    with tempfile.TemporaryDirectory() as out:
        cfg = config_from_dict(config(seed, rounds, epsilon, out, steps), base_dir=out)
        started = time.perf_counter()
        result = run_study(cfg, run_dir=Path(out) / "run", progress=False)
        return {"seed": seed, "epsilon": epsilon, "seconds": time.perf_counter() - started,
                "client_average": result.final["client_average"]["accuracy"],
                "pooled": result.final["pooled"]["accuracy"], "privacy": result.privacy}


def _cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def summarize(runs: list[dict[str, Any]], epsilons: tuple[float | None, ...]) -> tuple[str, list[str]]:
    rows, notes = [], []
    for eps in epsilons:
        mine = [r for r in runs if r["epsilon"] == eps]
        spent = [p["epsilon"] for r in mine for p in r["privacy"].values()]
        noise = [p["noise_multiplier"] for r in mine for p in r["privacy"].values()]
        rows.append(["none" if eps is None else f"{eps:g}",
                     _cell([r["client_average"] for r in mine]), _cell([r["pooled"] for r in mine]),
                     f"{max(spent):.3f}" if spent else "-",
                     f"{min(noise):.2f}-{max(noise):.2f}" if noise else "-",
                     f"{statistics.mean(r['seconds'] for r in mine):.1f}"])
    table = format_table(["epsilon", "client-average accuracy", "pooled accuracy", "largest epsilon spent",
                          "noise multipliers", "s per study"], rows)
    base = statistics.mean(r["client_average"] for r in runs if r["epsilon"] is None)
    for eps in epsilons[1:]:
        acc = statistics.mean(r["client_average"] for r in runs if r["epsilon"] == eps)
        notes.append(f"- epsilon {eps:g}: client-average accuracy {acc:.3f}, {acc - base:+.3f} against no DP ({base:.3f})")
    return table, notes


def budget_problems(runs: list[dict[str, Any]]) -> list[str]:
    """Every DP run's hospitals must spend their budget (calibrated to spend it exactly, give or
    take the accountant's rounding), and a run without DP must report no spend."""
    problems = []
    for r in runs:
        spent = {name: p["epsilon"] for name, p in r["privacy"].items()}
        if r["epsilon"] is None:
            problems += [f"seed {r['seed']}: a spend reported without DP: {spent}"] if spent else []
        elif not spent or any(not 0.99 * r["epsilon"] <= e <= r["epsilon"] * (1 + 1e-9) for e in spent.values()):
            problems.append(f"seed {r['seed']}, epsilon {r['epsilon']:g}: spent {spent}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    add_smoke_flag(parser, "seed 1, 1 round of 10 local steps, no DP and epsilon 1, one worker")
    args = parser.parse_args()
    epsilons, steps = EPSILONS, 100      # FLamby's 100 local steps a round
    if args.smoke:
        args.seeds, args.rounds, args.workers, epsilons, steps = 1, 1, 1, (None, 1.0), 10
    jobs = [(seed, args.rounds, eps, steps) for seed in range(1, args.seeds + 1) for eps in epsilons]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    table, notes = summarize(runs, epsilons)
    print(table, *notes, sep="\n")
    if args.smoke:
        end_smoke(budget_problems(runs))
    body = (f"Fed-Heart-Disease, 4 hospitals, logistic regression, {args.rounds} rounds, seeds 1-{args.seeds}, "
            "FLamby's local training (SGD lr 0.003162, batch 4, 100 steps a round) and the FedAdagrad server "
            "of examples/fed_heart_disease.toml. DP rows: record-level DP-SGD in every hospital (Opacus; "
            "Poisson sampling at 4 / rows, per-record clipping to norm 1), delta 1e-5, the noise multiplier "
            "calibrated per hospital (it depends on the hospital's sampling rate) so that its releases spend "
            "the budget; each spend is recorded on chain in a ledger run and re-derived by the audit. "
            "Cells: final test accuracy, mean over seeds (lowest-highest).\n\n"
            f"{table}\n\n" + "\n".join(notes))
    write_section("privacy-utility", "Privacy: utility against epsilon (Fed-Heart-Disease, DP-SGD)", body)


if __name__ == "__main__":
    main()
