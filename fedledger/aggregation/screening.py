"""Screening updates before aggregation: norm bounds and outliers, decided exactly on the grid.

The round protocol rejects an update when its change from the global model is longer than the
study's bound, or when it lies far from the round's other updates. Every aggregator must reach
the same decisions, so the decisions are pure functions of the set of updates: squared distances
are exact integer sums on the fixed-point grid and thresholds are compared as rationals, never
as floats (floats only appear in the messages). Inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.aggregation.base import ClientUpdate, _update_problem, _vector_problem
from fedledger.errors import UpdateRejected


def _global_q(global_params: np.ndarray) -> np.ndarray:
    problem = _vector_problem(global_params, None)
    if problem:
        raise UpdateRejected(f"global model rejected: {problem}")
    return fx.to_fixed(global_params)


def _change_sq(global_params: np.ndarray, params: np.ndarray) -> int:
    """Exact squared norm of params - global on the grid (grid units squared)."""
    g = _global_q(global_params)
    problem = _vector_problem(params, g.size)
    if problem:
        raise UpdateRejected(f"update rejected: {problem}")
    return fx.squared_norm(fx.to_fixed(params) - g)


def _grid_length(sq: int) -> float:
    return math.sqrt(sq) / fx.SCALE


def update_norm(global_params: np.ndarray, params: np.ndarray) -> float:
    """L2 norm of params - global, both mapped to the grid (for messages; decide with exceeds_norm)."""
    return _grid_length(_change_sq(global_params, params))


def exceeds_norm(global_params: np.ndarray, params: np.ndarray, bound: float) -> bool:
    """Whether the change params - global (on the grid) is strictly longer than `bound`.

    Exact: the integer squared norm is compared with the square of the float `bound` taken as a
    rational, so a change exactly at the bound is not above it. ValueError if bound is negative,
    NaN or infinite; UpdateRejected if either vector is unusable.
    """
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.integer, np.floating)) \
            or not math.isfinite(bound) or bound < 0:
        raise ValueError(f"the norm bound must be a finite number >= 0, got {bound!r}")
    b = Fraction(float(bound)) * 2**fx.FRAC_BITS
    return _change_sq(global_params, params) * b.denominator**2 > b.numerator**2


def find_outliers(global_params: np.ndarray, updates: Sequence[ClientUpdate], factor: float) -> dict[str, str]:
    """Updates far from the round's others: {client: reason sentence}, sorted by client.

    The center is the coordinate-wise lower median of the updates' values on the grid (one vote
    per client, weights ignored); an update is flagged when its distance to the center is above
    `factor` times the lower median of all updates' distances, compared exactly as integers
    (d**2 x den**2 > num**2 x median(d**2), factor = num / den). With factor >= 1 at most the
    farther half is flagged, and when more than half the updates coincide with the center (median distance 0)
    every update that differs from it is. Fewer than 3 updates: nothing is flagged, there is no
    majority to compare with. ValueError if factor is not a finite number > 0; UpdateRejected if
    an update is unusable or two come from the same client. Same result in any order.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) \
            or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"the outlier factor must be a finite number > 0, got {factor!r}")
    updates = list(updates)
    g = _global_q(global_params)
    seen: set[str] = set()
    for update in updates:
        problem = _update_problem(update, g.size, seen)
        if problem:
            raise UpdateRejected(f"update from {getattr(update, 'client', '?')} rejected: {problem}")
        seen.add(update.client)
    if len(updates) < 3:
        return {}
    locals_q = np.stack([fx.to_fixed(u.params) for u in updates])
    center = np.sort(locals_q, axis=0)[(len(updates) - 1) // 2]
    sq = fx.squared_distances_to(locals_q, center)
    median_sq = fx.lower_median(sq)
    ratio = Fraction(float(factor))
    flagged = {}
    for update, d_sq in zip(updates, sq):
        if d_sq * ratio.denominator**2 > ratio.numerator**2 * median_sq:
            flagged[update.client] = (f"distance {_grid_length(d_sq):.4g} from the round's median update, "
                                      f"more than {float(factor):g} x the median distance "
                                      f"{_grid_length(median_sq):.4g}")
    return dict(sorted(flagged.items()))
