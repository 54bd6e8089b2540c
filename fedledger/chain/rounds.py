"""Typed access to the chain-coordinated study contracts: CommitteeStudy.vy and ConsensusStudy.vy.

Both share the round lifecycle of contracts/rounds.vy (roster, update commitments, finalization)
and the reputation policy of contracts/reputation_policy.vy, wrapped once in `RoundStudy`; each
subclass adds its own phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import abi
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend, PendingTx
from fedledger.chain.consortium import Consortium
from fedledger.chain.evaluations import EvaluationBoard
from fedledger.chain.contract import StudyContract
from fedledger.chain.privacy import NO_SPEND, PrivacyBudget, PrivacySpend
from fedledger.chain.records import (
    NO_DIGEST,
    Rejection,
    bytes32_to_digest,
    bytes32_to_optional_digest,
    digest_to_bytes32,
)
from fedledger.chain.reputation import ReputationPolicy
from fedledger.chain.secagg import SecAggBoard


class Phase:
    """The open round's phase, as the contracts number it."""
    COMMITTING = 1
    AGGREGATING = 2   # SemiStudy
    SCORING = 2       # FullStudy
    VOTING = 3        # FullStudy


@dataclass(frozen=True)
class Commitment:
    member: str
    update: str
    num_samples: int


@dataclass(frozen=True)
class Verdict:
    """A committee member's result (semi) or a validator's vote (full) for a round."""
    member: str
    model: str
    manifest_digest: str
    reasons: list[int]
    attempt: int = 0                     # semi: the committee draw it answered; full: the vote epoch
    rewards: list[int] | None = None     # full: each committer's reward


@dataclass(frozen=True)
class StudyTerms:
    """What a chain-coordinated study is started with (fixed for its lifetime)."""
    config_digest: str
    initial_model: str
    roster: tuple[str, ...]
    commit_window: int      # blocks the commit phase stays open for latecomers
    result_window: int      # blocks for the committee, the scores or the votes
    min_participants: int
    suspension_threshold: int = 0   # reputation strictly below which a member is suspended; 0: never
    epsilon_budget: int = 0         # each member's privacy budget (epsilon, millionths); 0: no DP
    delta: int = 0                  # the budget's delta (1e-18 units)


