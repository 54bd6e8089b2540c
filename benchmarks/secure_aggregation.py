"""Secure aggregation against plain aggregation, side by side, at 10, 50 and 100 members and 0%,
10% and 30% dropout: seconds and bytes per member, and the aggregation phase. Two secure variants:
SecAgg (Bonawitz et al.: every pair of members masks, everyone holds shares of everyone) and
SecAgg+ (Bell et al.: masks and shares only between neighbours of a Harary graph of degree k).

All aggregate the same sample-weighted fixed-point vectors and give the same bytes (checked on
every run). Plain: each member sends its float32 parameters and sample count; the aggregator
computes the weighted mean. Secure: each member advertises two X25519 keys, sends its sealed
Shamir shares, masks [w x q, w] and answers the unmasking request; the aggregator unmasks the sum.
SecAgg uses threshold n/2 + 1 of n; SecAgg+ the degree and threshold of `secagg_plus_parameters`
for up to 30% dropouts and 10% corrupt members, fixed before the round whatever the dropout.
Members work in parallel in a deployment, so the aggregation phase is the slowest member's time
plus the aggregator's. Every step runs in this one process, one after the other, and is timed
on its own.

    python benchmarks/secure_aggregation.py [--params 10000] [--repeats 5]
    python benchmarks/secure_aggregation.py --smoke   # 10 members, 1000 parameters, once; writes nothing
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402

from fedledger.aggregation import ClientUpdate, FedAvg  # noqa: E402
from fedledger.aggregation import fixedpoint as fx  # noqa: E402
from fedledger.privacy import (  # noqa: E402
    MaskGraph,
    SecAggMember,
    secagg_plus_parameters,
    shamir,
    unmask_sum,
)
from fedledger.report import format_table  # noqa: E402

MEMBERS = (10, 50, 100)
DROPOUT = (0.0, 0.1, 0.3)
CONTEXT = b"benchmark round"
COLUMNS = ["members", "dropout", "protocol", "graph degree, threshold", "member ms", "aggregator ms",
           "bytes/member", "phase ratio"]


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def plain(global_params: np.ndarray, updates: list[ClientUpdate]) -> tuple[np.ndarray, float, float]:
    """(model, slowest member seconds, aggregator seconds) of plain FedAvg."""
    member = max(_timed(lambda u: u.params.tobytes(), u)[1] for u in updates)   # serialize what it sends
    (model, _), agg = _timed(FedAvg().aggregate, global_params, updates, {})
    return model, member, agg


def secure(updates: list[ClientUpdate], dropped: set[str], threshold: int, degree: int | None
           ) -> tuple[np.ndarray, float, float, int]:
    """(model, slowest member seconds, aggregator seconds, bytes sent per member) of secure
    aggregation on the complete graph (`degree` None) or on the SecAgg+ graph of that degree."""
    names = [u.client for u in updates]
    members = {n: SecAggMember(n, CONTEXT) for n in names}
    # every party derives the graph itself from the roster and the context: each pays for it
    graph, graph_seconds = (None, 0.0) if degree is None else _timed(MaskGraph.harary, names, degree, CONTEXT)
    seconds = dict.fromkeys(names, graph_seconds)
    sent = dict.fromkeys(names, 0)
    roster = []
    for n in names:
        keys, t = _timed(members[n].public_keys)
        roster.append(keys)
        seconds[n] += t
        sent[n] += len(keys.cipher_key) + len(keys.mask_key)
    outgoing = {}
    for n in names:
        outgoing[n], t = _timed(members[n].share_secrets, roster, threshold, graph)
        seconds[n] += t
        sent[n] += sum(len(c) for c in outgoing[n].values())
    for sender, sealed in outgoing.items():
        for recipient, ciphertext in sealed.items():
            _, t = _timed(members[recipient].receive_share, sender, ciphertext)
            seconds[recipient] += t
    masked = {}
    for u in updates:
        if u.client in dropped:
            continue
        x = np.append(fx.to_fixed(u.params) * u.num_samples, u.num_samples)
        masked[u.client], t = _timed(members[u.client].mask, x)
        seconds[u.client] += t
        sent[u.client] += masked[u.client].nbytes
    survivors = list(masked)
    revealed = []
    for n in survivors:
        answer, t = _timed(members[n].reveal, survivors, sorted(dropped))
        revealed.append(answer)
        seconds[n] += t
        sent[n] += len(answer) * len(shamir.encode((1, 0)))     # one encoded share per member it holds for
    total, agg = _timed(unmask_sum, masked, roster, revealed, threshold, CONTEXT, graph)
    mean, t = _timed(lambda: fx.to_float32(fx.divide_rounded(total[:-1], int(total[-1]))))
    return (mean, max(seconds[n] for n in survivors), agg + graph_seconds + t,
            int(statistics.mean(sent[n] for n in survivors)))


def measure(members: tuple[int, ...], dropouts: tuple[float, ...], params: int, repeats: int
            ) -> tuple[list[list], dict[str, float]]:
    """The table's rows, and the phase ratios at 100 members and 10% dropout (the target) by
    variant; SystemExit if a secure result differs from plain FedAvg by one byte."""
    rng = np.random.default_rng(0)
    rows, target = [], {}
    for n in members:
        g = rng.normal(0, 1, params).astype(np.float32)
        updates = [ClientUpdate(f"m{i:03d}", (g + rng.normal(0, 0.05, params)).astype(np.float32),
                                int(rng.integers(20, 200))) for i in range(n)]
        degree, sparse_threshold = secagg_plus_parameters(n)
        variants = {"SecAgg": (n // 2 + 1, None), "SecAgg+": (sparse_threshold, degree)}
        for rate in dropouts:
            dropped = {u.client for u in updates[:round(rate * n)]}
            member_s = {name: [] for name in ("plain", *variants)}
            agg_s = {name: [] for name in ("plain", *variants)}
            size = {"plain": 4 * params}
            for _ in range(repeats):
                model, pm, pa = plain(g, [u for u in updates if u.client not in dropped])
                member_s["plain"].append(pm), agg_s["plain"].append(pa)
                for name, (threshold, k) in variants.items():
                    secured, sm, sa, size[name] = secure(updates, dropped, threshold, k)
                    if secured.tobytes() != model.tobytes():
                        raise SystemExit(f"{name} differs from plain at {n} members, {rate:.0%} dropout")
                    member_s[name].append(sm), agg_s[name].append(sa)
            member = {name: statistics.median(s) for name, s in member_s.items()}
            agg = {name: statistics.median(s) for name, s in agg_s.items()}
            rows.append([n, f"{rate:.0%}", "plain", "", f"{member['plain'] * 1e3:.2f}",
                         f"{agg['plain'] * 1e3:.1f}", size["plain"], "1.0x"])
            for name, (threshold, k) in variants.items():
                ratio = (member[name] + agg[name]) / (member["plain"] + agg["plain"])
                if (n, rate) == (100, 0.1):
                    target[name] = ratio
                rows.append([n, f"{rate:.0%}", name, f"k={n - 1 if k is None else k}, t={threshold}",
                             f"{member[name] * 1e3:.1f}", f"{agg[name] * 1e3:.1f}", size[name], f"{ratio:.1f}x"])
            for row in rows[-3:]:
                print(row, flush=True)
    return rows, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    add_smoke_flag(parser, "10 members, 1000 parameters, 0%% and 10%% dropout, once")
    args = parser.parse_args()
    if args.smoke:
        rows, _ = measure((10,), (0.0, 0.1), 1000, 1)
        print(format_table(COLUMNS, rows), "\nsmoke: every secure result equals plain FedAvg byte for byte")
        end_smoke([])     # a result that differs from plain has exited already
    started = time.perf_counter()
    rows, target = measure(MEMBERS, DROPOUT, args.params, args.repeats)
    table = format_table(COLUMNS, rows)
    verdict = "; ".join(f"{name} {ratio:.1f}x, {'met' if ratio <= 3 else 'NOT met'}" for name, ratio in target.items())
    body = (f"{args.params} parameters per member, medians of {args.repeats} repeats. SecAgg: complete graph "
            "(k = n - 1), threshold n/2 + 1. SecAgg+: Harary graph of degree k with the threshold t of "
            "`secagg_plus_parameters(n)` (up to 30% dropouts and 10% corrupt members; privacy failure at "
            "most 2^-40, unrecoverable round at most 2^-20), the same for every dropout rate. member ms: the "
            "slowest surviving member's own work (graph, keys, sealing and opening shares, masking, answering "
            "the unmasking request); aggregator ms: the weighted mean (plain) or the graph, unmasking and the "
            "mean (secure); bytes: what one member sends (plain: its float32 parameters; secure: keys, sealed "
            "shares for each holder, the masked int64 vector and its revealed shares). Phase ratio: slowest "
            "member + aggregator, over plain. Every secure result equals plain FedAvg of the survivors byte "
            f"for byte. Run time {time.perf_counter() - started:.0f} s.\n\n{table}\n\n"
            f"Target (secure phase at most 3 x plain at 100 members, 10% dropout): {verdict}.")
    print(table, f"\ntarget: {verdict}")
    write_section("secure-aggregation", "Secure aggregation against plain aggregation", body)


if __name__ == "__main__":
    main()
