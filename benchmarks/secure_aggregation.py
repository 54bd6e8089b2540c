"""Secure aggregation (pairwise masking) against plain aggregation, side by side, at 10, 50 and
100 members and 0%, 10% and 30% dropout: seconds and bytes per member, and the aggregation phase.

Both aggregate the same sample-weighted fixed-point vectors and give the same bytes (checked on
every run). Plain: each member sends its float32 parameters and sample count; the aggregator
computes the weighted mean. Secure: each member advertises two X25519 keys, sends its sealed
Shamir shares, masks [w x q, w] and answers the unmasking request; the aggregator unmasks the sum.
Members work in parallel in a deployment, so the aggregation phase is the slowest member's time
plus the aggregator's. Every step runs in this one process, one after the other, and is timed
on its own.

    python benchmarks/secure_aggregation.py [--params 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402

from fedledger.aggregation import ClientUpdate, FedAvg  # noqa: E402
from fedledger.aggregation import fixedpoint as fx  # noqa: E402
from fedledger.privacy import SecAggMember, shamir, unmask_sum  # noqa: E402
from fedledger.report import format_table  # noqa: E402

MEMBERS = (10, 50, 100)
DROPOUT = (0.0, 0.1, 0.3)
CONTEXT = b"benchmark round"


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def plain(global_params: np.ndarray, updates: list[ClientUpdate]) -> tuple[np.ndarray, float, float]:
    """(model, slowest member seconds, aggregator seconds) of plain FedAvg."""
    member = max(_timed(lambda u: u.params.tobytes(), u)[1] for u in updates)   # serialize what it sends
    (model, _), agg = _timed(FedAvg().aggregate, global_params, updates, {})
    return model, member, agg


def secure(updates: list[ClientUpdate], dropped: set[str], threshold: int
           ) -> tuple[np.ndarray, float, float, int]:
    """(model, slowest member seconds, aggregator seconds, bytes sent per member) of secure aggregation."""
    names = [u.client for u in updates]
    members = {n: SecAggMember(n, CONTEXT) for n in names}
    seconds = dict.fromkeys(names, 0.0)
    sent = dict.fromkeys(names, 0)
    roster = []
    for n in names:
        keys, t = _timed(members[n].public_keys)
        roster.append(keys)
        seconds[n] += t
        sent[n] += len(keys.cipher_key) + len(keys.mask_key)
    outgoing = {}
    for n in names:
        outgoing[n], t = _timed(members[n].share_secrets, roster, threshold)
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
        sent[n] += len(answer) * len(shamir.encode((1, 0)))     # one encoded share per member asked about
    total, agg = _timed(unmask_sum, masked, roster, revealed, threshold, CONTEXT)
    mean, t = _timed(lambda: fx.to_float32(fx.divide_rounded(total[:-1], int(total[-1]))))
    return mean, max(seconds[n] for n in survivors), agg + t, int(statistics.mean(sent[n] for n in survivors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, target = [], None
    started = time.perf_counter()
    for n in MEMBERS:
        g = rng.normal(0, 1, args.params).astype(np.float32)
        updates = [ClientUpdate(f"m{i:03d}", (g + rng.normal(0, 0.05, args.params)).astype(np.float32),
                                int(rng.integers(20, 200))) for i in range(n)]
        for rate in DROPOUT:
            dropped = {u.client for u in updates[:round(rate * n)]}
            threshold = n // 2 + 1
            p_member, p_agg, s_member, s_agg, size = [], [], [], [], 0
            for _ in range(args.repeats):
                model, pm, pa = plain(g, [u for u in updates if u.client not in dropped])
                secured, sm, sa, size = secure(updates, dropped, threshold)
                if secured.tobytes() != model.tobytes():
                    raise SystemExit(f"secure aggregation differs from plain at {n} members, {rate:.0%} dropout")
                p_member.append(pm), p_agg.append(pa), s_member.append(sm), s_agg.append(sa)
            plain_phase = statistics.median(p_member) + statistics.median(p_agg)
            secure_phase = statistics.median(s_member) + statistics.median(s_agg)
            ratio = secure_phase / plain_phase
            if (n, rate) == (100, 0.1):
                target = ratio
            rows.append([n, f"{rate:.0%}", f"{statistics.median(p_member) * 1e3:.2f}",
                         f"{statistics.median(p_agg) * 1e3:.1f}", 4 * args.params,
                         f"{statistics.median(s_member) * 1e3:.1f}", f"{statistics.median(s_agg) * 1e3:.1f}", size,
                         f"{ratio:.1f}x"])
            print(rows[-1], flush=True)
    table = format_table(["members", "dropout", "plain member ms", "plain aggregator ms", "plain bytes/member",
                          "secure member ms", "secure aggregator ms", "secure bytes/member", "phase ratio"], rows)
    verdict = "met" if target is not None and target <= 3 else "NOT met"
    body = (f"{args.params} parameters per member, threshold n/2 + 1, medians of {args.repeats} repeats; "
            "member ms: the slowest surviving member's own work (keys, sealing and opening shares, masking, "
            "answering the unmasking request); aggregator ms: the weighted mean (plain) or unmasking and the "
            "mean (secure); bytes: what one member sends (plain: its float32 parameters; secure: keys, sealed "
            "shares for every member, the masked int64 vector and its revealed shares). Phase ratio: secure "
            "(slowest member + aggregator) over plain. Every secure result equals plain FedAvg of the "
            f"survivors byte for byte. Run time {time.perf_counter() - started:.0f} s.\n\n{table}\n\n"
            f"Target (secure phase at most 3 x plain at 100 members, 10% dropout): {target:.1f}x, {verdict}.")
    print(table, f"\ntarget ratio {target:.1f}x: {verdict}")
    write_section("secure-aggregation", "Secure aggregation against plain aggregation", body)


if __name__ == "__main__":
    main()
