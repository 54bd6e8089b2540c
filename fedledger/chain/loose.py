"""`LooseStudy`: typed access to StudyLedger.vy, the loose architecture's round anchor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend
from fedledger.chain.consortium import Consortium
from fedledger.chain.contract import StudyContract
from fedledger.chain.evaluations import EvaluationBoard
from fedledger.chain.privacy import NO_SPEND, PrivacyBudget, PrivacySpend
from fedledger.chain.records import (
    Rejection,
    Role,
    RoundRecord,
    address_order,
    bytes32_to_digest,
    bytes32_to_optional_digest,
    chain_order,
    digest_to_bytes32,
    optional_digest_to_bytes32,
)
from fedledger.chain.reputation import ReputationPolicy
from fedledger.chain.secagg import SecAggBoard


class LooseStudy(StudyContract, ReputationPolicy, PrivacyBudget, SecAggBoard, EvaluationBoard):
    """One loose study's contract at `address`: its configuration, every anchored round, and the
    shared reputation policy applied to the institutions the anchors name, and the privacy budget."""

    contract_name = "StudyLedger"

    @classmethod
    def deploy(cls, backend: ChainBackend, deployer: LocalAccount, consortium: Consortium,
               suspension_threshold: int = 0, epsilon_budget: int = 0, delta: int = 0) -> LooseStudy:
        """A new study whose members and coordinators are those of `consortium`; an institution
        whose reputation falls strictly below a non-zero `suspension_threshold` is suspended.
        A non-zero `epsilon_budget` (millionths) with its `delta` (1e-18 units) is each member's
        differential-privacy budget: every anchor then carries its participants' spends."""
        return cls(backend, backend.deploy(deployer, cls.contract_name, consortium.address, suspension_threshold,
                                           epsilon_budget, delta))

    def start_study(self, coordinator: LocalAccount, config_digest: str, initial_model: str) -> TxReceipt:
        """Fix the study's configuration and initial model; `coordinator` becomes its coordinator."""
        return self.backend.transact(coordinator, self.contract.functions.start_study(
            digest_to_bytes32(config_digest), digest_to_bytes32(initial_model)))

    def anchor_round(self, coordinator: LocalAccount, record: RoundRecord) -> TxReceipt:
        """Anchor `record`; its participants are sent in the address order the contract requires,
        its rejections in their own order. Every participant earns "update accepted"; a rejected
        institution loses "update rejected" for a fault of its own shown by its signed update
        (`record.evidence`); a suspended participant is refused."""
        participants = sorted((Web3.to_checksum_address(p) for p in record.participants), key=address_order)
        rejected = [Rejection(*r) for r in record.rejected]
        spends = {Web3.to_checksum_address(m): s for m, s in record.spends}
        rejected_spends = {Web3.to_checksum_address(m): s for m, s in record.rejected_spends}
        if (spends or rejected_spends) and set(participants) - spends.keys():
            raise ValueError(f"no privacy spend for participant {min(set(participants) - spends.keys())}")
        return self.backend.transact(coordinator, self.contract.functions.anchor_round(
            record.round, digest_to_bytes32(record.parent_model), digest_to_bytes32(record.model),
            digest_to_bytes32(record.updates_root), participants, digest_to_bytes32(record.metrics_digest),
            digest_to_bytes32(record.manifest_digest), [Web3.to_checksum_address(r.member) for r in rejected],
            [optional_digest_to_bytes32(r.update) for r in rejected], [int(r.reason) for r in rejected],
            [(n, bytes.fromhex(sig.removeprefix("0x"))) for n, sig in evidence(record)],
            [spends[p].as_args() for p in participants]
            + [rejected_spends.pop(Web3.to_checksum_address(r.member), NO_SPEND).as_args() for r in rejected]
            if spends or rejected_spends else []))

    def round_count(self) -> int:
        return self.backend.call(self.contract.functions.round_count())

    def get_round(self, n: int) -> RoundRecord:
        """The stored record of round `n` (1-based), its rejections read back from the
        UpdateRejected events (one log query); TransactionReverted if there is none."""
        stored = self.backend.call(self.contract.functions.get_round(n))
        return _record(n, dict(zip(("parent_model", "model", "updates_root", "participants",
                                    "metrics_digest", "manifest_digest"), stored, strict=True)),
                       self.rejections(n), [(r.member, r.spend) for r in self.privacy_spends(n)])

    def round_model(self, n: int) -> str | None:
        """The model digest of anchored round `n`; None while there is none."""
        if not 1 <= n <= self.round_count():
            return None
        return bytes32_to_digest(self.backend.call(self.contract.functions.get_round(n))[1])

    def round_manifest(self, n: int) -> str:
        """The manifest digest of anchored round `n`."""
        return bytes32_to_digest(self.backend.call(self.contract.functions.get_round(n))[5])

    def reputation(self, member: str) -> int:
        """`member`'s reputation in effect: INITIAL_REPUTATION for an institution no anchor has
        named yet, 0 for anyone else never named (the contract's `reputation_of`)."""
        return self._view("reputation_of", Web3.to_checksum_address(member))

    def stored_reputation(self, member: str) -> int:
        """The contract's `reputation` map as is: 0 until an anchor names `member`."""
        return self._view("reputation", Web3.to_checksum_address(member))

    def config_digest(self) -> str:
        return bytes32_to_digest(self.backend.call(self.contract.functions.config_digest()))

    def initial_model(self) -> str:
        return bytes32_to_digest(self.backend.call(self.contract.functions.initial_model()))

    def latest_model(self) -> str:
        return bytes32_to_digest(self.backend.call(self.contract.functions.latest_model()))

    def institutions_among(self, addresses: Sequence[str]) -> set[str]:
        """Which of `addresses` are active members of the study's consortium with the
        institution role (one read for all)."""
        return Consortium(self.backend, self._view("consortium")).holders_of(addresses, Role.INSTITUTION)

    def started(self) -> bool:
        """Whether the coordinator has started the study (fixed its config and initial model)."""
        return self.coordinator() != "0x" + "00" * 20

    def coordinator(self) -> str:
        """The study's coordinator; the zero address before the study starts."""
        return self.backend.call(self.contract.functions.coordinator())

    def anchored_rounds(self) -> list[tuple[RoundRecord, int]]:
        """(record, block number) of every RoundAnchored event, in chain order, with the
        rejections of its UpdateRejected events and the spends of its PrivacySpent events
        (three log queries in all)."""
        logs = self.contract.events.RoundAnchored.get_logs(from_block=0, to_block="latest")
        ordered = sorted(logs, key=chain_order)
        rejected: dict[int, list[Rejection]] = {}
        for rejection in self.events("UpdateRejected"):
            rejected.setdefault(rejection["round_number"], []).append(
                Rejection(rejection["member"], bytes32_to_optional_digest(rejection["update"]), rejection["reason"]))
        spends: dict[int, list[tuple[str, PrivacySpend]]] = {}
        for spent in self.privacy_spends():
            spends.setdefault(spent.round, []).append((spent.member, spent.spend))
        return [(_record(n, log["args"], rejected.get(n, []), spends.get(n, [])), log["blockNumber"])
                for log in ordered for n in [log["args"]["round_number"]]]


def evidence(record: RoundRecord) -> tuple[tuple[int, str], ...]:
    """`record.evidence`, one per rejection: ValueError if it is given but does not match."""
    if not record.evidence:
        return ((0, ""),) * len(record.rejected)
    if len(record.evidence) != len(record.rejected):
        raise ValueError(f"{len(record.evidence)} pieces of evidence for {len(record.rejected)} rejections")
    return record.evidence


def _record(n: int, fields: Any, rejected: Sequence[Rejection] = (),
            spends: Sequence[tuple[str, PrivacySpend]] = ()) -> RoundRecord:
    participants = tuple(Web3.to_checksum_address(p) for p in fields["participants"])
    return RoundRecord(
        round=n,
        parent_model=bytes32_to_digest(fields["parent_model"]),
        model=bytes32_to_digest(fields["model"]),
        updates_root=bytes32_to_digest(fields["updates_root"]),
        participants=participants,
        metrics_digest=bytes32_to_digest(fields["metrics_digest"]),
        manifest_digest=bytes32_to_digest(fields["manifest_digest"]),
        rejected=tuple(rejected),
        spends=tuple((m, x) for m, x in spends if m in participants),
        rejected_spends=tuple((m, x) for m, x in spends if m not in participants),
    )
