"""Ledger-off stand-ins for the study contracts, for a study run with `[chain] enabled = false`.

`LocalLooseStudy`, `LocalSemiStudy` and `LocalFullStudy` offer the interface of the typed
wrappers `LooseStudy` (StudyLedger.vy), `SemiStudy` (CommitteeStudy.vy) and `FullStudy`
(ConsensusStudy.vy) and apply the contracts' rules in memory, so that the protocol's roles run
unchanged without a chain. The classes follow the Vyper modules: `_Reputation`
(reputation_policy.vy), `_Privacy` (privacy_budget.vy), `_Board` (secagg_board.vy) and `_Rounds`
(rounds.vy), each holding that module's state.

As on chain, a transaction is all or nothing: a failed check raises TransactionReverted with the
contract's own reason ("CommitteeStudy.close_commits reverted: commit window still open") and
leaves no trace; one that lands takes one block of the study's `LocalClock`. Every event the
contract would log is kept, with its block, and read back by `events` as the wrappers read the
chain's (digests stay hex strings, NO_DIGEST for the empty bytes32).

What there is no chain for:
- no consortium: the roster given to the constructor stands for the consortium's active
  institutions, and the calls only a coordinator or the consortium's admin may make on chain
  take any sender; no signatures are checked, the sender is the account passed;
- no block hashes: committees are drawn from the constructor's `seed` (`LocalSemiStudy`);
- no gas: a transaction returns {"status": 1, "blockNumber": its block}.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.privacy import NO_SPEND, PrivacySpend, SpendRecord, spend_problem
from fedledger.chain.records import NO_DIGEST, Rejection, RoundRecord, address_order, digest_to_bytes32
from fedledger.chain.reputation import INITIAL_REPUTATION, REINSTATED, reputation_after, suspends
from fedledger.chain.rounds import Commitment, Phase, Verdict, committee_seed, draw_committee, result_key
from fedledger.chain.rules import (
    Closing,
    commit_closing,
    full_quorum,
    quorum_total,
    score_closing,
    semi_majority,
    vote_weight,
)
from fedledger.chain.secagg import CKKS_SUM, SHARES, Posted
from fedledger.errors import TransactionReverted
from fedledger.validation.reasons import MAX_REASON, Reason

ZERO_ADDRESS = "0x" + "00" * 20
DELTA_SCALE = 10**18        # privacy_budget.vy: delta in 1e-18 units
MAX_COMMITTEE = 16          # CommitteeStudy.vy
MAX_SCORE = 1_000_000       # ConsensusStudy.vy: scores in parts per million

Receipt = dict[str, int]


class LocalClock:
    """The block clock of one ledger-off study, kept as the embedded chain keeps its own: a
    transaction sent outside `batch` is mined in a block of its own; inside, transactions take
    effect at once and share the one block that leaving the batch mines."""

    def __init__(self) -> None:
        self._head = 0              # the latest mined block
        self._batching = False
        self._unmined = False       # a transaction took effect that no mined block holds yet

    def block_number(self) -> int:
        """The latest mined block."""
        return self._head

    def next_block(self) -> int:
        """The block a transaction sent now lands in (`block.number` inside it)."""
        return self._head + 1

    def advance_blocks(self, n: int) -> None:
        """Mine `n` blocks (none if `n` <= 0); the first holds any transaction not yet mined."""
        if n > 0:
            self._head += n
            self._unmined = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Transactions sent inside share one block, mined on leaving (if any was sent)."""
        if self._batching:          # already collecting: the outer batch mines
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
        if self._unmined:
            self.advance_blocks(1)

    def landed(self) -> None:
        """A transaction took effect in `next_block()`."""
        if self._batching:
            self._unmined = True
        else:
            self.advance_blocks(1)


def _transaction(method: Callable[..., None]) -> Callable[..., Receipt]:
    """Run contract function `method`, sent by its first argument (an account), as a
    transaction: all or nothing, landing in the clock's next block."""
    @functools.wraps(method)
    def send(self: _Contract, sender: LocalAccount, *args: Any, **kwargs: Any) -> Receipt:
        self._function = method.__name__
        saved = self._save()
        try:
            method(self, sender, *args, **kwargs)
        except BaseException:
            self._restore(saved)
            raise
        receipt = {"status": 1, "blockNumber": self.clock.next_block()}
        self.clock.landed()
        return receipt
    return send


def _check_digests(*digests: str) -> None:
    """ValueError for a malformed digest, as the wrappers refuse one before sending."""
    for digest in digests:
        digest_to_bytes32(digest)


def _optional(digest: str) -> str | None:
    return None if digest == NO_DIGEST else digest


