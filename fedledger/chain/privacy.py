"""The differential-privacy budget every study contract shares (contracts/privacy_budget.vy):
the spend record members attach to their updates, and `PrivacyBudget`, the reads and the
governance call that the LooseStudy, SemiStudy and FullStudy wrappers all offer.

The chain stores integers; what they mean (and the accountant that turns mechanisms into
epsilons) is `fedledger.privacy.accountant`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx


@dataclass(frozen=True)
class PrivacySpend:
    """One release of a member's data, as privacy_budget.vy records it: the mechanism (noise
    multiplier in millionths, sampling rate in billionths, steps) and the member's total epsilon
    over the study after it (millionths)."""
    noise_multiplier: int
    sample_rate: int
    steps: int
    epsilon: int

    def as_args(self) -> tuple[int, int, int, int]:
        """The contract's PrivacySpend struct, as a call argument."""
        return astuple(self)


NO_SPEND = PrivacySpend(0, 0, 0, 0)   # what a study without a privacy budget takes


@dataclass(frozen=True)
class SpendRecord:
    """A PrivacySpent event: who spent what in which round."""
    round: int
    member: str
    spend: PrivacySpend


class PrivacyBudget:
    """Mixin of the study wrappers (StudyContract)."""

    contract: Any
    _view: Callable[..., Any]
    _send: Callable[[LocalAccount, Any], TxReceipt | PendingTx]
    events: Callable[..., list[dict[str, Any]]]

    def epsilon_budget(self) -> int:
        """Each member's budget over the study, epsilon in millionths; 0: no differential privacy."""
        return self._view("epsilon_budget")

    def delta(self) -> int:
        """The study's delta, in 1e-18 units."""
        return self._view("delta")

    def epsilon_spent(self, member: str) -> int:
        """`member`'s epsilon so far, in millionths."""
        return self._view("epsilon_spent", Web3.to_checksum_address(member))

    def set_privacy_budget(self, admin: LocalAccount, epsilon_budget: int) -> TxReceipt | PendingTx:
        """Change each member's budget (governance: only the consortium's admin may)."""
        return self._send(admin, self.contract.functions.set_privacy_budget(epsilon_budget))

    def privacy_spends(self, round: int | None = None, from_block: int = 0) -> list[SpendRecord]:
        """Every recorded release (PrivacySpent events; of one round, if given), in chain order."""
        return [SpendRecord(e["round_number"], e["member"], PrivacySpend(
                    e["noise_multiplier"], e["sample_rate"], e["steps"], e["epsilon"]))
                for e in self.events("PrivacySpent", round, from_block)]


INVALID_FORMAT = 8    # reason codes of fedledger.validation.reasons, as privacy_budget.vy's users give them
PRIVACY_BUDGET = 15


def spend_problem(spend: PrivacySpend, spent: int, budget: int) -> int | None:
    """The reason code the contracts refuse `spend` with, for a member that spent `spent` so far
    under `budget` (both epsilon in millionths; budget 0: no privacy budget), or None: what a
    loose coordinator checks before anchoring, as privacy_budget.vy would."""
    if budget == 0:
        return None if spend == NO_SPEND else INVALID_FORMAT
    well_formed = (spend.noise_multiplier > 0 and 0 < spend.sample_rate <= 10**9 and spend.steps > 0
                   and spend.epsilon > spent)
    if not well_formed:
        return INVALID_FORMAT
    return PRIVACY_BUDGET if spend.epsilon > budget else None
