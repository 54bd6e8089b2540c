"""Leakage, measured: how well an honest-but-curious aggregator reconstructs Fed-Heart-Disease
training records from what it sees, in the clear, under secure aggregation, and under DP.

Every training record of the four hospitals (486) is made a member with that one record. From
the initial global model (FLamby's logistic regression, seed 0) each member trains 10 SGD steps
at lr 0.1, and the aggregator runs the attack of `fedledger.privacy.leakage` (weight change over
bias change: exact for a plain one-record update) on what it holds:
- plain: the member's own update.
- secure aggregation, k members: only the sum of k members' updates (random groups). Secure
  aggregation reveals exactly that sum (tests/privacy/test_privacy_secagg.py checks it bit for
  bit), so the sum of the plain updates is taken directly here instead of running the masking
  protocol. Each member's record is scored against the reconstruction from its group's sum.
- DP-SGD at epsilon e: the member trained with `train_dp_sgd` instead: sampling rate 1 (the record
  is in every batch), clipping norm 1, the noise calibrated to spend e (delta 1e-5) in this one
  release of 10 steps. A record's noise comes from the same seed at every epsilon, so the rows
  compare the same draws at different scales.
- DP-FedAvg at epsilon e: the plain update through `privatize_update`: its change clipped to norm
  1, Gaussian noise calibrated to e for one release. With s noise shares a member adds 1/sqrt(s)
  of that noise, and the guarantee is for the sum of s updates: the "1/4 share" row is what an
  aggregator sees of one member when there is no secure aggregation to hide the share.
Scored: the relative L2 error ||reconstruction - record|| / ||record||. The features are
standardized, so guessing the all-zero (average) record scores exactly 1.

    python benchmarks/leakage.py [--records 486]
    python benchmarks/leakage.py --smoke    # 10 records; exit 1 if the plain attack is not exact
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402

from fedledger.learning import (  # noqa: E402
    ClientData,
    TrainConfig,
    build_model,
    get_flat_params,
    load_fed_heart_disease,
    train_local,
)
from fedledger.learning.dp_sgd import train_dp_sgd  # noqa: E402
from fedledger.learning.models import Predictor  # noqa: E402
from fedledger.privacy.accountant import calibrate_noise  # noqa: E402
from fedledger.privacy.client_dp import privatize_update  # noqa: E402
from fedledger.privacy.leakage import reconstruction_error  # noqa: E402
from fedledger.report import format_table  # noqa: E402

TRAINING = TrainConfig(lr=0.1, batch_size=1, local_steps=10)
DELTA = 1e-5
CLIP = 1.0                              # DP-SGD: each record's gradient; DP-FedAvg: the update's change
GROUP_SIZES = (2, 3, 5, 10)
DP_SGD_EPSILONS = (100.0, 30.0, 8.0, 3.0, 1.0)
DP_FEDAVG = ((8.0, 1), (1.0, 1), (8.0, 4))   # (epsilon, noise shares)


def one_record_members(limit: int) -> list[ClientData]:
    """The first `limit` training records of the four hospitals, each a member of its own."""
    rows = [(h, i) for h in load_fed_heart_disease() for i in range(h.num_train)][:limit]
    return [ClientData(f"{h.name}-{i}", h.x_train[i:i + 1], h.y_train[i:i + 1], h.x_train[i:i + 1], h.y_train[i:i + 1])
            for h, i in rows]


def initial_model(features: int) -> Predictor:
    """The global model every member starts from: the round the aggregator attacks."""
    return build_model("logreg", features, seed=0)


def row(mechanism: str, noise: str, errors: list[float]) -> list[object]:
    """One table row: the errors' median and mean, and the share of records within 1%, within 10%,
    and closer than guessing the average record."""
    e = np.asarray(errors)
    return [mechanism, noise, len(e), f"{np.median(e):.3g}", f"{e.mean():.3g}", f"{np.mean(e <= 0.01):.0%}",
            f"{np.mean(e <= 0.1):.0%}", f"{np.mean(e < 1):.0%}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=486, help="how many training records to attack (all: 486)")
    add_smoke_flag(parser, f"{max(GROUP_SIZES)} records (one group of the largest secure-aggregation size)")
    args = parser.parse_args()
    if args.smoke:
        args.records = max(GROUP_SIZES)
    started = time.perf_counter()
    members = one_record_members(args.records)
    records = [m.x_train[0] for m in members]
    g = get_flat_params(initial_model(members[0].num_features))
    plain = [train_local(initial_model(m.num_features), m, TRAINING, seed=i)
             for i, m in enumerate(members)]
    rows = [row("plain", "-", [reconstruction_error(g, u, x) for u, x in zip(plain, records)])]
    order = np.random.default_rng(0).permutation(len(members))
    for k in GROUP_SIZES:
        errors = []
        for group in order[:len(order) - len(order) % k].reshape(-1, k):
            total = g + sum(plain[j].astype(np.float64) - g for j in group)
            errors += [reconstruction_error(g, total, records[j]) for j in group]
        rows.append(row(f"secure aggregation, sum of {k}", "-", errors))
    for eps in DP_SGD_EPSILONS:
        noise = calibrate_noise(eps, DELTA, sample_rate=1.0, steps=TRAINING.local_steps, releases=1)
        errors = [reconstruction_error(g, train_dp_sgd(initial_model(m.num_features), m, TRAINING,
                                                       noise_multiplier=noise, max_grad_norm=CLIP, sample_rate=1.0,
                                                       seed=i), x)
                  for i, (m, x) in enumerate(zip(members, records))]
        rows.append(row(f"DP-SGD, epsilon {eps:g}", f"{noise:.3f}", errors))
        print(rows[-1], flush=True)
    for eps, shares in DP_FEDAVG:
        noise = calibrate_noise(eps, DELTA, sample_rate=1.0, steps=1, releases=1)
        errors = [reconstruction_error(g, privatize_update(u, g, clip_norm=CLIP, noise_multiplier=noise,
                                                           noise_shares=shares, seed=i), x)
                  for i, (u, x) in enumerate(zip(plain, records))]
        share = "" if shares == 1 else f", 1/{shares} share"
        rows.append(row(f"DP-FedAvg, epsilon {eps:g}{share}", f"{noise / shares ** 0.5:.3f}", errors))
    table = format_table(["what the aggregator sees", "noise multiplier", "records", "median error", "mean error",
                          "within 1%", "within 10%", "error < 1"], rows)
    print(table)
    if args.smoke:   # the attack is exact on a plain update, and never so under a protection
        end_smoke([f"{r[0]}: {r[5]} of records reconstructed within 1%" for r in rows
                   if r[5] != ("100%" if r[0] == "plain" else "0%")])
    body = (f"{len(members)} Fed-Heart-Disease training records, each a one-record member; logistic regression "
            "from the initial global model (seed 0), 10 SGD steps at lr 0.1. The aggregator divides the update's "
            "weight change by its bias change (`fedledger.privacy.leakage`). Secure aggregation: the sum of k "
            "members' updates, random groups (what the protocol reveals), scored against each member's record. "
            "DP-SGD: sampling rate 1, each record's gradient clipped to norm 1, noise calibrated to epsilon "
            "(delta 1e-5) for this one release of 10 steps. DP-FedAvg: the change clipped to norm 1 plus "
            "Gaussian noise calibrated for one release; 1/4 share: one member's share when 4 shares make up "
            "the noise, as an aggregator without secure aggregation sees it. Noise multiplier: of the noise "
            "on what the aggregator sees (DP-SGD: each step's). Error: ||reconstruction - record|| / ||record||; "
            "guessing the average (all-zero) record scores 1. Means are dominated by the few records whose "
            f"noisy bias change is near zero. Run time {time.perf_counter() - started:.0f} s.\n\n{table}")
    write_section("leakage", "Leakage: reconstructing a training record (Fed-Heart-Disease)", body)


if __name__ == "__main__":
    main()
