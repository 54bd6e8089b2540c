"""What the ledger-off stand-ins share: their block clock, transactions as all or nothing, the
event log, and the reputation policy, privacy budget and secure-aggregation board that every
study contract includes (reputation_policy.vy, privacy_budget.vy, secagg_board.vy)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.privacy import PrivacySpend, SpendRecord, spend_problem
from fedledger.chain.records import (
    NO_DIGEST,
    Rejection,
    digest_to_bytes32,
)
from fedledger.chain.reputation import (
    INITIAL_REPUTATION,
    REINSTATED,
    reputation_after,
    suspends,
)
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_SUM, MAX_DATA, REVEAL, SHARES, Posted, first_each
from fedledger.errors import TransactionReverted
from fedledger.validation.reasons import Reason, penalized

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


def transaction(method: Callable[..., None]) -> Callable[..., Receipt]:
    """Run contract function `method`, sent by its first argument (an account), as a
    transaction: all or nothing, landing in the clock's next block."""
    @functools.wraps(method)
    def send(self: StandIn, sender: LocalAccount, *args: Any, **kwargs: Any) -> Receipt:
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


def check_digests(*digests: str) -> None:
    """ValueError for a malformed digest, as the wrappers refuse one before sending."""
    for digest in digests:
        digest_to_bytes32(digest)


def optional_digest(digest: str) -> str | None:
    return None if digest == NO_DIGEST else digest


class StandIn:
    """What every stand-in shares (StudyContract): its clock, its event log, reverts."""

    contract_name: ClassVar[str]
    chain_id: ClassVar[int] = 0
    address: ClassVar[str] = ZERO_ADDRESS
    _function = "constructor"       # the contract function running, for revert messages

    # the state a transaction can change before one of its own later checks fails (the rest
    # changes only after the last check): _transaction restores it on a revert
    _reputations: dict[str, int]
    _suspended: set[str]
    _last_penalty: dict[str, int]
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
        return (dict(self._reputations), set(self._suspended), dict(self._last_penalty), dict(self._epsilon_spent),
                len(self._events))

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self._reputations, self._suspended, self._last_penalty, self._epsilon_spent, logged = saved
        del self._events[logged:]


