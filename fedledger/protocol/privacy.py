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

from fedledger.chain import PrivacySpend, SpendRecord
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
    """One member's side of the budget: its mechanism, its releases so far (and the round of
    each), its spend records."""

    def __init__(self, plan: PrivacyPlan, num_train: int, training: TrainConfig) -> None:
        self.plan = plan
        self.mechanism = plan.release(num_train, training)
        self.history: list[Mechanism] = []
        self.rounds: list[int] = []           # the round of each release
        self._budget, _ = plan.budget_on_chain()

    def restore(self, spends: Sequence[SpendRecord]) -> None:
        """Take up the releases the chain recorded for this member (a restarted node)."""
        self.history = [Mechanism(x.spend.noise_multiplier, x.spend.sample_rate, x.spend.steps) for x in spends]
        self.rounds = [x.round for x in spends]

    def can_release(self, round: int | None = None) -> bool:
        """Whether one more release stays within the budget (a member past it sits rounds out);
        with `round`, counting only the releases made before that round."""
        made = [m for m, r in zip(self.history, self.rounds) if round is None or r < round]
        return epsilon_micro([*made, self.mechanism], self.plan.delta) <= self._budget

    def release(self, round: int) -> PrivacySpend:
        """Count one release of this member's update of `round`; the spend record that goes with it."""
        self.history.append(self.mechanism)
        self.rounds.append(round)
        m = self.mechanism
        return PrivacySpend(m.noise_micro, m.rate_ppb, m.steps, epsilon_micro(self.history, self.plan.delta))

    @property
    def epsilon(self) -> float:
        """The epsilon spent so far, at the study's delta."""
        return epsilon(self.history, self.plan.delta)


def budgets_end_study(plan: PrivacyPlan, study: Any, roster: Sequence[str], needed: int, round: int) -> bool:
    """Whether the study ends before `round` because fewer than `needed` of the `roster`'s members
    can afford another release: each member's releases before `round` as the chain records
    them, against the budget the contract holds now. A member yet to release can. Every member
    and the simulation decide it alike, from the chain."""
    history: dict[str, list[Mechanism]] = {}
    for x in study.privacy_spends():
        if x.round < round:
            history.setdefault(x.member, []).append(Mechanism(x.spend.noise_multiplier, x.spend.sample_rate,
                                                              x.spend.steps))
    budget = study.epsilon_budget()
    able = sum(1 for m in roster if m not in history or epsilon_micro([*history[m], history[m][-1]], plan.delta) <= budget)
    return able < needed


def needed_per_round(architecture: str, min_participants: int, members: int) -> int:
    """Releases a round needs: loose rounds go on with one; semi and full close a round's
    commitments with [protocol].min_participants."""
    return 1 if architecture == "loose" else min(min_participants, members)
