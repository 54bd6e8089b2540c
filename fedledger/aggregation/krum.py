"""Krum and Multi-Krum (Blanchard et al. 2017; El Mhamdi et al. 2018): keep the updates that lie
closest to their neighbours and average those.

Each update's score is the sum of its squared L2 distances to its n - f - 2 nearest other updates,
n being the round's updates and f the number of attackers tolerated. Attackers far from the honest
cluster get high scores, so keeping the lowest scores leaves them out. Distances are computed
exactly on the fixed-point grid (integer sums, see `fixedpoint.pairwise_squared_distances`), and
ties are broken by the updates' values, so the selection, like the mean, is the same in any order
and on any machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cmp_to_key
from typing import ClassVar

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.aggregation.base import check_int
from fedledger.aggregation.fedavg import FedAvg


def tolerated(n: int, byzantine: int) -> int:
    """The f a round of n updates can use: `byzantine`, lowered to the largest f with n >= 2f + 3
    (Krum's condition); 0 when n <= 4."""
    return max(0, min(byzantine, (n - 3) // 2))


def krum_scores(locals_q: np.ndarray, f: int) -> list[int]:
    """Each row's Krum score: the exact sum of its squared distances (grid units squared) to its
    n - f - 2 nearest other rows. Needs n >= 2f + 3 (so at least one neighbour counts)."""
    n = locals_q.shape[0]
    k = n - f - 2
    if f < 0 or n < 2 * f + 3:
        raise ValueError(f"Krum scores need n >= 2f + 3 and f >= 0, got n = {n}, f = {f}")
    dist = fx.pairwise_squared_distances(locals_q)
    return [sum(sorted(d for j, d in enumerate(row) if j != i)[:k]) for i, row in enumerate(dist)]


def _ranking(locals_q: np.ndarray, weights: np.ndarray, scores: list[int]) -> list[int]:
    """Row indices by (score, values lexicographically, weight): a total order on what the rows
    hold, so rows that tie on all three are interchangeable and arrival order never matters."""
    def compare(a: int, b: int) -> int:
        if scores[a] != scores[b]:
            return -1 if scores[a] < scores[b] else 1
        differ = np.flatnonzero(locals_q[a] != locals_q[b])
        if differ.size:
            j = differ[0]
            return -1 if locals_q[a, j] < locals_q[b, j] else 1
        return (int(weights[a]) > int(weights[b])) - (int(weights[a]) < int(weights[b]))
    return sorted(range(locals_q.shape[0]), key=cmp_to_key(compare))


@dataclass(frozen=True)
class MultiKrum(FedAvg):
    """Multi-Krum: the sample-weighted mean of the `keep` updates with the lowest Krum scores.

    byzantine (f): how many attackers a round tolerates. Each update's score is the sum of its
    squared distances to its n - f - 2 nearest other updates. A round with too few updates for
    f (n < 2f + 3) lowers f to the largest value n allows, (n - 3) // 2, so 3 or 4 updates
    tolerate none; with n <= 2 no score can tell updates apart and every update is kept.

    keep (m): how many of the lowest-scoring updates are averaged; 0 (the default) means n - f.
    A round keeps min(keep, n - f) (f as lowered above), so at least f updates are always
    dropped: a keep above n - f, or above n, keeps n - f. Ties in score are broken by the
    updates' fixed-point values (lexicographically), then by sample count, never by arrival.

    Unlike the papers' unweighted average, the kept updates are averaged weighted by their sample
    counts, as FedAvg does: an attacker must first be selected to gain weight from an inflated
    count, but a selected one does gain it. server_lr scales the step as in FedAvg.
    """

    name: ClassVar[str] = "multikrum"
    byzantine: int = 1
    keep: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "byzantine", check_int(self.name, "byzantine", self.byzantine, "[0, inf)",
                                                        lambda x: x >= 0))
        if any(f.name == "keep" for f in dataclasses.fields(self)):  # Krum fixes keep = 1
            object.__setattr__(self, "keep", check_int(self.name, "keep", self.keep,
                                                       "[0, inf) (0: n - byzantine)", lambda x: x >= 0))

    def selected(self, locals_q: np.ndarray, weights: np.ndarray) -> list[int]:
        """Indices (ascending) of the rows this rule averages, for fixed-point rows (clients x
        params, |values| <= 2**39) and their sample counts."""
        n = locals_q.shape[0]
        if n <= 2:
            return list(range(n))
        f = tolerated(n, self.byzantine)
        m = n - f if self.keep == 0 else min(self.keep, n - f)
        return sorted(_ranking(locals_q, weights, krum_scores(locals_q, f))[:m])

    def _combine(self, g: np.ndarray, locals_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
        kept = self.selected(locals_q, weights)
        return fx.weighted_mean(locals_q[kept], weights[kept])


@dataclass(frozen=True)
class Krum(MultiKrum):
    """Krum: the one update with the lowest score (see MultiKrum for the score, the lowering of
    byzantine in small rounds and the tie-breaking). With n <= 2 updates both are kept and
    averaged by samples, as no score can tell them apart."""

    name: ClassVar[str] = "krum"
    keep: ClassVar[int] = 1
