"""Fixed-point arithmetic that makes aggregation bit-identical in any order and on any machine.

A float sum over clients depends on the order of the additions, and validators receive updates in
different orders. Parameters are therefore mapped to integers on a grid of 2**-24 (FRAC_BITS = 24
fractional bits, resolution about 6e-8), weighted sums are taken in int64 (exact, so associative
and order independent), and the one division rounds half to even on integers.

Overflow bound: parameters satisfy |x| <= MAX_ABS = 2**15, so |q| <= 2**39; the weights (sample
counts) sum to at most MAX_TOTAL_SAMPLES = 2**23, so every weighted sum stays within 2**62 < 2**63.
Inputs outside these bounds are rejected by the caller rather than wrapped around silently.
float32 -> fixed is exact for |x| >= 2**-1 and rounds smaller magnitudes to the grid; fixed ->
float32 is exact for |x| < 1 and otherwise rounds to nearest even, both deterministic.
"""

from __future__ import annotations

import numpy as np

FRAC_BITS = 24
SCALE = float(2**FRAC_BITS)
MAX_ABS = float(2**15)
MAX_FIXED = 2**39  # MAX_ABS * SCALE
MAX_TOTAL_SAMPLES = 2**23


def to_fixed(x: np.ndarray) -> np.ndarray:
    """float -> int64 on the grid, rounding half to even; the caller bounds |x| (NaN or |x| >= 2**39 would wrap)."""
    # Scaling by a power of two is exact in float64, so only the final rint rounds.
    return np.rint(np.asarray(x, dtype=np.float64) * SCALE).astype(np.int64)


def to_float(q: np.ndarray) -> np.ndarray:
    """int64 on the grid -> float64, exact while |q| < 2**53."""
    return q.astype(np.float64) / SCALE


def to_float32(q: np.ndarray) -> np.ndarray:
    return to_float(q).astype(np.float32)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-weighted mean of int64 `values` (clients x params), rounded half to even.

    Exact integer sum, then floor division with the remainder deciding the rounding; ties go to
    the even quotient, so rounding has no bias toward either sign.
    """
    return divide_rounded((values * weights[:, None]).sum(axis=0), weights.sum())


def divide_rounded(acc: np.ndarray, total: np.ndarray | int) -> np.ndarray:
    """acc / total on int64 (total > 0, a scalar or one per column), rounded half to even."""
    quotient, remainder = np.divmod(acc, total)  # floor division: 0 <= remainder < total
    twice = 2 * remainder
    up = (twice > total) | ((twice == total) & (quotient % 2 == 1))
    return quotient + up.astype(np.int64)