class RoundStudy(StudyContract, ReputationPolicy, PrivacyBudget, SecAggBoard, EvaluationBoard):
    """Base wrapper: what both chain-coordinated contracts (semi and full) share."""

    @classmethod
    def _deploy_with(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium,
                     terms: StudyTerms, *extra: Any) -> Any:
        address = backend.deploy(sponsor, cls.contract_name, consortium.address,
                                 digest_to_bytes32(terms.config_digest), digest_to_bytes32(terms.initial_model),
                                 [Web3.to_checksum_address(m) for m in terms.roster], terms.commit_window,
                                 terms.result_window, terms.min_participants, terms.suspension_threshold,
                                 terms.epsilon_budget, terms.delta, *extra)
        return cls(backend, address)

    # --- transactions ----------------------------------------------------------------------

    def commit_update(self, member: LocalAccount, round: int, parent_model: str, update: str,
                      num_samples: int, metrics_digest: str, spend: PrivacySpend = NO_SPEND
                      ) -> TxReceipt | PendingTx:
        """`member` commits its own update for the open round, with its privacy spend in a study
        with a privacy budget.

        A commitment refused for a reason of the member's own (not on the roster, suspended,
        wrong round or parent, a second one, no samples, empty digest, a malformed spend or
        one past the budget) does not revert: the transaction succeeds with a CommitRejected
        record instead (see `commit_rejections`).
        """
        return self._send(member, self.contract.functions.commit_update(
            round, digest_to_bytes32(parent_model), digest_to_bytes32(update), num_samples,
            digest_to_bytes32(metrics_digest), spend.as_args()))

    def close_commits(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        """Close the commit phase (everyone committed, or the deadline passed)."""
        return self._send(member, self.contract.functions.close_commits(round))

    # --- reads -----------------------------------------------------------------------------

    def started(self) -> bool:
        """Always: deploying the contract starts the study."""
        return True

    def round_count(self) -> int:
        return self._view("round_count")

    def open_round(self) -> int:
        return self.round_count() + 1

    def phase(self) -> int:
        return self._view("phase")

    def phase_deadline(self) -> int:
        return self._view("phase_deadline")

    def latest_model(self) -> str:
        return bytes32_to_digest(self._view("latest_model"))

    def config_digest(self) -> str:
        return bytes32_to_digest(self._view("config_digest"))

    def initial_model(self) -> str:
        return bytes32_to_digest(self._view("initial_model"))

    def roster(self) -> list[str]:
        return list(self._view("roster"))

    def committers(self, round: int) -> list[str]:
        """Who committed in `round`, in commit order."""
        return list(self._view("committers", round))

    def commitments(self, round: int) -> list[Commitment]:
        """The round's commitments, in commit order."""
        members = self.committers(round)
        stored = self._view("commitments_of", round)
        return [Commitment(m, bytes32_to_digest(update), samples) for m, (update, samples) in zip(members, stored)]

    def finalized(self, round: int) -> tuple[str, str] | None:
        """(model, manifest digest) of a finalized round, else None."""
        model = bytes32_to_digest(self._view("finalized_model", round))
        if model == NO_DIGEST:
            return None
        return model, bytes32_to_digest(self._view("finalized_manifest", round))

    def round_model(self, round: int) -> str | None:
        """The model digest of finalized round `round`; None while there is none."""
        found = self.finalized(round)
        return found[0] if found else None

    def round_manifest(self, round: int) -> str:
        """The manifest digest of finalized round `round`."""
        return bytes32_to_digest(self._view("finalized_manifest", round))

    def suspended_count(self) -> int:
        """How many roster members are suspended now."""
        return self._view("suspended_count")

    def counted_members(self) -> int:
        """Roster members that count in quorums now: active institutions, not suspended."""
        return self._view("counted_members")

    def first_commit_block(self, round: int) -> int:
        """The block of the round's first commitment (latecomers are waited for from there)."""
        return self.events("UpdateCommitted", round)[0]["block"]

    def final_key(self, round: int) -> bytes:
        """The key (`result_key`) of the result that finalized `round`; zeros before then."""
        return bytes(self._view("final_key", round))

    def finalized_reasons(self, round: int) -> list[int]:
        """The reason code of each committed update of a finalized round, in commit order
        (0: aggregated); [] while the round is not finalized."""
        return list(self._view("finalized_reasons", round))

    def commit_rejections(self, round: int, from_block: int = 0) -> list[Rejection]:
        """The commitments refused in `round` (CommitRejected events), in chain order."""
        return [Rejection(e["member"], bytes32_to_optional_digest(e["update"]), e["reason"])
                for e in self.events("CommitRejected", round, from_block)]


class SemiStudy(RoundStudy):
    """Semi study: a committee drawn by reputation aggregates each round."""

    contract_name = "CommitteeStudy"

    @classmethod
    def deploy(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium, terms: StudyTerms,
               committee_size: int) -> SemiStudy:
        """Start the study (the sponsor must hold the coordinator role); round 1 opens at once."""
        return cls._deploy_with(backend, sponsor, consortium, terms, committee_size)

    def redraw(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        return self._send(member, self.contract.functions.redraw(round))

    def submit_result(self, member: LocalAccount, round: int, attempt: int, model: str, manifest_digest: str,
                      reasons: Sequence[int]) -> TxReceipt | PendingTx:
        """`member`'s result as a committee member: the model, the manifest and one reason code
        per committed update, in commit order (0: aggregated)."""
        return self._send(member, self.contract.functions.submit_result(
            round, attempt, digest_to_bytes32(model), digest_to_bytes32(manifest_digest), [int(r) for r in reasons]))

    def committee_size(self) -> int:
        return self._view("committee_size")

    def attempt(self) -> int:
        """How many committees the open round has drawn (0 while committing)."""
        return self._view("attempt")

    def committee(self, round: int, attempt: int) -> list[str]:
        return list(self._view("committee_of", round, attempt))

    def final_attempt(self, round: int) -> int:
        return self._view("final_attempt", round)

    def results(self, round: int) -> list[Verdict]:
        """The committee members' results of `round` (ResultSubmitted), in chain order."""
        return [Verdict(e["member"], bytes32_to_digest(e["model"]), bytes32_to_digest(e["manifest_digest"]),
                        list(e["reasons"]), e["attempt"]) for e in self.events("ResultSubmitted", round)]


class FullStudy(RoundStudy):
    """Full study: every member scores, aggregates and votes; two thirds finalize."""

    contract_name = "ConsensusStudy"

    @classmethod
    def deploy(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium, terms: StudyTerms,
               weight_by_reputation: bool = False) -> FullStudy:
        """Start the study (the sponsor must hold the coordinator role); round 1 opens at once."""
        return cls._deploy_with(backend, sponsor, consortium, terms, weight_by_reputation)

    def submit_scores(self, validator: LocalAccount, round: int, scores: Sequence[int]) -> TxReceipt | PendingTx:
        """`validator`'s scores (parts per million) of the round's updates, in commit order."""
        return self._send(validator, self.contract.functions.submit_scores(round, list(scores)))

    def close_scores(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        return self._send(member, self.contract.functions.close_scores(round))

    def close_votes(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        """Reopen `round`'s undecided vote past its deadline in a new epoch (its electorate: the
        last epoch's voters)."""
        return self._send(member, self.contract.functions.close_votes(round))

    def submit_vote(self, validator: LocalAccount, round: int, model: str, manifest_digest: str,
                    rewards: Sequence[int], reasons: Sequence[int]) -> TxReceipt | PendingTx:
        """`validator`'s result: the model, the manifest, each committer's reward and reason code
        (0: aggregated; a rejected update cannot be rewarded), in commit order."""
        return self._send(validator, self.contract.functions.submit_vote(
            round, digest_to_bytes32(model), digest_to_bytes32(manifest_digest), list(rewards),
            [int(r) for r in reasons]))

    def scores(self, round: int, from_block: int = 0) -> dict[str, list[int]]:
        """validator -> its scores of the round's updates (commit order), as recorded on chain;
        `from_block`: where the round's scoring opened, if known."""
        return {e["validator"]: list(e["scores"]) for e in self.events("ScoresSubmitted", round, from_block)}

    def votes(self, round: int) -> list[Verdict]:
        """The validators' votes of `round` (VoteSubmitted), in chain order."""
        return [Verdict(e["validator"], bytes32_to_digest(e["model"]), bytes32_to_digest(e["manifest_digest"]),
                        list(e["reasons"]), e["epoch"], list(e["rewards"])) for e in self.events("VoteSubmitted", round)]

    def score_count(self, round: int) -> int:
        """How many validators have submitted scores in `round`."""
        return self._view("score_count", round)

    def vote_epoch(self, round: int) -> int:
        """The epoch of `round`'s vote: the open one, or the one that decided it."""
        return self._view("vote_epoch", round)

    def may_vote(self, round: int, member: str) -> bool:
        """Whether `member` is in the electorate of `round`'s current (or deciding) vote epoch."""
        return self._view("may_vote", round, Web3.to_checksum_address(member))

    def weight_by_reputation(self) -> bool:
        return self._view("weight_by_reputation")

    def reward_balance(self, member: str) -> int:
        return self._view("reward_balance", Web3.to_checksum_address(member))


def result_key(model: str, manifest_digest: str, reasons: Sequence[int],
               rewards: Sequence[int] | None = None) -> bytes:
    """The key a result is counted and judged by (`final_key`): keccak(model, manifest,
    keccak(abi(reasons))) for a SemiStudy result; for a FullStudy vote (with
    `rewards`), keccak(model, manifest, keccak(abi(rewards)), keccak(abi(reasons)))."""
    parts = digest_to_bytes32(model) + digest_to_bytes32(manifest_digest)
    if rewards is not None:
        parts += Web3.keccak(abi.encode(["uint256[]"], [list(rewards)]))
    return Web3.keccak(parts + Web3.keccak(abi.encode(["uint8[]"], [list(reasons)])))


def committee_seed(entropy: bytes, round: int, attempt: int) -> bytes:
    """The seed SemiStudy derives for a draw: keccak(entropy, round, attempt).

    `entropy` is the hash of the block before the closing transaction's block for a round's
    first draw, and keccak(previous seed, that block hash) for a redraw.
    """
    return Web3.keccak(entropy + round.to_bytes(32, "big") + attempt.to_bytes(32, "big"))


def draw_committee(seed: bytes, members: Sequence[str], weights: Sequence[int], size: int) -> list[str]:
    """CommitteeStudy's draw, recomputed: `size` picks without replacement, each with
    probability proportional to weight (reputation; 0 for members without the institution role
    and for suspended members).

    Pick i takes keccak(seed, i) modulo the remaining total weight and walks the roster order.
    """
    weights = list(weights)
    total = sum(weights)
    committee: list[str] = []
    for i in range(size):
        if total == 0:
            break
        target = int.from_bytes(Web3.keccak(seed + i.to_bytes(32, "big")), "big") % total
        for j, weight in enumerate(weights):
            if target < weight:
                committee.append(members[j])
                total -= weight
                weights[j] = 0
                break
            target -= weight
    return committee
