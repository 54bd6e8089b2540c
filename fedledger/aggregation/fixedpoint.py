"""Fixed-point arithmetic that makes aggregation bit-identical in any order and on any machine.

A float sum over clients depends on the order of the additions, and validators receive updates in
different orders. Parameters are therefore mapped to integers on a grid of 2**-24 (FRAC_BITS = 24
fractional bits, resolution about 6e-8), weighted sums are taken in int64 (exact, so associative
and order independent), and the one division rounds half to even on integers.

Overflow bound: parameters satisfy |x| <= MAX_ABS = 2**15, so |q| <= 2**39; the weights (sample
counts) sum to at most MAX_TOTAL_SAMPLES = 2**23, so every weighted sum stays within 2**62 < 2**63.
Inputs outside these bounds are rejected by the caller rather than wrapped around silently.
Squared norms and distances (for Krum, norm clipping and screening) exceed int64, so they are
summed exactly from 20-bit halves and returned as Python ints (see `squared_norms`).
float32 -> fixed is exact for |x| >= 2**-1 and rounds smaller magnitudes to the grid; fixed ->
float32 is exact for |x| < 1 and otherwise rounds to nearest even, both deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FRAC_BITS = 24
SCALE = float(2**FRAC_BITS)
MAX_ABS = float(2**15)
MAX_FIXED = 2**39  # MAX_ABS * SCALE
MAX_TOTAL_SAMPLES = 2**23


def peak(x: np.ndarray) -> float:
    """max |x| (NaN if x holds one) from two reductions, without the temporary np.abs(x) makes."""
    return max(float(x.max()), -float(x.min()))


def to_fixed(x: np.ndarray) -> np.ndarray:
    """float -> int64 on the grid, rounding half to even; the caller bounds |x| (NaN or |x| >= 2**39 would wrap)."""
    # Scaling by a power of two is exact in float64, so only the final rint rounds.
    scaled = np.multiply(x, SCALE, dtype=np.float64)
    return np.rint(scaled, out=scaled).astype(np.int64)


def to_float(q: np.ndarray) -> np.ndarray:
    """int64 on the grid -> float64, exact while |q| < 2**53."""
    x = q.astype(np.float64)
    x /= SCALE
    return x


def to_float32(q: np.ndarray) -> np.ndarray:
    return to_float(q).astype(np.float32)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-weighted mean of int64 `values` (clients x params), rounded half to even.

    Exact integer sum, then floor division with the remainder deciding the rounding; ties go to
    the even quotient, so rounding has no bias toward either sign.
    """
    return divide_rounded((values * weights[:, None]).sum(axis=0), weights.sum())


# Exact sums at memory speed. float64 holds every integer below 2**53 exactly, and a product or sum
# of such integers is exact (hence the same in any order) while its magnitude stays below 2**53. So
# where the bound allows, the integer arithmetic runs on float64, whose vectorized operations are
# several times faster than numpy's int64 multiply and divide; the results are the same integers.
_EXACT_FLOAT = 2**52        # the bound below which `divide_rounded` may divide on floats
_SUM_CHUNK = 1 << 14        # columns per pass: the float temporaries stay in the CPU's L2 cache


def weighted_sum(vectors: Sequence[np.ndarray], weights: Sequence[int]) -> np.ndarray:
    """sum_i weights[i] * to_fixed(vectors[i]) as int64, exactly: the same bytes as
    `(np.stack([to_fixed(v) for v in vectors]) * weights[:, None]).sum(axis=0)` in any order.

    `vectors`: float32, one length, finite with |x| <= MAX_ABS; `weights`: positive ints summing to
    at most MAX_TOTAL_SAMPLES (the caller checks both, as `Strategy.aggregate` does). Nothing is
    stacked: each column chunk is rounded to the grid, weighted and added while it is in cache.
    """
    weights = [int(w) for w in weights]
    size = vectors[0].size
    in_float = math.ceil(max(peak(v) for v in vectors) * SCALE) * sum(weights) < _EXACT_FLOAT
    acc = np.zeros(size, dtype=np.float64 if in_float else np.int64)
    grid = np.empty(_SUM_CHUNK, dtype=np.float32 if in_float else np.float64)
    weighted = np.empty(_SUM_CHUNK, dtype=acc.dtype)
    for start in range(0, size, _SUM_CHUNK):
        stop = min(size, start + _SUM_CHUNK)
        part, q, qw = acc[start:stop], grid[:stop - start], weighted[:stop - start]
        for v, w in zip(vectors, weights):
            # x * 2**24 is exact in float32 and float64 alike (a power of two, |x| <= 2**15), and
            # so is its rint, to_fixed's integer. On the float path every product and partial sum
            # stays below 2**52 in magnitude, so float64 adds them exactly; otherwise int64 does
            # (below 2**62 by the module's bounds).
            np.multiply(v[start:stop], q.dtype.type(SCALE), out=q)
            np.rint(q, out=q)
            np.multiply(q, w, out=qw, dtype=acc.dtype, casting="unsafe")
            part += qw
    return acc if acc.dtype == np.int64 else acc.astype(np.int64)


def divide_rounded(acc: np.ndarray, total: np.ndarray | int) -> np.ndarray:
    """acc / total on int64 (0 < total <= MAX_TOTAL_SAMPLES, a scalar or one per column), rounded
    half to even."""
    if acc.size and peak(acc) < _EXACT_FLOAT:
        # a and t are exact in float64 and a / t is correctly rounded, off by less than
        # |a / t| * 2**-53 < 1 / (2t) for |a| < 2**52; an exact quotient k + 1/2 is itself a float,
        # and any other lies at least 1 / (2t) from every half. So the float quotient falls on the
        # same side of each half as the exact one, and rint (half to even) rounds it the same way.
        quotient = np.rint(acc.astype(np.float64) / total)
        return quotient.astype(np.int64)
    quotient, remainder = np.divmod(acc, total)  # floor division: 0 <= remainder < total
    twice = 2 * remainder
    up = (twice > total) | ((twice == total) & (quotient % 2 == 1))
    return quotient + up.astype(np.int64)


