"""Robust aggregation rules against poisoned updates: coordinate-wise median and trimmed mean.

Both replace FedAvg's weighted mean of the local parameters and keep its server learning rate.
They work on the fixed-point grid with integer operations only (sorting, cumulative sums, one
rounded division), so like FedAvg they give the same bytes in any order and on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.aggregation.base import check_real
from fedledger.aggregation.fedavg import FedAvg


def _sorted_columns(locals_q: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each parameter's client values in ascending order, with the weights that go with them.

    Equal values are ordered by weight, so the order the clients came in cannot change which
    weights a trim drops."""
    order = np.lexsort((np.broadcast_to(weights[:, None], locals_q.shape), locals_q), axis=0)
    return np.take_along_axis(locals_q, order, axis=0), weights[order]


@dataclass(frozen=True)
class FedMedian(FedAvg):
    """Coordinate-wise median (Yin et al. 2018), weighted by samples.

    Each parameter takes the lower weighted median of the clients' values: the smallest value
    at which the clients' sample counts, summed from below, reach half of all samples. Clients
    holding fewer than half the samples cannot move it outside the range of the others' values;
    the counts are the clients' own claims, so an attacker that inflates its count gains weight
    (use FedTrimmedMean, which trims by clients, where counts cannot be trusted).
    """

    name: ClassVar[str] = "fedmedian"

    def _combine(self, g: np.ndarray, locals_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
        values, w = _sorted_columns(locals_q, weights)
        reached = 2 * np.cumsum(w, axis=0) >= int(weights.sum())
        return values[np.argmax(reached, axis=0), np.arange(values.shape[1])]


@dataclass(frozen=True)
class FedTrimmedMean(FedAvg):
    """Coordinate-wise trimmed mean (Yin et al. 2018).

    For each parameter the floor(beta x clients) smallest and as many largest values are dropped
    and the rest averaged, weighted by samples. Trimming counts clients, not samples: weighting
    the trim would let one large client's values survive whole.
    """

    name: ClassVar[str] = "fedtrimmedmean"
    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "beta", check_real(self.name, "beta", self.beta, "[0, 0.5)",
                                                    lambda x: 0 <= x < 0.5))

    def _combine(self, g: np.ndarray, locals_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n = locals_q.shape[0]
        k = int(self.beta * n)
        values, w = _sorted_columns(locals_q, weights)
        kept, kept_w = values[k:n - k], w[k:n - k]
        return fx.divide_rounded((kept * kept_w).sum(axis=0), kept_w.sum(axis=0))
