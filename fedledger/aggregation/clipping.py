"""Norm bounding (Sun et al. 2019, "Can you really backdoor federated learning?"): each client's
change to the global model is shortened to a maximum L2 norm before the weighted mean, so no
single client can move the model further than the bound times its share of the samples.

Everything is exact on the fixed-point grid: squared norms are integer sums (see
`fixedpoint.squared_norms`), the comparison with the bound is between rationals, and the scale
factor is an integer ratio, so the result is the same in any order and on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.aggregation.base import check_real
from fedledger.aggregation.fedavg import FedAvg

_PRODUCT_BITS = 62   # |delta| x factor stays below 2**62 in int64


def squared_bound(bound: float) -> Fraction:
    """The squared L2 bound in grid units squared, exactly: (bound * 2**24)**2 as a rational."""
    return (Fraction(bound) * 2**fx.FRAC_BITS) ** 2


def scale_factor(sq_norm: int, bound_sq: Fraction, peak: int) -> tuple[int, int]:
    """(factor, shift) with factor / 2**shift = floor(2**shift x bound / norm) / 2**shift, the
    scale for a change of squared norm `sq_norm` (grid units squared) and largest entry
    magnitude `peak`; (1, 0) when the change is within the bound (sq_norm <= bound_sq).

    The shift is the largest in 0..62 for which peak x factor < 2**62, so the products fit in
    int64 and the factor keeps at least 21 significant bits: its relative error is below 2**-20
    (unless the shift reaches 62, which happens only when every clipped entry is below one grid
    step, so truncates to 0 anyway). floor(sqrt(floor(x))) == floor(sqrt(x)), so each candidate
    factor is one exact integer square root.
    """
    if sq_norm * bound_sq.denominator <= bound_sq.numerator:
        return 1, 0

    def factor(shift: int) -> int:
        return math.isqrt((bound_sq.numerator << 2 * shift) // (bound_sq.denominator * sq_norm))

    low, high = 0, _PRODUCT_BITS            # factor(0) == 0 fits; find the largest shift that does
    while low < high:
        mid = (low + high + 1) // 2
        if peak * factor(mid) < 1 << _PRODUCT_BITS:
            low = mid
        else:
            high = mid - 1
    return factor(low), low


def clip_rows(deltas: np.ndarray, scales: list[tuple[int, int]]) -> np.ndarray:
    """Each row of int64 `deltas` times its factor / 2**shift, rounded toward zero (the
    products |delta| x factor must be below 2**63, as scale_factor ensures)."""
    factor = np.array([f for f, _ in scales], dtype=np.int64)[:, None]
    shift = np.array([s for _, s in scales], dtype=np.int64)[:, None]
    return np.sign(deltas) * ((np.abs(deltas) * factor) >> shift)


@dataclass(frozen=True)
class NormClip(FedAvg):
    """FedAvg over clipped changes: new = global + server_lr * weighted_mean(clip(local - global)).

    bound: the largest L2 norm (in parameter units) of one client's change local - global; a
    longer change is scaled down to it, a shorter one is kept as is. 0 (the default) means the
    lower median of this round's change norms (unweighted, one vote per client): the longer half
    of the changes is shortened to the median length. Clipping bounds what each client can do
    however far it moves, but does not remove it: a minority of attackers still pulls the mean by
    up to bound x its share of the samples. Weighting is by sample counts, as in FedAvg.

    Rounding: a change is clipped when its exact squared norm (an integer on the grid) is above
    the squared bound (a rational), so a change exactly at the bound is kept as is. The scale is
    floor(2**s x bound / norm) / 2**s, computed exactly from the integer squared norm with s as
    large as int64 products allow (relative error below 2**-20), and each clipped entry is
    rounded toward zero on the grid: a clipped change never has a norm above the bound, and
    falls short of it by a relative 2**-20 at most plus under one grid step per entry.
    """

    name: ClassVar[str] = "normclip"
    bound: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "bound", check_real(self.name, "bound", self.bound,
                                                     "[0, inf) (0: the round's median norm)", lambda x: x >= 0))

    def round_bound(self, sq_norms: list[int]) -> Fraction:
        """The squared bound (grid units squared) for a round whose changes have these squared norms."""
        return squared_bound(self.bound) if self.bound > 0 else Fraction(fx.lower_median(sq_norms))

    def _combine(self, g: np.ndarray, locals_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
        deltas = locals_q - g                                   # |deltas| <= 2**40
        sq = fx.squared_norms(deltas)
        bound_sq = self.round_bound(sq)
        peaks = np.abs(deltas).max(axis=1).tolist()
        clipped = clip_rows(deltas, [scale_factor(s, bound_sq, p) for s, p in zip(sq, peaks)])
        # g + clipped lies between g and the local values entry by entry (the factor is at most
        # 1 and rounds toward zero), so it stays within MAX_FIXED and the mean cannot overflow.
        return fx.weighted_mean(g + clipped, weights)