# Exact squared norms and distances. The squares of grid values do not fit in int64 (a difference
# of two grid vectors reaches 2**40, its square 2**80), and float64 sums would depend on the order
# of the additions, so each entry is split into a high and a low 20-bit part,
#     d = h * 2**20 + l,   -2**20 <= h <= 2**20,   0 <= l < 2**20,
# and d**2 = h*h * 2**40 + h*l * 2**21 + l*l. The three products are below 2**40 in magnitude,
# so their sums over at most 2**22 columns stay below 2**62 in int64 (exact, order independent);
# longer rows are summed in column chunks whose partial sums are combined as Python ints.
MAX_DIFF = 2 * MAX_FIXED            # |a - b| for two vectors on the grid within the bound
_SPLIT = 20
_LOW_MASK = (1 << _SPLIT) - 1
_MAX_CHUNK_COLS = 1 << 22           # keeps each int64 partial sum below 2**62
_CHUNK_ELEMENTS = 1 << 21           # int64 temporaries of at most 16 MiB each


def _chunk_width(rows: int) -> int:
    return max(1, min(_MAX_CHUNK_COLS, _CHUNK_ELEMENTS // max(rows, 1)))


def _row_square_sums(d: np.ndarray) -> list[int]:
    """Exact sum of squares of each row of int64 `d` (|d| <= 2**40, at most 2**22 columns)."""
    high = d >> _SPLIT               # floor division: -2**20 <= high <= 2**20
    low = d & _LOW_MASK              # 0 <= low < 2**20, d == high * 2**20 + low
    hh = (high * high).sum(axis=1, dtype=np.int64).tolist()
    hl = (high * low).sum(axis=1, dtype=np.int64).tolist()
    ll = (low * low).sum(axis=1, dtype=np.int64).tolist()
    return [(a << 40) + (b << 21) + c for a, b, c in zip(hh, hl, ll)]


def _check_int64(q: object, ndim: int, bound: int, what: str) -> np.ndarray:
    if not isinstance(q, np.ndarray) or q.dtype != np.int64 or q.ndim != ndim:
        raise ValueError(f"{what} must be a {ndim}-D int64 array")
    if q.size and (int(q.min()) < -bound or int(q.max()) > bound):
        raise ValueError(f"{what} has an entry beyond +-{bound}")
    return q


def squared_norms(q: np.ndarray) -> list[int]:
    """Exact squared L2 norm (in grid units squared) of each row of a 2-D int64 matrix.

    Entries must satisfy |q| <= MAX_DIFF = 2**40 (any difference of two grid vectors within the
    bound; ValueError otherwise); rows may have any length. The result is a list of Python ints,
    the same in any row order and on any machine.
    """
    q = _check_int64(q, 2, MAX_DIFF, "squared_norms input")
    out = [0] * q.shape[0]
    width = _chunk_width(q.shape[0])
    for start in range(0, q.shape[1], width):
        out = [a + b for a, b in zip(out, _row_square_sums(q[:, start:start + width]))]
    return out


def squared_norm(v: np.ndarray) -> int:
    """Exact squared L2 norm of one int64 vector (|v| <= 2**40), a Python int."""
    v = _check_int64(v, 1, MAX_DIFF, "squared_norm input")
    return squared_norms(v[None, :])[0]


def squared_distances_to(q: np.ndarray, center: np.ndarray) -> list[int]:
    """Exact squared L2 distance of each row of `q` to the vector `center` (both int64 on the
    grid, |entries| <= MAX_FIXED = 2**39, so each difference is within 2**40)."""
    q = _check_int64(q, 2, MAX_FIXED, "squared_distances_to rows")
    center = _check_int64(center, 1, MAX_FIXED, "squared_distances_to center")
    if center.shape[0] != q.shape[1]:
        raise ValueError(f"center has {center.shape[0]} entries, the rows have {q.shape[1]}")
    out = [0] * q.shape[0]
    width = _chunk_width(q.shape[0])
    for start in range(0, q.shape[1], width):
        stop = start + width
        part = _row_square_sums(q[:, start:stop] - center[start:stop])
        out = [a + b for a, b in zip(out, part)]
    return out


def pairwise_squared_distances(q: np.ndarray) -> list[list[int]]:
    """Exact squared L2 distances between all rows of `q` (int64 on the grid, |q| <= 2**39): a
    symmetric n x n list of Python ints with zeros on the diagonal.

    Work is O(n**2 x params) integer operations, vectorized over parameters and the other rows;
    columns are processed in chunks so temporaries stay small whatever the model size.
    """
    q = _check_int64(q, 2, MAX_FIXED, "pairwise_squared_distances input")
    n = q.shape[0]
    dist = [[0] * n for _ in range(n)]
    width = _chunk_width(n)
    for start in range(0, q.shape[1], width):
        block = q[:, start:start + width]
        for i in range(n - 1):
            for j, s in enumerate(_row_square_sums(block[i + 1:] - block[i]), start=i + 1):
                dist[i][j] += s
    for i in range(n):
        for j in range(i + 1, n):
            dist[j][i] = dist[i][j]
    return dist


def lower_median(values: list[int]) -> int:
    """The lower median: the ((n - 1) // 2)-th smallest value (n >= 1), one of the values itself."""
    return sorted(values)[(len(values) - 1) // 2]