def _first_each(posted: Iterable[Posted]) -> list[Posted]:
    first: dict[str, Posted] = {}
    for p in posted:
        first.setdefault(p.member, p)
    return list(first.values())


def _anchored(record: RoundRecord) -> tuple[list[str], list[Rejection], list[PrivacySpend]]:
    """What LooseStudy.anchor_round sends of `record`: the participants in address order; the
    rejections (NO_DIGEST where no update is named); each participant's spend, then each
    rejection's (the first per rejected member; none), or no spends at all if the record has none.
    ValueError for a malformed digest or a participant without a spend, refused before sending."""
    _check_digests(record.parent_model, record.model, record.updates_root, record.metrics_digest,
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


class _Contract:
    """What every stand-in shares (StudyContract): its clock, its event log, reverts."""

    contract_name: ClassVar[str]
    chain_id: ClassVar[int] = 0
    address: ClassVar[str] = ZERO_ADDRESS
    _function = "constructor"       # the contract function running, for revert messages

    # the state a transaction can change before one of its own later checks fails (the rest
    # changes only after the last check): _transaction restores it on a revert
    _reputations: dict[str, int]
    _suspended: set[str]
    _epsilon_spent: dict[str, int]

    def __init__(self) -> None:
        self.clock = LocalClock()
        self._events: list[dict[str, Any]] = []

    def block_number(self) -> int:
        return self.clock.block_number()

    def advance_blocks(self, n: int) -> None:
        self.clock.advance_blocks(n)

    def batch(self) -> AbstractContextManager[None]:
        return self.clock.batch()

    def round_count(self) -> int:
        raise NotImplementedError   # each stand-in counts its rounds its own way

    def events(self, name: str, round: int | None = None, from_block: int = 0) -> list[dict[str, Any]]:
        """Every `name` event (of one round, if given; from block `from_block` on) in the order
        logged: its arguments plus "block"."""
        return [{k: v for k, v in e.items() if k != "event"} for e in self._events
                if e["event"] == name and e["block"] >= from_block and round in (None, e.get("round_number"))]

    def all_events(self) -> list[dict[str, Any]]:
        """Every event in the order logged: its arguments plus "event" and "block"."""
        return [dict(e) for e in self._events]

    def _require(self, condition: bool, reason: str) -> None:
        """The contract's `assert condition, reason`."""
        if not condition:
            raise TransactionReverted(f"{self.contract_name}.{self._function} reverted: {reason}")

    def _emit(self, event: str, **args: Any) -> None:
        self._events.append({"event": event, **args, "block": self.clock.next_block()})

    def _save(self) -> tuple[Any, ...]:
        return dict(self._reputations), set(self._suspended), dict(self._epsilon_spent), len(self._events)

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self._reputations, self._suspended, self._epsilon_spent, logged = saved
        del self._events[logged:]


class _Reputation(_Contract):
    """reputation_policy.vy: reputation moved by fixed deltas, suspension strictly below a
    non-zero threshold, re-admission (ReputationPolicy's interface)."""

    def _init_policy(self, suspension_threshold: int) -> None:
        self._require(suspension_threshold <= INITIAL_REPUTATION, "suspension threshold above the initial reputation")
        self._threshold = suspension_threshold
        self._reputations = {}      # the members met so far (`_enrol`)
        self._suspended = set()

    def _enrol(self, member: str) -> None:
        self._reputations.setdefault(member, INITIAL_REPUTATION)

    def _change(self, member: str, round: int, reason: str) -> None:
        before = self._reputations.get(member, 0)
        after = reputation_after(before, reason)
        self._reputations[member] = after
        self._emit("ReputationChanged", member=member, round_number=round, before=before, after=after, reason=reason)
        if suspends(after, self._threshold, member in self._suspended):
            self._suspended.add(member)
            self._emit("MemberSuspended", member=member, round_number=round, reputation=after)

    def _judge_update(self, member: str, round: int, update: str, reason: int, penalize: bool) -> None:
        """An aggregated update earns "update accepted"; any other is an UpdateRejected record,
        penalized (if `penalize`) only for a fault of the member's own: MISSING..LOW_SCORE."""
        if reason == Reason.ACCEPTED:
            self._change(member, round, "update accepted")
            return
        self._emit("UpdateRejected", round_number=round, member=member, update=update, reason=reason)
        if penalize and Reason.MISSING <= reason <= Reason.LOW_SCORE:
            self._change(member, round, "update rejected")

    @_transaction
    def reinstate(self, admin: LocalAccount, member: str) -> None:
        """`_reinstate`: lift `member`'s suspension, back to INITIAL_REPUTATION (any sender may)."""
        member = Web3.to_checksum_address(member)
        self._require(member in self._suspended, "member is not suspended")
        before = self._reputations[member]
        self._suspended.remove(member)
        self._reputations[member] = reputation_after(before, REINSTATED)
        self._emit("ReputationChanged", member=member, round_number=self.round_count() + 1, before=before,
                   after=self._reputations[member], reason=REINSTATED)
        self._emit("MemberReinstated", member=member, admin=admin.address)

    def reputation(self, member: str) -> int:
        return self._reputations.get(Web3.to_checksum_address(member), 0)

    def suspended(self, member: str) -> bool:
        return Web3.to_checksum_address(member) in self._suspended

    def suspension_threshold(self) -> int:
        return self._threshold

    def suspended_count(self) -> int:
        """How many members are suspended now."""
        return len(self._suspended)

    def suspensions(self) -> dict[str, int]:
        """Who was suspended, and in which round (MemberSuspended)."""
        return {e["member"]: e["round_number"] for e in self.events("MemberSuspended")}

    def rejections(self, round: int, from_block: int = 0) -> list[Rejection]:
        """The updates of `round` that were not aggregated (UpdateRejected), in order."""
        return [Rejection(e["member"], _optional(e["update"]), e["reason"])
                for e in self.events("UpdateRejected", round, from_block)]


class _Privacy(_Contract):
    """privacy_budget.vy: each member's epsilon spent against the study's budget (PrivacyBudget's
    interface); the validity rule is privacy.spend_problem."""

    def _init_privacy(self, epsilon_budget: int, delta: int) -> None:
        self._require((epsilon_budget == 0) == (delta == 0), "a privacy budget needs both epsilon and delta")
        self._require(delta < DELTA_SCALE, "delta must be below 1")
        self._budget, self._delta = epsilon_budget, delta
        self._epsilon_spent = {}

    def _spend_problem(self, member: str, spend: PrivacySpend) -> int | None:
        return spend_problem(spend, self._epsilon_spent.get(member, 0), self._budget)

    def _spend(self, member: str, round: int, spend: PrivacySpend) -> None:
        if self._budget == 0:
            return
        self._epsilon_spent[member] = spend.epsilon
        self._emit("PrivacySpent", round_number=round, member=member, noise_multiplier=spend.noise_multiplier,
                   sample_rate=spend.sample_rate, steps=spend.steps, epsilon=spend.epsilon)

    @_transaction
    def set_privacy_budget(self, admin: LocalAccount, epsilon_budget: int) -> None:
        """`_set_budget`: change each member's budget (any sender may)."""
        self._require(self._budget != 0, "the study has no privacy budget")
        self._require(epsilon_budget != 0, "a privacy budget cannot be switched off")
        self._emit("PrivacyBudgetChanged", before=self._budget, after=epsilon_budget, admin=admin.address)
        self._budget = epsilon_budget

    def epsilon_budget(self) -> int:
        return self._budget

    def delta(self) -> int:
        return self._delta

    def epsilon_spent(self, member: str) -> int:
        return self._epsilon_spent.get(Web3.to_checksum_address(member), 0)

    def privacy_spends(self, round: int | None = None, from_block: int = 0) -> list[SpendRecord]:
        """Every recorded release (PrivacySpent; of one round, if given), in order."""
        return [SpendRecord(e["round_number"], e["member"], PrivacySpend(
                    e["noise_multiplier"], e["sample_rate"], e["steps"], e["epsilon"]))
                for e in self.events("PrivacySpent", round, from_block)]


class _Board(_Contract):
    """secagg_board.vy: secure aggregation's messages, logged from whoever the study contract
    lets post (`_check_poster`); SecAggBoard's interface."""

    def _check_poster(self, member: str, round: int) -> None:
        raise NotImplementedError   # who may post is each study contract's own rule

    @_transaction
    def advertise_keys(self, member: LocalAccount, round: int, cipher_key: bytes, mask_key: bytes) -> None:
        """`advertise_keys`: `member`'s X25519 public keys (32 raw bytes each) for the open round."""
        for key in (cipher_key, mask_key):
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError(f"a key must be 32 raw bytes, got {key!r}")
        self._check_poster(member.address, round)
        self._require(cipher_key != bytes(32) and mask_key != bytes(32), "empty key")
        self._emit("KeysAdvertised", round_number=round, member=member.address, cipher_key=cipher_key,
                   mask_key=mask_key)

    @_transaction
    def post_secagg(self, member: LocalAccount, round: int, step: int, digest: str) -> None:
        """`post_secagg`: the digest of what `member` sends at `step` (SHARES, REVEAL, CKKS_...)."""
        _check_digests(digest)
        self._check_poster(member.address, round)
        self._require(SHARES <= step <= CKKS_SUM, "step must be 1 to 5")
        self._require(digest != NO_DIGEST, "empty digest")
        self._emit("SecAggPosted", round_number=round, member=member.address, step=step, digest=digest)

    def key_adverts(self, round: int) -> list[Posted]:
        """Each member's first (cipher key, mask key) for `round`, in order, with its block."""
        return _first_each(Posted(e["member"], (e["cipher_key"], e["mask_key"]), e["block"])
                           for e in self.events("KeysAdvertised", round))

    def posts(self, round: int, step: int) -> list[Posted]:
        """Each member's first digest posted at `step` in `round`, in order, with its block."""
        return _first_each(Posted(e["member"], e["digest"], e["block"])
                           for e in self.events("SecAggPosted", round) if e["step"] == step)

    def advertised_keys(self, round: int) -> dict[str, tuple[bytes, bytes]]:
        return {p.member: p.value for p in self.key_adverts(round)}

    def secagg_posts(self, round: int, step: int) -> dict[str, str]:
        return {p.member: p.value for p in self.posts(round, step)}


class LocalLooseStudy(_Reputation, _Privacy, _Board):
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

    @_transaction
    def start_study(self, coordinator: LocalAccount, config_digest: str, initial_model: str) -> None:
        """`start_study`: `coordinator` (any sender) becomes the study's coordinator."""
        _check_digests(config_digest, initial_model)
        self._require(self._coordinator == ZERO_ADDRESS, "study already started")
        self._require(config_digest != NO_DIGEST, "empty config digest")
        self._require(initial_model != NO_DIGEST, "empty initial model")
        self._coordinator = coordinator.address
        self._config_digest, self._initial_model, self._latest_model = config_digest, initial_model, initial_model
        self._emit("StudyStarted", coordinator=coordinator.address, config_digest=config_digest,
                   initial_model=initial_model)

    @_transaction
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
        for (member, update, code), spend in zip(rejected, sent_spends[len(participants):]):
            self._require(code != Reason.ACCEPTED and code <= MAX_REASON, "reason code must be 1..16")
            institution = member in self._institutions
            if institution:
                self._enrol(member)
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


class _Rounds(_Reputation, _Privacy, _Board):
    """rounds.vy: the roster, commitments, the commit window and finalization that the semi and
    full stand-ins share (RoundStudy's interface). Deploying one starts the study in block 1 and
    opens round 1."""

    def __init__(self, roster: Sequence[str], config_digest: str, initial_model: str, commit_window: int,
                 result_window: int, min_participants: int, suspension_threshold: int, epsilon_budget: int,
                 delta: int) -> None:
        super().__init__()
        _check_digests(config_digest, initial_model)
        members = [Web3.to_checksum_address(m) for m in roster]
        self._require(config_digest != NO_DIGEST, "empty config digest")
        self._require(initial_model != NO_DIGEST, "empty initial model")
        self._require(len(members) >= 2, "a study needs at least two members")
        self._require(1 <= min_participants <= len(members), "min_participants out of range")
        self._require(commit_window > 0 and result_window > 0, "windows must be at least one block")
        self._init_policy(suspension_threshold)
        self._init_privacy(epsilon_budget, delta)
        self._require(len(set(members)) == len(members), "member listed twice")
        for member in members:
            self._enrol(member)
        self._members = members
        self._config_digest, self._initial_model, self._latest_model = config_digest, initial_model, initial_model
        self._commit_window, self._result_window = commit_window, result_window
        self._min_participants = min_participants
        self._round_count = 0
        self._commitments: dict[int, dict[str, Commitment]] = {}   # round -> member -> commitment, in commit order
        self._finalized: dict[int, tuple[str, str]] = {}            # round -> (model, manifest)
        self._reasons: dict[int, list[int]] = {}
        self._final_key: dict[int, bytes] = {}
        # no one deploys a ledger-off study: no sponsor
        self._emit("StudyStarted", sponsor=ZERO_ADDRESS, config_digest=config_digest, initial_model=initial_model,
                   members=list(members))
        self._open_next()
        self.clock.landed()

    # --- rounds.vy internals ---------------------------------------------------------------

    def _open_next(self) -> None:
        self._phase = Phase.COMMITTING
        self._phase_deadline = self.clock.next_block() + self._commit_window
        self._emit("RoundOpened", round_number=self._round_count + 1, parent_model=self._latest_model,
                   deadline=self._phase_deadline)

    def _check_active_member(self, member: str) -> None:
        self._require(member in self._members, "not on the study's roster")
        self._require(member not in self._suspended, "member is suspended")

    def _eligible(self, member: str) -> bool:
        """Whether roster member `member` may take part now (the roster are the institutions)."""
        return member not in self._suspended

    def _standings(self) -> list[tuple[int, bool]]:
        """Each roster member's (reputation, suspended), for the quorums."""
        return [(self._reputations[m], m in self._suspended) for m in self._members]

    def _check_current(self, round: int, phase: int, what: str) -> None:
        self._require(round == self._round_count + 1, "not the open round")
        self._require(self._phase == phase, f"round is not {what}")

    def _check_poster(self, member: str, round: int) -> None:
        self._check_active_member(member)
        self._require(round == self._round_count + 1, "not the open round")

    def _past_deadline(self) -> bool:
        return self.clock.next_block() > self._phase_deadline

    def _close_commits(self, round: int) -> bool:
        """True when the commit phase closes now; past the deadline with too few commitments the
        window is extended instead."""
        self._check_current(round, Phase.COMMITTING, "committing")
        committed = self._commitments.get(round, {})
        everyone = all(m in committed or not self._eligible(m) for m in self._members)
        closing = commit_closing(len(committed), self._min_participants, self._past_deadline(), everyone)
        self._require(closing is not Closing.WAIT, "commit window still open")
        if closing is Closing.CLOSE:
            return True
        self._phase_deadline = self.clock.next_block() + self._commit_window
        self._emit("CommitWindowExtended", round_number=round, committed=len(committed), deadline=self._phase_deadline)
        return False

    def _check_reasons(self, round: int, reasons: Sequence[int]) -> None:
        self._require(len(reasons) == len(self._commitments.get(round, {})), "one reason per committed update")
        self._require(all(code <= MAX_REASON for code in reasons), "reason code above 16")

    def _finalize(self, model: str, manifest_digest: str, reasons: Sequence[int]) -> None:
        """Finalize the open round: judge each committed update by its reason code, record the
        round and open the next."""
        round = self._round_count + 1
        self._finalized[round] = (model, manifest_digest)
        self._reasons[round] = list(reasons)
        for (member, commitment), code in zip(self._commitments.get(round, {}).items(), reasons):
            self._judge_update(member, round, commitment.update, code, True)
        self._emit("RoundFinalized", round_number=round, parent_model=self._latest_model, model=model,
                   manifest_digest=manifest_digest)
        self._round_count = round
        self._latest_model = model
        self._open_next()

    def _judge(self, member: str, round: int, agreed: bool) -> None:
        """Reward or penalize a result vote by whether it matches the finalized result."""
        self._change(member, round, "agreed" if agreed else "disagreed")

    # --- transactions ------------------------------------------------------------------------

    @_transaction
    def commit_update(self, member: LocalAccount, round: int, parent_model: str, update: str, num_samples: int,
                      metrics_digest: str, spend: PrivacySpend = NO_SPEND) -> None:
        """`commit_update`: a commitment refused for a reason of the sender's own is no revert
        but a CommitRejected record with its reason code."""
        _check_digests(parent_model, update, metrics_digest)
        sender = member.address
        problem = self._spend_problem(sender, spend)
        reason = Reason.ACCEPTED
        if sender not in self._members:
            reason = Reason.NOT_MEMBER
        elif sender in self._suspended:
            reason = Reason.SUSPENDED
        elif round != self._round_count + 1 or self._phase != Phase.COMMITTING or parent_model != self._latest_model:
            reason = Reason.WRONG_ROUND
        elif sender in self._commitments.get(round, {}):
            reason = Reason.DUPLICATE
        elif num_samples == 0:
            reason = Reason.OUT_OF_RANGE
        elif update == NO_DIGEST or problem == Reason.INVALID_FORMAT:
            reason = Reason.INVALID_FORMAT
        elif problem == Reason.PRIVACY_BUDGET:
            reason = Reason.PRIVACY_BUDGET
        if reason != Reason.ACCEPTED:
            self._emit("CommitRejected", round_number=round, member=sender, update=update, reason=int(reason))
            return
        self._commitments.setdefault(round, {})[sender] = Commitment(sender, update, num_samples)
        self._spend(sender, round, spend)
        self._emit("UpdateCommitted", round_number=round, member=sender, update=update, num_samples=num_samples,
                   metrics_digest=metrics_digest)

    # --- reads ---------------------------------------------------------------------------------

    def started(self) -> bool:
        """Always: deploying starts the study."""
        return True

    def round_count(self) -> int:
        return self._round_count

    def open_round(self) -> int:
        return self._round_count + 1

    def phase(self) -> int:
        return self._phase

    def phase_deadline(self) -> int:
        return self._phase_deadline

    def latest_model(self) -> str:
        return self._latest_model

    def config_digest(self) -> str:
        return self._config_digest

    def initial_model(self) -> str:
        return self._initial_model

    def roster(self) -> list[str]:
        return list(self._members)

    def committers(self, round: int) -> list[str]:
        """Who committed in `round`, in commit order."""
        return list(self._commitments.get(round, {}))

    def commitments(self, round: int) -> list[Commitment]:
        return list(self._commitments.get(round, {}).values())

    def finalized(self, round: int) -> tuple[str, str] | None:
        """(model, manifest digest) of a finalized round, else None."""
        return self._finalized.get(round)

    def round_manifest(self, round: int) -> str:
        return self._finalized.get(round, (NO_DIGEST, NO_DIGEST))[1]

    def first_commit_block(self, round: int) -> int:
        """The block of the round's first commitment."""
        return self.events("UpdateCommitted", round)[0]["block"]

    def final_key(self, round: int) -> bytes:
        """The `result_key` of the result that finalized `round`; zeros before then."""
        return self._final_key.get(round, bytes(32))

    def finalized_reasons(self, round: int) -> list[int]:
        """Each committed update's reason code in a finalized round; [] before then."""
        return list(self._reasons.get(round, []))

    def commit_rejections(self, round: int, from_block: int = 0) -> list[Rejection]:
        """The commitments refused in `round` (CommitRejected), in order."""
        return [Rejection(e["member"], _optional(e["update"]), e["reason"])
                for e in self.events("CommitRejected", round, from_block)]


class LocalSemiStudy(_Rounds):
    """CommitteeStudy.vy (SemiStudy's interface): a committee drawn by reputation aggregates.

    With no block hashes, the draw's entropy comes from `seed`: sha256 of
    f"{seed}:committee:{round}:{attempt}" stands for the hash of the block before the draw, so a
    round's first committee is drawn from `committee_seed(that, round, 1)` and a redraw from
    `committee_seed(keccak(previous seed + that), round, attempt)`, as on chain.
    """

    contract_name = "CommitteeStudy"

    def __init__(self, roster: Sequence[str], config_digest: str, initial_model: str, commit_window: int,
                 result_window: int, min_participants: int, committee_size: int, suspension_threshold: int = 0,
                 epsilon_budget: int = 0, delta: int = 0, seed: int = 0) -> None:
        self._require(1 <= committee_size <= MAX_COMMITTEE, "committee_size must be 1..16")
        self._require(committee_size <= len(roster), "committee larger than the roster")
        self._committee_size, self._seed = committee_size, seed
        self._attempt = 0
        self._committees: dict[tuple[int, int], list[str]] = {}        # (round, attempt) -> committee
        self._seeds: dict[tuple[int, int], bytes] = {}
        self._vote_of: dict[tuple[int, int], dict[str, bytes]] = {}    # (round, attempt) -> member -> key
        self._votes_for: dict[tuple[int, int], Counter[bytes]] = {}
        self._final_attempt: dict[int, int] = {}
        super().__init__(roster, config_digest, initial_model, commit_window, result_window, min_participants,
                         suspension_threshold, epsilon_budget, delta)

    def _entropy(self, round: int, attempt: int) -> bytes:
        """What stands for the hash of the block before draw `attempt` of `round`."""
        return hashlib.sha256(f"{self._seed}:committee:{round}:{attempt}".encode()).digest()

    def _draw(self, round: int, attempt: int, entropy: bytes) -> None:
        """`_draw`: by reputation among the eligible members, without replacement."""
        seed = committee_seed(entropy, round, attempt)
        weights = [self._reputations[m] if self._eligible(m) else 0 for m in self._members]
        committee = draw_committee(seed, self._members, weights, self._committee_size)
        self._require(len(committee) > 0, "no member with reputation left to draw")
        self._attempt = attempt
        self._committees[(round, attempt)] = committee
        self._seeds[(round, attempt)] = seed
        self._phase_deadline = self.clock.next_block() + self._result_window
        self._emit("CommitteeDrawn", round_number=round, attempt=attempt, seed=seed, committee=list(committee),
                   deadline=self._phase_deadline)

    @_transaction
    def close_commits(self, member: LocalAccount, round: int) -> None:
        """`close_commits`: close the commit phase and draw the committee."""
        if self._close_commits(round):
            self._draw(round, 1, self._entropy(round, 1))
            self._phase = Phase.AGGREGATING

    @_transaction
    def redraw(self, member: LocalAccount, round: int) -> None:
        """`redraw`: past the result deadline without a majority, the silent committee members
        lose reputation and a new committee is drawn."""
        self._check_current(round, Phase.AGGREGATING, "aggregating")
        self._require(self._past_deadline(), "result window still open")
        drawn = (round, self._attempt)
        for absent in self._committees[drawn]:
            if absent not in self._vote_of.get(drawn, {}):
                self._change(absent, round, "absent")
        attempt = self._attempt + 1
        self._draw(round, attempt, Web3.keccak(self._seeds[drawn] + self._entropy(round, attempt)))

    @_transaction
    def submit_result(self, member: LocalAccount, round: int, attempt: int, model: str, manifest_digest: str,
                      reasons: Sequence[int]) -> None:
        """`submit_result`: a committee member's result; a majority of the committee finalizes
        the round, and a late result from the finalizing committee is judged against it."""
        _check_digests(model, manifest_digest)
        sender, reasons = member.address, [int(r) for r in reasons]
        self._require(model != NO_DIGEST and manifest_digest != NO_DIGEST, "empty digest")
        self._require(round >= 1, "no round 0")
        drawn = (round, attempt)
        committee = self._committees.get(drawn, [])
        self._require(sender in committee, "not on this committee")
        self._check_active_member(sender)
        self._require(sender not in self._vote_of.get(drawn, {}), "already submitted")
        self._check_reasons(round, reasons)
        key = result_key(model, manifest_digest, reasons)
        late = round <= self._round_count
        if late:
            self._require(attempt == self._final_attempt[round], "that committee was replaced")
        else:
            self._check_current(round, Phase.AGGREGATING, "aggregating")
            self._require(attempt == self._attempt, "that committee was replaced")
        votes = self._vote_of.setdefault(drawn, {})
        votes[sender] = key
        self._emit("ResultSubmitted", round_number=round, attempt=attempt, member=sender, model=model,
                   manifest_digest=manifest_digest, reasons=reasons)
        if late:
            self._judge(sender, round, key == self._final_key[round])
            return
        tally = self._votes_for.setdefault(drawn, Counter())
        tally[key] += 1
        if not semi_majority(tally[key], len(committee)):
            return
        self._final_attempt[round], self._final_key[round] = attempt, key
        for voter in committee:
            if voter in votes:
                self._judge(voter, round, votes[voter] == key)
        self._attempt = 0           # the next round has drawn no committee yet
        self._finalize(model, manifest_digest, reasons)

    def committee_size(self) -> int:
        return self._committee_size

    def attempt(self) -> int:
        """How many committees the open round has drawn (0 while committing)."""
        return self._attempt

    def committee(self, round: int, attempt: int) -> list[str]:
        return list(self._committees.get((round, attempt), []))

    def final_attempt(self, round: int) -> int:
        return self._final_attempt.get(round, 0)

    def results(self, round: int) -> list[Verdict]:
        """The committee members' results of `round` (ResultSubmitted), in order."""
        return [Verdict(e["member"], e["model"], e["manifest_digest"], list(e["reasons"]), e["attempt"])
                for e in self.events("ResultSubmitted", round)]


class LocalFullStudy(_Rounds):
    """ConsensusStudy.vy (FullStudy's interface): every member scores and votes; two thirds of
    the members not suspended, by count or by reputation, finalize."""

    contract_name = "ConsensusStudy"

    def __init__(self, roster: Sequence[str], config_digest: str, initial_model: str, commit_window: int,
                 result_window: int, min_participants: int, suspension_threshold: int = 0, epsilon_budget: int = 0,
                 delta: int = 0, weight_by_reputation: bool = False) -> None:
        self._weight_by_reputation = weight_by_reputation
        self._scored: dict[int, set[str]] = {}
        self._vote_of: dict[int, dict[str, bytes]] = {}    # round -> member -> key
        self._votes_for: dict[int, Counter[bytes]] = {}
        self._rewards: Counter[str] = Counter()
        super().__init__(roster, config_digest, initial_model, commit_window, result_window, min_participants,
                         suspension_threshold, epsilon_budget, delta)

    @_transaction
    def close_commits(self, member: LocalAccount, round: int) -> None:
        """`close_commits`: close the commit phase; scoring starts."""
        if self._close_commits(round):
            self._phase = Phase.SCORING
            self._phase_deadline = self.clock.next_block() + self._result_window

    @_transaction
    def submit_scores(self, validator: LocalAccount, round: int, scores: Sequence[int]) -> None:
        """`submit_scores`: the validator's scores of the round's updates, in commit order."""
        sender, scores = validator.address, list(scores)
        self._check_current(round, Phase.SCORING, "scoring")
        self._check_active_member(sender)
        self._require(sender not in self._scored.get(round, set()), "already scored this round")
        self._require(len(scores) == len(self._commitments.get(round, {})), "one score per committed update")
        self._require(all(score <= MAX_SCORE for score in scores), "score above 1000000")
        self._scored.setdefault(round, set()).add(sender)
        self._emit("ScoresSubmitted", round_number=round, validator=sender, scores=scores)

    @_transaction
    def close_scores(self, member: LocalAccount, round: int) -> None:
        """`close_scores`: freeze the scores (everyone scored, or two thirds past the deadline);
        voting starts. Past the deadline with fewer, the window is extended."""
        self._check_current(round, Phase.SCORING, "scoring")
        scored = len(self._scored.get(round, set()))
        closing = score_closing(scored, quorum_total(self._standings(), False), self._past_deadline())
        self._require(closing is not Closing.WAIT, "score window still open")
        self._phase_deadline = self.clock.next_block() + self._result_window
        if closing is Closing.EXTEND:
            self._emit("ScoreWindowExtended", round_number=round, validators=scored, deadline=self._phase_deadline)
            return
        self._phase = Phase.VOTING
        self._emit("ScoresClosed", round_number=round, validators=scored, deadline=self._phase_deadline)

    @_transaction
    def submit_vote(self, validator: LocalAccount, round: int, model: str, manifest_digest: str,
                    rewards: Sequence[int], reasons: Sequence[int]) -> None:
        """`submit_vote`: the validator's result; two thirds finalize it, crediting its rewards,
        and a vote after the round finalized is judged against the outcome."""
        _check_digests(model, manifest_digest)
        sender, rewards, reasons = validator.address, list(rewards), [int(r) for r in reasons]
        self._require(model != NO_DIGEST and manifest_digest != NO_DIGEST, "empty digest")
        self._require(round >= 1, "no round 0")
        self._check_active_member(sender)
        self._require(sender not in self._vote_of.get(round, {}), "already voted this round")
        late = round <= self._round_count
        if not late:
            self._check_current(round, Phase.VOTING, "voting")
        committers = self.committers(round)
        self._require(len(rewards) == len(committers), "one reward per committed update")
        self._check_reasons(round, reasons)
        self._require(all(reward == 0 or code == Reason.ACCEPTED for reward, code in zip(rewards, reasons)),
                      "rejected update cannot be rewarded")
        key = result_key(model, manifest_digest, reasons, rewards)
        votes = self._vote_of.setdefault(round, {})
        votes[sender] = key
        self._emit("VoteSubmitted", round_number=round, validator=sender, model=model,
                   manifest_digest=manifest_digest, rewards=rewards, reasons=reasons)
        if late:
            self._judge(sender, round, key == self._final_key[round])
            return
        tally = self._votes_for.setdefault(round, Counter())
        tally[key] += vote_weight(self._reputations[sender], self._weight_by_reputation)
        if not full_quorum(tally[key], quorum_total(self._standings(), self._weight_by_reputation)):
            return
        self._final_key[round] = key
        for voter in self._members:
            if voter in votes:
                self._judge(voter, round, votes[voter] == key)
        for committer, reward in zip(committers, rewards):
            if reward > 0:
                self._rewards[committer] += reward
                self._emit("RewardCredited", member=committer, round_number=round, amount=reward)
        self._finalize(model, manifest_digest, reasons)

    def scores(self, round: int, from_block: int = 0) -> dict[str, list[int]]:
        """validator -> its scores of the round's updates (commit order)."""
        return {e["validator"]: list(e["scores"]) for e in self.events("ScoresSubmitted", round, from_block)}

    def votes(self, round: int) -> list[Verdict]:
        """The validators' votes of `round` (VoteSubmitted), in order."""
        return [Verdict(e["validator"], e["model"], e["manifest_digest"], list(e["reasons"]),
                        rewards=list(e["rewards"])) for e in self.events("VoteSubmitted", round)]

    def score_count(self, round: int) -> int:
        return len(self._scored.get(round, set()))

    def weight_by_reputation(self) -> bool:
        return self._weight_by_reputation

    def reward_balance(self, member: str) -> int:
        return self._rewards[Web3.to_checksum_address(member)]


LOCAL_STUDIES: dict[str, type[LocalLooseStudy | LocalSemiStudy | LocalFullStudy]] = {
    "loose": LocalLooseStudy, "semi": LocalSemiStudy, "full": LocalFullStudy}
