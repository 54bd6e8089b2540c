"""Differential privacy in the round protocol: what mechanism each member runs every round, what
it has spent, and the spend record it attaches to its update.

The study's [privacy] section fixes everything: a member's mechanism is a function of the config
and of its number of training rows (its sampling rate), so the auditor derives the mechanism
every member should have run from the anchored config and the committed sample counts, and
recomputes every epsilon from the chain's records (`fedledger.audit.privacy`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fedledger.chain import PrivacySpend
from fedledger.learning.dp_sgd import dp_sample_rate
from fedledger.learning.training import TrainConfig
from fedledger.privacy.accountant import (
    EPSILON_SCALE,
    Mechanism,
    calibrate_noise,
    delta_units,
    epsilon,
    epsilon_micro,
)


@dataclass(frozen=True)
class PrivacyPlan:
    """The study's differential privacy: which mechanism, the per-member budget, and what
    calibrates the noise ([privacy] of the config; fedledger.config.PrivacySection)."""

    mechanism: str           # "dp-sgd" (record level) or "dp-fedavg" (client level)
    epsilon: float           # each member's budget over the study
    delta: float
    noise_multiplier: float  # 0: calibrated so that `rounds` releases spend the budget
    max_grad_norm: float
    rounds: int
    noise_shares: int        # dp-fedavg: how many updates' noise shares add up to the full noise

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PrivacyPlan | None:
        """The plan of a config given as plain data (Config.to_dict(), or the anchored config an
        auditor reads); None when the study uses no differential privacy."""
        p = config.get("privacy", {})
        if p.get("mechanism", "none") == "none":
            return None
        return cls(p["mechanism"], float(p["epsilon"]), float(p["delta"]), float(p["noise_multiplier"]),
                   float(p["max_grad_norm"]), int(config["study"]["rounds"]),
                   int(config["protocol"]["min_participants"]))

    def budget_on_chain(self) -> tuple[int, int]:
        """(epsilon budget in millionths, delta in 1e-18 units): what the study contract holds."""
        return math.floor(self.epsilon * EPSILON_SCALE), delta_units(self.delta)

    def committed_samples(self, num_train: int) -> int:
        """The sample count a member commits: DP-FedAvg weighs every update alike (a member's
        data size is itself private, and unequal weights would change the sensitivity)."""
        return 1 if self.mechanism == "dp-fedavg" else num_train

    def release(self, num_samples: int, training: TrainConfig) -> Mechanism:
        """The mechanism a member with `num_samples` training rows runs in each round."""
        if self.mechanism == "dp-fedavg":
            rate, steps = 1.0, 1
        else:
            rate, steps = dp_sample_rate(training, num_samples), training.num_steps(num_samples)
        rate = Mechanism.of(1.0, rate, steps).sample_rate   # the rate the chain can record
        noise = self.noise_multiplier or _calibrated(self.epsilon, self.delta, rate, steps, self.rounds)
        return Mechanism.of(noise, rate, steps)


@lru_cache(maxsize=256)
def _calibrated(target: float, delta: float, rate: float, steps: int, rounds: int) -> float:
    # Members with the same data size share one calibration (and so does the auditor).
    return calibrate_noise(target, delta, rate, steps, rounds)


class MemberPrivacy:
    """One member's side of the budget: its mechanism, its releases so far, its spend records."""

    def __init__(self, plan: PrivacyPlan, num_train: int, training: TrainConfig) -> None:
        self.plan = plan
        self.mechanism = plan.release(num_train, training)
        self.history: list[Mechanism] = []
        self._budget, _ = plan.budget_on_chain()

    def restore(self, spends: Sequence[PrivacySpend]) -> None:
        """Take up the releases the chain recorded for this member (a restarted node)."""
        self.history = [Mechanism(x.noise_multiplier, x.sample_rate, x.steps) for x in spends]

    def can_release(self) -> bool:
        """Whether one more release stays within the budget (a member past it sits rounds out)."""
        return epsilon_micro([*self.history, self.mechanism], self.plan.delta) <= self._budget

    def release(self) -> PrivacySpend:
        """Count one release of this round's update; the spend record that goes with it."""
        self.history.append(self.mechanism)
        m = self.mechanism
        return PrivacySpend(m.noise_micro, m.rate_ppb, m.steps, epsilon_micro(self.history, self.plan.delta))

    @property
    def epsilon(self) -> float:
        """The epsilon spent so far, at the study's delta."""
        return epsilon(self.history, self.plan.delta)
