"""The reputation policy every study contract shares (contracts/reputation_policy.vy), in Python.

Its constants and replay rule, which an auditor uses to recompute reputations from the
ReputationChanged events, and `ReputationPolicy`, the reads and the re-admission that the
StudyLedger, CommitteeStudy and ConsensusStudy wrappers all offer.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx
from fedledger.chain.records import Rejection, bytes32_to_optional_digest, chain_order

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
    """Mixin of the study wrappers: needs `backend`, `contract`, `address` and `_send`."""

    backend: Any
    contract: Any
    address: str

    def _send(self, account: LocalAccount, fn: Any) -> TxReceipt | PendingTx:
        raise NotImplementedError

    def _view(self, name: str, *args: Any) -> Any:
        return self.backend.call(getattr(self.contract.functions, name)(*args))

    def all_events(self) -> list[dict[str, Any]]:
        """Every event of this contract in chain order: its arguments plus "event", "block" and
        "position" (chain_order; one log query, for replaying the history)."""
        by_topic = {}
        for item in self.contract.abi:
            if item["type"] == "event":
                event = getattr(self.contract.events, item["name"])
                by_topic[bytes.fromhex(event.topic[2:])] = event
        logs = self.backend.w3.eth.get_logs({"address": self.address, "fromBlock": 0, "toBlock": "latest"})
        result = []
        for log in sorted(logs, key=chain_order):
            event = by_topic.get(bytes(log["topics"][0])) if log["topics"] else None
            if event is not None:
                decoded = event.process_log(log)
                result.append({**dict(decoded["args"]), "event": decoded["event"], "block": log["blockNumber"],
                               "position": chain_order(log)})
        return result


    def events(self, name: str, round: int | None = None, from_block: int = 0) -> list[dict[str, Any]]:
        """Every `name` event of this contract (of one round, if given; from block `from_block`
        on) in chain order: its arguments plus "block". Bounding the blocks matters: log
        queries scan every block in the range."""
        filters = {"round_number": round} if round is not None else None
        logs = getattr(self.contract.events, name).get_logs(from_block=from_block, to_block="latest",
                                                            argument_filters=filters)
        ordered = sorted(logs, key=chain_order)
        return [{**dict(log["args"]), "block": log["blockNumber"]} for log in ordered]

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

    def rejections(self, round: int, from_block: int = 0) -> list[Rejection]:
        """The updates of `round` that were not aggregated (UpdateRejected events), in chain order."""
        return [Rejection(e["member"], bytes32_to_optional_digest(e["update"]), e["reason"])
                for e in self.events("UpdateRejected", round, from_block)]
