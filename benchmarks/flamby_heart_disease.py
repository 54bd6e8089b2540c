"""FLamby's Fed-Heart-Disease benchmark reproduced through FedLedger (loose, embedded chain).

Pooled and Local baselines train without federation; every federated strategy runs as a full
FedLedger study: four institution nodes with their own keys, a coordinator, every round anchored
on the embedded EVM. Hyperparameters are FLamby's (see ../README.md and BRIEF); the published
figures are FLamby's means over seeds 42-46 of the client-average test accuracy.

    python benchmarks/flamby_heart_disease.py [--seeds 42 43 44 45 46] [--rounds 15]
    python benchmarks/flamby_heart_disease.py --smoke    # seed 42, 1 round, 2 baseline epochs; exit 1 if off
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402

from fedledger.config import config_from_dict  # noqa: E402
from fedledger.learning import TrainConfig, load_fed_heart_disease, train_local_baseline, train_pooled  # noqa: E402
from fedledger.report import format_table  # noqa: E402
from fedledger.simulation import run_study  # noqa: E402

PUBLISHED = {"Pooled": 0.7353, "Local 0": 0.7221, "Local 1": 0.6287, "Local 2": 0.5670, "Local 3": 0.6366,
             "FedAvg": 0.6850, "FedProx": 0.6850, "FedAdam": 0.7255, "FedAdagrad": 0.7314, "FedYogi": 0.7314}
# (strategy, client lr, server hyperparameters), as in FLamby's fed_heart_disease benchmark
FEDERATED = {
    "FedAvg": ("fedavg", 1e-3, {}),
    "FedProx": ("fedprox", 1e-3, {"mu": 0.01}),
    "FedAdam": ("fedadam", 0.01, {"server_lr": 0.01, "beta1": 0.9, "beta2": 0.999, "tau": 1e-8}),
    "FedAdagrad": ("fedadagrad", 0.003162, {"server_lr": 0.316228, "beta1": 0.9, "tau": 1e-8}),
    "FedYogi": ("fedyogi", 0.003162, {"server_lr": 0.01, "beta1": 0.9, "beta2": 0.999, "tau": 1e-8}),
}
BASELINE = TrainConfig(optimizer="adam", lr=1e-3, batch_size=4, epochs=50, local_steps=None)


def federated_accuracy(name: str, seed: int, rounds: int, workdir: Path) -> tuple[float, float]:
    strategy, lr, params = FEDERATED[name]
    cfg = config_from_dict({
        "study": {"name": f"{strategy}-{seed}", "seed": seed, "rounds": rounds},
        "data": {"dataset": "fed_heart_disease"},
        "training": {"optimizer": "sgd", "lr": lr, "batch_size": 4, "local_steps": 100},
        "aggregation": {"strategy": strategy, "params": params},
    }, base_dir=workdir)
    result = run_study(cfg, run_dir=workdir / f"{strategy}-{seed}", progress=False)
    return result.final["client_average"]["accuracy"], result.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--rounds", type=int, default=15)
    add_smoke_flag(parser, "seed 42, 1 round, 2 baseline epochs")
    args = parser.parse_args()
    baseline = BASELINE
    if args.smoke:
        args.seeds, args.rounds, baseline = args.seeds[:1], 1, dataclasses.replace(BASELINE, epochs=2)

    clients = load_fed_heart_disease()
    scores: dict[str, list[float]] = {k: [] for k in PUBLISHED}
    seconds: dict[str, list[float]] = {k: [] for k in PUBLISHED}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            t0 = time.perf_counter()
            scores["Pooled"].append(train_pooled(clients, baseline, "logreg", seed=seed)["client_average"]["accuracy"])
            seconds["Pooled"].append(time.perf_counter() - t0)
            for i in range(len(clients)):
                t0 = time.perf_counter()
                res = train_local_baseline(clients, i, baseline, "logreg", seed=seed)
                scores[f"Local {i}"].append(res["client_average"]["accuracy"])
                seconds[f"Local {i}"].append(time.perf_counter() - t0)
            for name in FEDERATED:
                acc, wall = federated_accuracy(name, seed, args.rounds, Path(tmp))
                scores[name].append(acc)
                seconds[name].append(wall)
            print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in scores.items()), flush=True)

    rows = []
    for name, published in PUBLISHED.items():
        mean = statistics.mean(scores[name])
        sd = statistics.stdev(scores[name]) if len(scores[name]) > 1 else 0.0
        rows.append([name, published, mean, sd, mean - published, statistics.mean(seconds[name])])
    table = format_table(["method", "FLamby published", "FedLedger (mean)", "std over seeds", "difference",
                          "seconds per run"], rows)
    print(table)
    if args.smoke:
        end_smoke([f"{name}: accuracy {acc}" for name, accs in scores.items() for acc in accs if not 0 < acc <= 1])
    best = max(FEDERATED, key=lambda k: statistics.mean(scores[k]))
    body = (f"Client-average test accuracy, mean over seeds {', '.join(map(str, args.seeds))}; {args.rounds} rounds. "
            "Federated runs are full FedLedger studies (loose, embedded EVM, every round anchored).\n\n"
            f"{table}\n\nBest federated strategy: {best} at {statistics.mean(scores[best]):.4f} "
            f"(published Pooled: {PUBLISHED['Pooled']}).")
    write_section("flamby-heart", "FLamby Fed-Heart-Disease through FedLedger", body)


if __name__ == "__main__":
    main()
