"""A fleet of wearables: federated accuracy against pooled training, and round time against the
number of devices.

Each client is one patient's wearable (fedledger/learning/vital_signs.py: ECG, PPG and respiration
simulated with neurokit2, nothing downloaded): 8 windows of 20 s at 25 Hz, the last 3 its test
windows; the target is the patient's risk level in each window (stable, serious or critical, from
the NEWS2 bands of its heart and breathing rates). The model is a 1-D CNN over the three
channels. Every study is a full FedLedger study (loose, embedded EVM, FedAvg):

- accuracy: DEVICES devices; each round draws a tenth of them ([protocol] sample_fraction), and
  each one drawn drops out with probability 0.1 or straggles past the round's window with
  probability 0.1 ([faults]); the last round's model is scored on every device's test windows
  together. Against the same CNN trained on all devices' training windows pooled (as many steps
  as a device takes over the study, in batches of 32) and against always guessing the most
  frequent training class;
- round time: 100, 300 and 1000 devices, each drawn with probability 0.08, no faults: seconds
  per round (the protocol's: training, signing, collecting, screening, aggregating, anchoring;
  not the simulation's scoring of every device after the round), devices that trained,
  transactions and gas per round, and the set-up (enrolling every device on chain).

    python benchmarks/wearables.py [--seeds 42 43 44]
    python benchmarks/wearables.py --smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, cpu_description, end_smoke, write_section  # noqa: E402

from fedledger.config import config_from_dict  # noqa: E402
from fedledger.learning import TrainConfig, make_task, train_pooled  # noqa: E402
from fedledger.learning.vital_signs import VITAL_SIGNS_CLASSES, load_vital_signs, vital_signs_shape  # noqa: E402
from fedledger.report import format_table  # noqa: E402
from fedledger.simulation import run_study  # noqa: E402

DEVICES, FRACTION, DROPOUT, STRAGGLER = 300, 0.1, 0.1, 0.1
# round time: fewer than a tenth, so that 1000 devices never draw more than the 128 updates one
# anchored round can name (the study refuses a fraction likely to)
SCALING_FRACTION = 0.08
ROUNDS, LOCAL_STEPS, BATCH, LR, HIDDEN = 60, 10, 8, 0.003, [8, 16, 16, 16]
POOLED_BATCH = 32
FLEETS, SCALING_ROUNDS = (100, 300, 1000), 3
SMOKE = {"devices": 20, "rounds": 2, "fleets": (10, 20)}
TASK = make_task("multiclass", classes=len(VITAL_SIGNS_CLASSES))
FIGURES = ("accuracy", "balanced_accuracy", "macro_f1")


def study_config(devices: int, seed: int, rounds: int, tmp: Path, faults: bool, fraction: float = FRACTION) -> Any:
    return config_from_dict({
        "study": {"name": f"wearables-{devices}-{seed}", "seed": seed, "rounds": rounds},
        "data": {"dataset": "vital_signs", "num_clients": devices},
        "model": {"name": "cnn", "hidden": HIDDEN},
        "training": {"optimizer": "adam", "lr": LR, "batch_size": BATCH, "local_steps": LOCAL_STEPS},
        "protocol": {"sample_fraction": fraction, "commit_window": 5},
        "faults": {"dropout": DROPOUT, "straggler": STRAGGLER} if faults else {},
    }, base_dir=tmp)


def accuracy_row(devices: int, seed: int, rounds: int, tmp: Path) -> tuple[dict[str, float], dict[str, float],
                                                                          float, list[int]]:
    """(federated figures, pooled figures, majority rate, devices aggregated per round) for one seed."""
    result = run_study(study_config(devices, seed, rounds, tmp, faults=True), run_dir=tmp / f"acc-{seed}",
                       progress=False)
    federated = {k: float(result.final["pooled"][k]) for k in FIGURES}
    clients = load_vital_signs(devices, seed)
    steps = rounds * LOCAL_STEPS
    per = train_pooled(clients, TrainConfig(optimizer="adam", lr=LR, batch_size=POOLED_BATCH, local_steps=steps),
                       "cnn", seed=seed, hidden=HIDDEN, task=TASK, shape=vital_signs_shape())["per_client"]
    pooled = {k: float(v) for k, v in TASK.pool(per).items() if k in FIGURES}
    y_train = np.concatenate([c.y_train for c in clients]).astype(int)
    y_test = np.concatenate([c.y_test for c in clients]).astype(int)
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))
    return federated, pooled, majority, [len(r["accepted"]) for r in result.rounds]


def scaling_row(devices: int, rounds: int, tmp: Path) -> list[Any]:
    """One fleet size's round time and chain cost."""
    started = time.perf_counter()
    load_vital_signs(devices, 42)
    generated = time.perf_counter() - started
    result = run_study(study_config(devices, 42, rounds, tmp, faults=False, fraction=SCALING_FRACTION),
                       run_dir=tmp / f"scale-{devices}", progress=False)
    per_round = result.rounds
    seconds = statistics.mean(r["seconds"] for r in per_round)
    trained = statistics.mean(len(r["accepted"]) for r in per_round)
    return [devices, trained, seconds, seconds / trained, statistics.mean(r["transactions"] for r in per_round),
            statistics.mean(r["gas"] for r in per_round), result.setup_chain["transactions"], generated,
            result.wall_seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    add_smoke_flag(parser, f"1 seed, {SMOKE['devices']} devices, {SMOKE['rounds']} rounds; fleets of "
                           f"{' and '.join(map(str, SMOKE['fleets']))}")
    args = parser.parse_args()
    devices, rounds, fleets, scaling_rounds = DEVICES, ROUNDS, FLEETS, SCALING_ROUNDS
    if args.smoke:
        args.seeds = args.seeds[:1]
        devices, rounds, fleets, scaling_rounds = SMOKE["devices"], SMOKE["rounds"], SMOKE["fleets"], SMOKE["rounds"]
    per_seed, federated, pooled, majority, aggregated = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            fed, pool, guess, counts = accuracy_row(devices, seed, rounds, Path(tmp))
            federated.append(fed)
            pooled.append(pool)
            majority.append(guess)
            aggregated += counts
            per_seed += [["federated", seed, *(fed[k] for k in FIGURES)], ["pooled", seed, *(pool[k] for k in FIGURES)]]
            print(per_seed[-2], per_seed[-1], flush=True)
        scaling = [scaling_row(n, scaling_rounds, Path(tmp)) for n in fleets]
    headers = ["model", "accuracy", "balanced accuracy", "macro F1"]
    mean = lambda rows, k: statistics.mean(r[k] for r in rows)  # noqa: E731
    table = format_table(headers, [["federated (FedLedger)", *(mean(federated, k) for k in FIGURES)],
                                   ["pooled", *(mean(pooled, k) for k in FIGURES)],
                                   ["most frequent class", statistics.mean(majority), 1 / len(VITAL_SIGNS_CLASSES),
                                    float("nan")]])
    seeds_table = format_table(["model", "seed", *headers[1:]], per_seed)
    scaling_table = format_table(["devices", "trained per round", "s per round", "s per trained device",
                                  "transactions per round", "gas per round", "set-up transactions",
                                  "data generation s", "study wall s"], scaling)
    print(seeds_table, table, scaling_table, sep="\n\n")
    if args.smoke:
        problems = [f"{row[0]} devices: no device trained" for row in scaling if not row[1] > 0]
        problems += [f"{devices} devices: a round aggregated {n} updates, more than the fleet" for n in aggregated
                     if n > devices]
        problems += [f"federated accuracy {f['accuracy']} is not a rate" for f in federated
                     if not 0.0 <= f["accuracy"] <= 1.0]
        end_smoke(problems)
    body = (
        f"{cpu_description()}. Simulated wearables (`fedledger/learning/vital_signs.py`, neurokit2 0.2.12, nothing "
        f"downloaded): one patient per device, 8 windows of 20 s of ECG, PPG and respiration at 25 Hz (the last 3 "
        f"are its test windows), labelled stable, serious or critical from the NEWS2 bands of the window's heart and "
        f"breathing rates. Model: a 1-D CNN (convolution widths {HIDDEN}, then one linear layer), Adam lr {LR}. "
        f"Federated: a FedLedger study (loose, embedded EVM, FedAvg) of {devices} devices and {rounds} rounds of "
        f"{LOCAL_STEPS} local steps (batch {BATCH}); each round draws each device with probability {FRACTION} "
        f"(`[protocol] sample_fraction`), and each drawn device drops out with probability {DROPOUT} or straggles "
        f"past the round's window with probability {STRAGGLER} (`[faults]`): "
        f"{statistics.mean(aggregated):.1f} devices' updates were aggregated per round on average (min "
        f"{min(aggregated)}, max {max(aggregated)}). Scored after the last round on all devices' test windows "
        f"together. Pooled: the same CNN on all devices' training windows, {rounds * LOCAL_STEPS} steps of batch "
        f"{POOLED_BATCH}. Mean over seeds {', '.join(map(str, args.seeds))}:\n\n{table}\n\nPer seed:\n\n"
        f"{seeds_table}\n\nRound time against the number of devices (seed 42, {scaling_rounds} rounds, each "
        f"device drawn with probability {SCALING_FRACTION}, no faults, py-evm engine; one anchored round names "
        f"at most 128 updates, and a study likely to draw more is refused): seconds per round are the "
        f"protocol's (the drawn devices train, sign and post; the coordinator collects, screens, aggregates and "
        f"anchors one transaction), without the simulation's scoring of every device after each round; the "
        f"set-up enrols every device in the consortium contract and funds it.\n\n{scaling_table}")
    write_section("wearables", f"Wearable fleet: risk level from vital signs, {devices} devices, federated "
                  "against pooled; round time against 100 / 300 / 1000 devices", body)


if __name__ == "__main__":
    main()
