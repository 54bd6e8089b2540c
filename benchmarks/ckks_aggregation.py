"""CKKS (TenSEAL) aggregation of 10 members at 1k, 100k and 1M parameters: seconds per step and
ciphertext bytes, against the plain weighted mean of the same updates, and the largest error.

Members encrypt in parallel in a deployment, so one total is one member's encryption plus the
aggregator's additions plus one key holder's decryption; the other counts every member's
encryption one after another. Every step runs here in one process.

    python benchmarks/ckks_aggregation.py [--members 10] [--repeats 3]
    python benchmarks/ckks_aggregation.py --smoke    # 3 members at 1k parameters; exit 1 if inexact
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
from fedledger.privacy import ckks  # noqa: E402
from fedledger.report import format_table  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
# CKKS is approximate: the full run's errors are below 1e-6; far above that, the scheme is broken
MAX_ERROR = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    add_smoke_flag(parser, "3 members at 1k parameters, 1 repeat")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.repeats = 3, 1
    sizes = SIZES[:1] if args.smoke else SIZES
    rng = np.random.default_rng(0)
    keys = ckks.CkksKeys.generate()
    public = keys.public_context()
    rows, at_100k = [], None
    for size in sizes:
        g = rng.normal(0, 1, size).astype(np.float32)
        updates = [ClientUpdate(f"m{i}", (g + rng.normal(0, 0.05, size)).astype(np.float32), int(rng.integers(20, 200)))
                   for i in range(args.members)]
        enc, adds, dec, plain, err = [], [], [], [], 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            ciphertexts = [ckks.encrypt(public, ckks.weighted_input(u.params, u.num_samples)) for u in updates]
            enc.append((time.perf_counter() - start) / len(updates))
            start = time.perf_counter()
            total = ckks.add(public, ciphertexts)
            adds.append(time.perf_counter() - start)
            start = time.perf_counter()
            mean = ckks.weighted_mean(keys.decrypt(total))
            dec.append(time.perf_counter() - start)
            start = time.perf_counter()
            expected = FedAvg().aggregate(g, updates, {})[0]
            plain.append(time.perf_counter() - start)
            err = max(err, float(np.abs(mean - expected).max()))
        phase = statistics.median(enc) + statistics.median(adds) + statistics.median(dec)
        serial = args.members * statistics.median(enc) + statistics.median(adds) + statistics.median(dec)
        if size == 100_000:
            at_100k = serial
        rows.append([size, f"{statistics.median(enc):.3f}", f"{statistics.median(adds):.3f}",
                     f"{statistics.median(dec):.3f}", f"{phase:.2f}", f"{serial:.2f}",
                     f"{statistics.median(plain):.4f}",
                     -(-(size + 1) // ckks.SLOTS), len(ciphertexts[0]), 4 * size, f"{err:.1e}"])
        print(rows[-1], flush=True)
    table = format_table(["parameters", "encrypt s (one member)", "add s (aggregator)", "decrypt s",
                          "total s (members in parallel)", "total s (one after another)", "plain FedAvg s",
                          "chunks", "ciphertext bytes", "plain bytes", "max error"], rows)
    if args.smoke:
        print(table)
        end_smoke([f"{row[0]} parameters: max error {row[-1]} from plain FedAvg, above {MAX_ERROR:g}"
                   for row in rows if float(row[-1]) > MAX_ERROR])
    verdict = "met" if at_100k is not None and at_100k < 2 else "NOT met"
    body = (f"{args.members} members, CKKS with polynomial degree {ckks.POLY_MODULUS_DEGREE} and a 2^{ckks.SCALE_BITS} "
            f"scale, medians of {args.repeats} repeats. Each member encrypts [samples x parameters, samples]; "
            "the aggregator adds the ciphertexts with the public context only; one key holder decrypts and "
            f"divides. A ciphertext is {ckks.SLOTS}-value chunks, one CKKS ciphertext each, behind a small "
            "header (chunks: how many per member). Max error: largest difference from plain FedAvg of the "
            f"same updates. Public context (public key only): {len(public)} bytes.\n\n{table}\n\n"
            f"Target (10 members at 100k parameters in under 2 s in total, every member's encryption "
            f"counted one after another): {at_100k:.2f} s, {verdict}.")
    print(table, f"\n100k total {at_100k:.2f} s: {verdict}")
    write_section("ckks-aggregation", "Homomorphic (CKKS) aggregation", body)


if __name__ == "__main__":
    main()
