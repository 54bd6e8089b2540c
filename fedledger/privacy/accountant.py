"""Differential-privacy accounting: the (epsilon, delta) a member has spent, from the mechanisms
it ran, by Rényi-DP composition of the subsampled Gaussian mechanism (Opacus's RDP analysis).

A mechanism is held as the integers the study contract records (noise multiplier in millionths,
sampling rate in billionths, steps), and the member trains with exactly the values those integers
stand for. So anyone holding the ledger recomputes every member's epsilon from the chain alone
and gets the same number: `fedledger audit verify` does.

This module only counts; the training loops that run the mechanisms (`fedledger.learning.dp_sgd`,
`fedledger.privacy.client_dp`) never call it, as Opacus keeps its accountant apart from its
optimizer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.errors import ConfigError

NOISE_SCALE = 1_000_000            # noise multipliers on chain: millionths
RATE_SCALE = 1_000_000_000         # sampling rates on chain: billionths
EPSILON_SCALE = 1_000_000          # epsilons on chain: millionths, rounded up
DELTA_SCALE = 10**18               # delta on chain: 1e-18 units
# Rényi orders searched for the tightest bound: Opacus's defaults, extended to 512 so that a
# large noise multiplier with full participation (client-level DP, q = 1) is not cut short.
ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512])
MAX_NOISE_MULTIPLIER = 50.0    # beyond this a model learns nothing; calibration gives up


@dataclass(frozen=True)
class Mechanism:
    """`steps` Gaussian steps of noise `noise_multiplier` x the clipping norm, each on a Poisson
    sample of the records at `sample_rate` (1: every record, as client-level DP's rounds are)."""

    noise_micro: int   # noise multiplier, in millionths
    rate_ppb: int      # sampling rate, in billionths
    steps: int

    def __post_init__(self) -> None:
        if not (self.noise_micro > 0 and 0 < self.rate_ppb <= RATE_SCALE and self.steps > 0):
            raise ValueError(f"not a DP mechanism: noise multiplier {self.noise_micro}e-6, "
                             f"sampling rate {self.rate_ppb}e-9, {self.steps} steps")

    @classmethod
    def of(cls, noise_multiplier: float, sample_rate: float, steps: int) -> Mechanism:
        """The mechanism closest to these values that the chain can record (rounded to its units)."""
        return cls(round(noise_multiplier * NOISE_SCALE), round(sample_rate * RATE_SCALE), steps)

    @property
    def noise_multiplier(self) -> float:
        return self.noise_micro / NOISE_SCALE

    @property
    def sample_rate(self) -> float:
        return self.rate_ppb / RATE_SCALE


def epsilon(history: Sequence[Mechanism], delta: float) -> float:
    """The epsilon, at `delta`, of running every mechanism of `history` on the same records."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be between 0 and 1, got {delta}")
    if not history:
        return 0.0
    # Imported here: importing anything of Opacus loads the whole package (about a second), which
    # every fedledger command would pay at start-up, DP or not.
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    # RDP adds up over steps: runs of the same (noise, rate) are one computation.
    steps: dict[tuple[int, int], int] = {}
    for m in history:
        steps[m.noise_micro, m.rate_ppb] = steps.get((m.noise_micro, m.rate_ppb), 0) + m.steps
    rdp = sum(compute_rdp(q=rate / RATE_SCALE, noise_multiplier=noise / NOISE_SCALE, steps=n, orders=ORDERS)
              for (noise, rate), n in sorted(steps.items()))
    with warnings.catch_warnings():
        # At the largest order the bound is looser than it could be, but still a valid bound.
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
        eps, _ = get_privacy_spent(orders=ORDERS, rdp=rdp, delta=delta)
    return float(eps)


def epsilon_micro(history: Sequence[Mechanism], delta: float) -> int:
    """`epsilon` as the chain records it: millionths, rounded up so the record never understates."""
    return math.ceil(epsilon(history, delta) * EPSILON_SCALE)


def delta_units(delta: float) -> int:
    """`delta` as the chain records it (1e-18 units)."""
    return round(delta * DELTA_SCALE)


def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int, releases: int) -> float:
    """The smallest noise multiplier (to a millionth) for which `releases` runs of a mechanism of
    `steps` steps at `sample_rate` spend at most `target_epsilon`: a bisection over the integers
    the chain records, so it gives the same answer on every machine."""
    if not target_epsilon > 0:
        raise ConfigError(f"the privacy budget must be positive, got epsilon = {target_epsilon}")
    if not (steps >= 1 and releases >= 1 and 1 <= round(sample_rate * RATE_SCALE) <= RATE_SCALE):
        raise ConfigError(f"cannot calibrate noise for {releases} releases of {steps} steps at sampling "
                          f"rate {sample_rate}: each must be at least one step at a rate in (0, 1]")

    def spent(noise_micro: int) -> float:
        return epsilon([Mechanism(noise_micro, round(sample_rate * RATE_SCALE), steps)] * releases, delta)

    low, high = 1, round(MAX_NOISE_MULTIPLIER * NOISE_SCALE)
    if spent(high) > target_epsilon:
        raise ConfigError(f"epsilon = {target_epsilon} cannot be met over {releases} rounds of {steps} steps "
                          f"at sampling rate {sample_rate:.4g}, even with noise multiplier {MAX_NOISE_MULTIPLIER}")
    while low < high:      # invariant: spent(high) <= target
        middle = (low + high) // 2
        if spent(middle) <= target_epsilon:
            high = middle
        else:
            low = middle + 1
    return high / NOISE_SCALE