class ReputationStandIn(StandIn):
    """reputation_policy.vy: reputation moved by fixed deltas, suspension strictly below a
    non-zero threshold, re-admission (ReputationPolicy's interface)."""

    def _init_policy(self, suspension_threshold: int) -> None:
        self._require(suspension_threshold <= INITIAL_REPUTATION, "suspension threshold above the initial reputation")
        self._threshold = suspension_threshold
        self._reputations = {}      # the members met so far (`_enrol`)
        self._suspended = set()
        self._last_penalty = {}     # the round of each member's latest "update rejected"

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
        penalized (if `penalize`) only for a fault of the member's own (`penalized`), at most
        once per member and round."""
        if reason == Reason.ACCEPTED:
            self._change(member, round, "update accepted")
            return
        self._emit("UpdateRejected", round_number=round, member=member, update=update, reason=reason)
        if penalize and penalized(reason):
            self._require(self._last_penalty.get(member) != round, "member already penalized this round")
            self._last_penalty[member] = round
            self._change(member, round, "update rejected")

    @transaction
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
        return [Rejection(e["member"], optional_digest(e["update"]), e["reason"])
                for e in self.events("UpdateRejected", round, from_block)]


class PrivacyStandIn(StandIn):
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

    @transaction
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


class BoardStandIn(StandIn):
    """secagg_board.vy: secure aggregation's messages, logged from whoever the study contract
    lets post (`_check_poster`); SecAggBoard's interface."""

    def _check_poster(self, member: str, round: int) -> None:
        raise NotImplementedError   # who may post is each study contract's own rule

    @transaction
    def advertise_keys(self, member: LocalAccount, round: int, cipher_key: bytes, mask_key: bytes) -> None:
        """`advertise_keys`: `member`'s X25519 public keys (32 raw bytes each) for the open round."""
        for key in (cipher_key, mask_key):
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError(f"a key must be 32 raw bytes, got {key!r}")
        self._check_poster(member.address, round)
        self._require(cipher_key != bytes(32) and mask_key != bytes(32), "empty key")
        self._emit("KeysAdvertised", round_number=round, member=member.address, cipher_key=cipher_key,
                   mask_key=mask_key)

    @transaction
    def post_secagg(self, member: LocalAccount, round: int, step: int, digest: str) -> None:
        """`post_secagg`: the digest of what `member` sends at `step` (CKKS_CONTEXT to CKKS_SUM)."""
        check_digests(digest)
        self._check_poster(member.address, round)
        self._require(CKKS_CONTEXT <= step <= CKKS_SUM, "step must be 3 to 5")
        self._require(digest != NO_DIGEST, "empty digest")
        self._emit("SecAggPosted", round_number=round, member=member.address, step=step, digest=digest)

    @transaction
    def post_secagg_data(self, member: LocalAccount, round: int, step: int, data: bytes) -> None:
        """`post_secagg_data`: what `member` sends at `step` (SHARES, REVEAL), as it is."""
        if not isinstance(data, bytes) or len(data) > MAX_DATA:
            raise ValueError(f"data must be at most {MAX_DATA} bytes")
        self._check_poster(member.address, round)
        self._require(step in (SHARES, REVEAL), "step must be 1 or 2")
        self._require(len(data) > 0, "empty data")
        self._emit("SecAggData", round_number=round, member=member.address, step=step, data=data)

    def key_adverts(self, round: int) -> list[Posted]:
        """Each member's first (cipher key, mask key) for `round`, in order, with its block."""
        return first_each(Posted(e["member"], (e["cipher_key"], e["mask_key"]), e["block"])
                           for e in self.events("KeysAdvertised", round))

    def posts(self, round: int, step: int) -> list[Posted]:
        """Each member's first digest posted at `step` in `round`, in order, with its block."""
        return first_each(Posted(e["member"], e["digest"], e["block"])
                           for e in self.events("SecAggPosted", round) if e["step"] == step)

    def data_posts(self, round: int, step: int) -> list[Posted]:
        """Each member's first data logged at `step` in `round`, in order, with its block."""
        return first_each(Posted(e["member"], e["data"], e["block"])
                          for e in self.events("SecAggData", round) if e["step"] == step)

    def advertised_keys(self, round: int) -> dict[str, tuple[bytes, bytes]]:
        return {p.member: p.value for p in self.key_adverts(round)}

    def secagg_posts(self, round: int, step: int) -> dict[str, str]:
        return {p.member: p.value for p in self.posts(round, step)}


class EvaluationStandIn(StandIn):
    """evaluations.vy: institutions' evaluations of finalized models, from whoever the study
    contract lets submit (`_evaluated_model`); EvaluationBoard's interface."""

    def __init__(self) -> None:
        super().__init__()
        self._evaluation_of: dict[tuple[int, str], str] = {}

    def _evaluated_model(self, member: str, round: int) -> str:
        raise NotImplementedError   # who may submit, for which rounds, is each study contract's own rule

    @transaction
    def submit_evaluation(self, member: LocalAccount, round: int, evaluation: str) -> None:
        """`submit_evaluation`: the digest of `member`'s signed evaluation of round `round`'s model."""
        check_digests(evaluation)
        model = self._evaluated_model(member.address, round)
        self._require(evaluation != NO_DIGEST, "empty digest")
        self._require((round, member.address) not in self._evaluation_of, "already evaluated this round")
        self._evaluation_of[round, member.address] = evaluation
        self._emit("EvaluationSubmitted", round_number=round, member=member.address, model=model, evaluation=evaluation)

    def evaluation_of(self, round: int, member: str) -> str | None:
        return self._evaluation_of.get((round, Web3.to_checksum_address(member)))

    def evaluations(self, round: int) -> dict[str, str]:
        return {e["member"]: e["evaluation"] for e in self.events("EvaluationSubmitted", round)}
