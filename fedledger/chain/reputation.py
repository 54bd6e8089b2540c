"""The reputation policy every study contract shares (contracts/reputation_policy.vy), in Python.

Its constants and replay rule, which an auditor uses to recompute reputations from the
ReputationChanged events, and `ReputationPolicy`, the reads and the re-admission that the
LooseStudy, SemiStudy and FullStudy wrappers all offer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx
from fedledger.chain.records import Rejection, bytes32_to_optional_digest

INITIAL_REPUTATION = 100
MAX_REPUTATION = 1000
# The reason of the ReputationChanged event that re-admits a suspended member: it sets
# reputation to INITIAL_REPUTATION whatever it was, rather than moving it by a delta.
REINSTATED = "reinstated"
# Every other ReputationChanged reason moves reputation by its delta, kept within 0..MAX_REPUTATION.
REPUTATION_DELTAS = {"agreed": 1, "disagreed": -50, "absent": -20, "update accepted": 1, "update rejected": -20}


def reputation_after(before: int, reason: str) -> int:
    """What a ReputationChanged event with `reason` leaves of reputation `before` (KeyError for
    a reason the contracts never log)."""
    if reason == REINSTATED:
        return INITIAL_REPUTATION
    return max(0, min(MAX_REPUTATION, before + REPUTATION_DELTAS[reason]))


def suspends(after: int, threshold: int, already_suspended: bool) -> bool:
    """Whether a reputation change that leaves `after` suspends the member (MemberSuspended)."""
    return threshold != 0 and after < threshold and not already_suspended


class ReputationPolicy:
    """Mixin of the study wrappers (StudyContract): reputation, suspensions, rejections."""

    _view: Callable[..., Any]
    _send: Callable[[LocalAccount, Any], TxReceipt | PendingTx]
    events: Callable[..., list[dict[str, Any]]]

    # --- transactions ----------------------------------------------------------------------

    def reinstate(self, admin: LocalAccount, member: str) -> TxReceipt | PendingTx:
        """Re-admit suspended `member` with INITIAL_REPUTATION; only the consortium's admin may."""
        return self._send(admin, self.contract.functions.reinstate(Web3.to_checksum_address(member)))

    # --- reads -----------------------------------------------------------------------------

    def reputation(self, member: str) -> int:
        return self._view("reputation", Web3.to_checksum_address(member))

    def suspended(self, member: str) -> bool:
        return self._view("suspended", Web3.to_checksum_address(member))

    def suspension_threshold(self) -> int:
        """Reputation strictly below which a member is suspended; 0: the policy never suspends."""
        return self._view("suspension_threshold")

    def suspensions(self) -> dict[str, int]:
        """Who the policy suspended, and in which round (MemberSuspended events)."""
        return {e["member"]: e["round_number"] for e in self.events("MemberSuspended")}

    def rejections(self, round: int, from_block: int = 0) -> list[Rejection]:
        """The updates of `round` that were not aggregated (UpdateRejected events), in chain order."""
        return [Rejection(e["member"], bytes32_to_optional_digest(e["update"]), e["reason"])
                for e in self.events("UpdateRejected", round, from_block)]
