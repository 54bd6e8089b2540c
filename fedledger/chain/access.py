"""`AccessPolicy`: typed access to AccessPolicy.vy, risk-based authorisation of access to
patients' data (docs/governance.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend
from fedledger.chain.contract import contract_events
from fedledger.chain.records import bytes32_to_digest, digest_to_bytes32

RISK_LEVELS = ("stable", "serious", "critical")   # the contract's risk levels 0, 1, 2
MAX_ROLES, MAX_ACTIONS = 16, 16


class Decision(IntEnum):
    DENY = 0
    PERMIT = 1
    BREAK_GLASS = 2      # a declared emergency is permitted, flagged for the admin's review


class AccessReason(IntEnum):
    BY_POLICY = 0        # the policy's cell decided
    NOT_A_REQUESTER = 1  # the caller holds no requester role
    WRONG_MODEL = 2      # the risk level was not estimated by the named risk model
    OUT_OF_RANGE = 3     # an action or risk level the policy does not know
    NO_EMERGENCY = 4     # a break-glass cell, without a declared emergency
    EMERGENCY = 5        # a break-glass cell and a declared emergency: permitted, to review


class Review(IntEnum):
    NONE = 0             # not a break-glass access
    PENDING = 1
    UPHELD = 2
    OVERTURNED = 3


@dataclass(frozen=True)
class RiskModel:
    """The model that estimates patients' risk levels: a study's model of one round."""
    study: str
    round: int
    model: str


@dataclass(frozen=True)
class AccessRecord:
    """One request and its decision, as the chain recorded it."""
    request_id: int
    requester: str
    patient: str          # the hashed pseudonym (hex)
    role: int
    action: int
    risk_level: int
    model: str
    input_digest: str
    emergency: bool
    decision: Decision
    reason: AccessReason
    block: int

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AccessRecord:
        return cls(event["request_id"], event["requester"], bytes32_to_digest(event["patient"]), event["role"],
                   event["action"], event["risk_level"], bytes32_to_digest(event["model"]),
                   bytes32_to_digest(event["input_digest"]), bool(event["emergency"]), Decision(event["decision"]),
                   AccessReason(event["reason"]), event["block"])


class AccessPolicy:
    """The access-policy contract at `address`, governed by its consortium's admin."""

    def __init__(self, backend: ChainBackend, address: str) -> None:
        self.backend = backend
        self.contract = backend.contract("AccessPolicy", address)
        self.address: str = self.contract.address

    @classmethod
    def deploy(cls, backend: ChainBackend, admin: LocalAccount, consortium: str) -> AccessPolicy:
        """A policy that denies everything, governed by `consortium`'s admin."""
        return cls(backend, backend.deploy(admin, "AccessPolicy", Web3.to_checksum_address(consortium)))

    # --- governance ---------------------------------------------------------------------------

    def set_requester(self, admin: LocalAccount, requester: str, role: int) -> TxReceipt:
        """Give `requester` role 1..MAX_ROLES, or none (0)."""
        return self._send(admin, self.contract.functions.set_requester(Web3.to_checksum_address(requester), role))

    def set_policy(self, admin: LocalAccount, role: int, action: int, risk_level: int, decision: Decision) -> TxReceipt:
        return self._send(admin, self.contract.functions.set_policy(role, action, risk_level, int(decision)))

    def set_risk_model(self, admin: LocalAccount, study: str, round: int, model: str) -> TxReceipt:
        return self._send(admin, self.contract.functions.set_risk_model(Web3.to_checksum_address(study), round,
                                                                        digest_to_bytes32(model)))

    def review(self, admin: LocalAccount, request_id: int, upheld: bool) -> TxReceipt:
        """The admin's review of break-glass access `request_id`."""
        return self._send(admin, self.contract.functions.review_break_glass(request_id, upheld))

    # --- requests -----------------------------------------------------------------------------

    def request_access(self, requester: LocalAccount, patient: str, action: int, risk_level: int, model: str,
                       input_digest: str, emergency: bool = False) -> AccessRecord:
        """Ask for `action` on `patient` (a 64-hex-character hashed pseudonym); the decision as recorded."""
        before = self.backend.block_number()
        self._send(requester, self.request_call(patient, action, risk_level, model, input_digest, emergency))
        mine = [r for r in self.decisions(from_block=before) if r.requester == requester.address]
        return mine[-1]

    def request_call(self, patient: str, action: int, risk_level: int, model: str, input_digest: str,
                     emergency: bool = False) -> Any:
        """The unsent `request_access` call, for sending many in one block (`transact_all`)."""
        return self.contract.functions.request_access(digest_to_bytes32(patient), action, risk_level,
                                                      digest_to_bytes32(model), digest_to_bytes32(input_digest),
                                                      emergency)

    # --- views --------------------------------------------------------------------------------

    def role_of(self, requester: str) -> int:
        return self.backend.call(self.contract.functions.requester_role(Web3.to_checksum_address(requester)))

    def policy(self, role: int, action: int, risk_level: int) -> Decision:
        return Decision(self.backend.call(self.contract.functions.policy(role, action, risk_level)))

    def risk_model(self) -> RiskModel | None:
        fns = self.contract.functions
        model = bytes32_to_digest(self.backend.call(fns.risk_model()))
        if model == "00" * 32:
            return None
        return RiskModel(self.backend.call(fns.risk_model_study()), self.backend.call(fns.risk_model_round()), model)

    def review_of(self, request_id: int) -> Review:
        return Review(self.backend.call(self.contract.functions.review_status(request_id)))

    def decisions(self, from_block: int = 0) -> list[AccessRecord]:
        """Every request and its decision, in chain order."""
        logs = self.backend.logs(self.contract.events.AccessDecided, None, from_block)
        return [AccessRecord.from_event({**dict(log["args"]), "block": log["blockNumber"]}) for log in logs]

    def history(self) -> list[dict[str, Any]]:
        """Every event of the contract (governance, requests, reviews) in chain order, for
        replaying it (fedledger.audit.access)."""
        return contract_events(self.backend, self.contract)

    def awaiting_review(self) -> list[AccessRecord]:
        """The break-glass accesses the admin has not reviewed yet."""
        return [r for r in self.decisions() if r.decision == Decision.BREAK_GLASS
                and self.review_of(r.request_id) == Review.PENDING]

    def _send(self, account: LocalAccount, fn: Any) -> TxReceipt:
        return self.backend.transact(account, fn)
