"""`LocalLooseStudy`: StudyLedger.vy (the loose study contract) in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.local.base import (
    ZERO_ADDRESS,
    BoardStandIn,
    EvaluationStandIn,
    PrivacyStandIn,
    ReputationStandIn,
    check_digests,
    transaction,
)
from fedledger.chain.privacy import NO_SPEND, PrivacySpend
from fedledger.chain.records import (
    NO_DIGEST,
    Rejection,
    RoundRecord,
    address_order,
)
from fedledger.chain.loose import evidence
from fedledger.chain.reputation import (
    INITIAL_REPUTATION,
)
from fedledger.crypto import UpdateCommitment, recover_signer
from fedledger.errors import TransactionReverted
from fedledger.validation.reasons import MAX_REASON, Reason, penalized


def _anchored(record: RoundRecord) -> tuple[list[str], list[Rejection], list[PrivacySpend]]:
    """What LooseStudy.anchor_round sends of `record`: the participants in address order; the
    rejections (NO_DIGEST where no update is named); each participant's spend, then each
    rejection's (the first per rejected member; none), or no spends at all if the record has none.
    ValueError for a malformed digest or a participant without a spend, refused before sending."""
    check_digests(record.parent_model, record.model, record.updates_root, record.metrics_digest,
                   record.manifest_digest, *(update for _, update, _ in record.rejected if update is not None))
    participants = sorted((Web3.to_checksum_address(p) for p in record.participants), key=address_order)
    rejected = [Rejection(Web3.to_checksum_address(member), NO_DIGEST if update is None else update, int(code))
                for member, update, code in record.rejected]
    spends = {Web3.to_checksum_address(m): s for m, s in record.spends}
    rejected_spends = {Web3.to_checksum_address(m): s for m, s in record.rejected_spends}
    if not spends and not rejected_spends:
        return participants, rejected, []
    if set(participants) - spends.keys():
        raise ValueError(f"no privacy spend for participant {min(set(participants) - spends.keys())}")
    return participants, rejected, ([spends[p] for p in participants]
                                    + [rejected_spends.pop(r.member, NO_SPEND) for r in rejected])


class LocalLooseStudy(ReputationStandIn, PrivacyStandIn, BoardStandIn, EvaluationStandIn):
    """StudyLedger.vy (LooseStudy's interface): the coordinator anchors each round; `roster`
    stands for the consortium's institutions. Deploying it takes block 1."""

    contract_name = "StudyLedger"

    def __init__(self, roster: Sequence[str], suspension_threshold: int = 0, epsilon_budget: int = 0,
                 delta: int = 0) -> None:
        super().__init__()
        self._init_policy(suspension_threshold)
        self._init_privacy(epsilon_budget, delta)
        self._institutions = {Web3.to_checksum_address(m) for m in roster}
        self._coordinator = ZERO_ADDRESS
        self._config_digest = self._initial_model = self._latest_model = NO_DIGEST
        self._rounds: list[RoundRecord] = []    # as anchored, without the rejections and spends logged
        self.clock.landed()

    @transaction
    def start_study(self, coordinator: LocalAccount, config_digest: str, initial_model: str) -> None:
        """`start_study`: `coordinator` (any sender) becomes the study's coordinator."""
        check_digests(config_digest, initial_model)
        self._require(self._coordinator == ZERO_ADDRESS, "study already started")
        self._require(config_digest != NO_DIGEST, "empty config digest")
        self._require(initial_model != NO_DIGEST, "empty initial model")
        self._coordinator = coordinator.address
        self._config_digest, self._initial_model, self._latest_model = config_digest, initial_model, initial_model
        self._emit("StudyStarted", coordinator=coordinator.address, config_digest=config_digest,
                   initial_model=initial_model)

    @transaction
    def anchor_round(self, coordinator: LocalAccount, record: RoundRecord) -> None:
        """`anchor_round` of `record`, as LooseStudy.anchor_round sends it (`_anchored`)."""
        participants, rejected, sent_spends = _anchored(record)
        round = record.round
        self._require(self._coordinator != ZERO_ADDRESS, "study not started")
        self._require(coordinator.address == self._coordinator, "only the study coordinator")
        self._require(round == len(self._rounds) + 1, "wrong round number")
        self._require(record.parent_model == self._latest_model, "parent is not the latest model")
        self._require(record.model != NO_DIGEST, "empty model digest")
        has_budget = self._budget != 0
        self._require(len(sent_spends) == (len(participants) + len(rejected) if has_budget else 0),
                      "one privacy spend per participant and rejection")
        sent_spends = sent_spends or [NO_SPEND] * (len(participants) + len(rejected))   # none sent: none each
        previous = 0
        for participant, spend in zip(participants, sent_spends):
            self._require(address_order(participant) > previous, "participants not strictly increasing (duplicate?)")
            previous = address_order(participant)
            self._require(participant in self._institutions, "participant is not an institution")
            self._enrol(participant)
            self._require(participant not in self._suspended, "participant is suspended")
            self._judge_update(participant, round, NO_DIGEST, Reason.ACCEPTED, True)
            if has_budget:
                problem = self._spend_problem(participant, spend)
                self._require(problem != Reason.INVALID_FORMAT, "malformed privacy spend")
                self._require(problem != Reason.PRIVACY_BUDGET, "participant past its privacy budget")
                self._spend(participant, round, spend)
        for (member, update, code), spend, (num_samples, signature) in zip(
                rejected, sent_spends[len(participants):], evidence(record), strict=True):
            self._require(code != Reason.ACCEPTED and code <= MAX_REASON, "reason code must be 1..18")
            institution = member in self._institutions
            if institution:
                self._enrol(member)
                signed = UpdateCommitment(self.chain_id, self.address, round, record.parent_model, update, num_samples)
                self._require(not penalized(code) or recover_signer(signed, signature) == member,
                              "a penalty needs the institution's signature over the rejected update")
            # anyone can name an outsider: only an institution's own fault costs reputation
            self._judge_update(member, round, update, code, institution)
            if has_budget and spend != NO_SPEND:
                self._require(institution, "privacy spend of a non-institution")
                problem = self._spend_problem(member, spend)
                self._require(problem != Reason.INVALID_FORMAT, "malformed privacy spend")
                self._require(problem != Reason.PRIVACY_BUDGET, "rejected member past its privacy budget")
                self._spend(member, round, spend)
        self._rounds.append(replace(record, participants=tuple(participants), rejected=(), spends=(),
                                    rejected_spends=()))
        self._latest_model = record.model
        self._emit("RoundAnchored", round_number=round, parent_model=record.parent_model, model=record.model,
                   updates_root=record.updates_root, participants=participants,
                   metrics_digest=record.metrics_digest, manifest_digest=record.manifest_digest)

    def _evaluated_model(self, member: str, round: int) -> str:
        self._require(1 <= round <= len(self._rounds), "round not anchored")
        self._require(member in self._institutions, "not an active institution")
        return self._rounds[round - 1].model

    def _check_poster(self, member: str, round: int) -> None:
        self._require(self._coordinator != ZERO_ADDRESS, "study not started")
        self._require(member in self._institutions, "not an active institution")
        self._require(member not in self._suspended, "member is suspended")
        self._require(round == len(self._rounds) + 1, "not the open round")

    def started(self) -> bool:
        return self._coordinator != ZERO_ADDRESS

    def coordinator(self) -> str:
        """The study's coordinator; the zero address before the study starts."""
        return self._coordinator

    def round_count(self) -> int:
        return len(self._rounds)

    def config_digest(self) -> str:
        return self._config_digest

    def initial_model(self) -> str:
        return self._initial_model

    def latest_model(self) -> str:
        return self._latest_model

    def get_round(self, n: int) -> RoundRecord:
        """Anchored round `n` with its rejections and spends, as LooseStudy.get_round reads it."""
        if not 1 <= n <= len(self._rounds):
            raise TransactionReverted(f"{self.contract_name}.get_round reverted: no such round")
        stored = self._rounds[n - 1]
        spends = [(s.member, s.spend) for s in self.privacy_spends(n)]
        return replace(stored, rejected=tuple(self.rejections(n)),
                       spends=tuple((m, s) for m, s in spends if m in stored.participants),
                       rejected_spends=tuple((m, s) for m, s in spends if m not in stored.participants))

    def round_manifest(self, n: int) -> str:
        return self.get_round(n).manifest_digest

    def anchored_rounds(self) -> list[tuple[RoundRecord, int]]:
        """(record, block) of every anchored round, in order."""
        return [(self.get_round(e["round_number"]), e["block"]) for e in self.events("RoundAnchored")]

    def reputation(self, member: str) -> int:
        """`reputation_of`: the stored reputation once an anchor named `member`, else
        INITIAL_REPUTATION for an institution and 0 for anyone else."""
        member = Web3.to_checksum_address(member)
        if member in self._reputations:
            return self._reputations[member]
        return INITIAL_REPUTATION if member in self._institutions else 0

    def stored_reputation(self, member: str) -> int:
        """The contract's `reputation` map as is: 0 until an anchor names `member`."""
        return super().reputation(member)

    def institutions_among(self, addresses: Sequence[str]) -> set[str]:
        """Which of `addresses` are institutions (on the roster)."""
        return {a for a in map(Web3.to_checksum_address, addresses) if a in self._institutions}


