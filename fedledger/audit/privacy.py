"""Auditing the differential-privacy budget: the study contract holds the config's budget, every
recorded release ran the mechanism the config prescribes for that member, and every recorded
epsilon is what the accountant gives for the member's releases so far."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain import PrivacyBudget
from fedledger.learning.training import TrainConfig
from fedledger.privacy.accountant import Mechanism, epsilon_micro
from fedledger.protocol.privacy import PrivacyPlan


def verify_privacy(report: AuditReport, config: Mapping[str, Any] | None, study: PrivacyBudget,
                   samples: Mapping[tuple[int, str], int], aggregated: Mapping[int, int]) -> None:
    """Check the study's privacy records against its config.

    `samples` is the sample count each (round, member) committed (the mechanism's sampling rate
    depends on it), `aggregated` how many updates each round aggregated (DP-FedAvg's noise is
    complete only with at least [protocol].min_participants of them).
    """
    if config is None:
        return
    plan = PrivacyPlan.from_config(config)
    spends = study.privacy_spends()
    changes = study.events("PrivacyBudgetChanged")
    initial = (changes[0]["before"] if changes else study.epsilon_budget(), study.delta())
    if plan is None:
        report.record("study", "no privacy budget in a study without differential privacy",
                      initial == (0, 0) and not spends, f"budget {initial} and {len(spends)} privacy spends on chain")
        return
    report.record("study", "privacy budget is the config's", initial == plan.budget_on_chain(),
                  f"the contract started with (epsilon, delta) units {initial}, the config says "
                  f"{plan.budget_on_chain()}")
    training = TrainConfig(**config["training"])
    history: dict[str, list[Mechanism]] = defaultdict(list)
    for record in spends:
        subject = f"round {record.round} privacy spend of {record.member}"
        s = record.spend
        ran = Mechanism(s.noise_multiplier, s.sample_rate, s.steps)
        num_samples = samples.get((record.round, record.member))
        expected = plan.release(num_samples, training) if num_samples else None
        report.record(subject, "mechanism is the config's", ran == expected,
                      f"recorded {ran}, the config prescribes {expected} for {num_samples} committed samples")
        history[record.member].append(ran)
        recomputed = epsilon_micro(history[record.member], plan.delta)
        report.record(subject, "epsilon recomputed from the recorded mechanisms", recomputed == s.epsilon,
                      f"recorded epsilon {s.epsilon / 1e6:.6f}, the accountant gives {recomputed / 1e6:.6f}")
    if plan.mechanism == "dp-fedavg":
        for n, count in sorted(aggregated.items()):
            report.record(f"round {n}", "DP-FedAvg noise complete", count == 0 or count >= plan.noise_shares,
                          f"{count} updates aggregated, each with 1/{plan.noise_shares} of the noise: the "
                          "aggregate carries less noise than the budget assumes")
