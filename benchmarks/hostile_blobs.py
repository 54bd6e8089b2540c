"""What a hostile update costs the aggregator that screens it: time and peak memory of
`screen_updates` on blobs of up to 64 MB built to be expensive, side by side with an honest update
of the same model. Target (issue 14): any hostile blob screened in at most 1 s and at most twice
its size in memory, its rejection reason at most 300 characters.

Each blob is screened in a fresh process, so that its peak resident memory is its own: the child
imports everything and screens an honest update first, then the blob; the figure is how far the
blob raised the process's peak.

    python benchmarks/hostile_blobs.py              # 64 MB blobs, a 10,000-parameter model
    python benchmarks/hostile_blobs.py --smoke      # 1 MB blobs; exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import end_smoke, write_section  # noqa: E402

MB = 1 << 20
PARAMETERS = 10_000
MAX_SECONDS, MAX_MEMORY_RATIO, MAX_REASON = 1.0, 2.0, 300


def empty_tensors(size: int) -> bytes:
    """A safetensors file of as many empty tensors as fit in `size` bytes of header."""
    entry = '"t{:07d}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    count = max(1, (size - 16) // (len(entry.format(0)) + 1))
    text = ("{" + ",".join(entry.format(i) for i in range(count)) + "}").encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def huge_header_claim(size: int) -> bytes:
    """A header length of 2^63 - 1 bytes, then `size` bytes that are not its header."""
    return struct.pack("<Q", 2**63 - 1) + b"{" * (size - 8)


def long_vector(size: int) -> bytes:
    """A canonical float32 vector of `size` bytes: well-formed, but not the model's size."""
    import numpy as np

    from fedledger.store import encode_params
    return encode_params(np.zeros(size // 4 - 32, np.float32))


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def model_sized_empty_tensors(size: int) -> bytes:
    """Empty tensors in a blob exactly as long as the model's update: past the size check."""
    from fedledger.store.codec import params_nbytes
    return empty_tensors(params_nbytes(PARAMETERS))


BLOBS = {"empty tensors (a million in 64 MB)": empty_tensors, "header claiming 2^63 bytes": huge_header_claim,
         "a parameter vector of that size": long_vector, "random bytes": random_bytes,
         "empty tensors, the update's exact size": model_sized_empty_tensors}


def screen_in_child(store: Path, digest: str) -> dict:
    """Run this file as a child that screens `digest` (after an honest update) and reports."""
    out = subprocess.run([sys.executable, __file__, "--child", str(store), digest], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.splitlines()[-1])


def child(store_dir: str, digest: str) -> None:
    import numpy as np
    import safetensors.numpy

    from fedledger.store import ArtifactStore
    from fedledger.validation import Candidate, screen_updates

    store = ArtifactStore(store_dir)
    global_params = np.zeros(PARAMETERS, np.float32)
    honest = Candidate("0xhonest", store.put_params(global_params + np.float32(0.01)), 10)
    started = time.perf_counter()
    screen_updates(store, global_params, [honest])
    honest_seconds = time.perf_counter() - started
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    accepted, rejected = screen_updates(store, global_params, [Candidate("0xhostile", digest, 10)])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    try:    # what screening did before the size and header checks: hand the bytes to the parser
        safetensors.numpy.load(store.get(digest))
    except Exception:  # noqa: BLE001  (any refusal is the parser's answer; only its cost matters)
        pass
    unguarded = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "honest_seconds": honest_seconds, "unguarded_seconds": unguarded,
                      "memory": max(0, peak - baseline),
                      "accepted": len(accepted), "code": rejected[0].code.label if rejected else None,
                      "reason": rejected[0].reason if rejected else ""}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="1 MB blobs; exit 1 if a target is missed")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from fedledger.report import format_table
    from fedledger.store import ArtifactStore

    size = MB if args.smoke else 64 * MB
    rows, missed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(Path(tmp) / "store")
        for name, make in BLOBS.items():
            blob = make(size)
            r = screen_in_child(store.root, store.put(blob))
            ratio = r["memory"] / len(blob)
            rows.append([name, f"{len(blob) / MB:.1f}", f"{r['seconds']:.4f}", f"{r['honest_seconds']:.4f}",
                         f"{r['unguarded_seconds']:.3f}",
                         f"{r['memory'] / MB:.1f}", f"{ratio:.2f}", r["code"], str(len(r["reason"]))])
            if r["accepted"] or r["seconds"] > MAX_SECONDS or ratio > MAX_MEMORY_RATIO or len(r["reason"]) > MAX_REASON:
                missed.append(name)
    table = format_table(["hostile blob", "MB", "screening s", "honest update s", "parser alone s", "peak memory MB",
                          "memory / size", "rejected as", "reason chars"], rows)
    print(table)
    if args.smoke:
        end_smoke([f"{name} missed a target" for name in missed])
    write_section("hostile-blobs", "Hostile blobs: what screening one costs", f"""
Screening one hostile update (`screen_updates`, a {PARAMETERS:,}-parameter model), each in a fresh
process after an honest update of the same model (its time in the fourth column); "parser alone"
is what handing the same bytes straight to safetensors costs, as screening did before it checked
sizes and headers first; peak memory is how far screening the hostile blob raised the process's
peak resident memory. Targets: at most
{MAX_SECONDS:g} s, at most {MAX_MEMORY_RATIO:g}x the blob's size, a reason of at most {MAX_REASON}
characters.

{table}
""")


if __name__ == "__main__":
    main()
