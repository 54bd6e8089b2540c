"""Typed access to the chain-coordinated study contracts: CommitteeStudy.vy and ConsensusStudy.vy.

Both share the round lifecycle of contracts/rounds.vy (roster, reputation, update commitments,
finalization), wrapped once in `RoundStudy`; each subclass adds its own phase.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend, PendingTx
from fedledger.chain.consortium import Consortium
from fedledger.chain.records import bytes32_to_digest, chain_order, digest_to_bytes32
from fedledger.errors import ChainError

NO_DIGEST = "00" * 32

# Mirrors of the contracts' reputation rules (rounds.vy, CommitteeStudy.vy, ConsensusStudy.vy),
# which the auditor replays: every ReputationChanged event moves reputation by the delta of its
# reason, kept within 0..MAX_REPUTATION.
INITIAL_REPUTATION = 100
MAX_REPUTATION = 1000
REPUTATION_DELTAS = {"agreed": 1, "disagreed": -50, "absent": -20, "update accepted": 1, "update excluded": -20}


class Phase:
    """The open round's phase, as the contracts number it."""
    COMMITTING = 1
    AGGREGATING = 2   # CommitteeStudy
    SCORING = 2       # ConsensusStudy
    VOTING = 3        # ConsensusStudy


@dataclass(frozen=True)
class Commitment:
    member: str
    update: str
    num_samples: int


@dataclass(frozen=True)
class StudyTerms:
    """What a chain-coordinated study is started with (fixed for its lifetime)."""
    config_digest: str
    initial_model: str
    roster: tuple[str, ...]
    commit_window: int      # blocks the commit phase stays open for latecomers
    result_window: int      # blocks for the committee, the scores or the votes
    min_participants: int


class RoundStudy:
    """Base wrapper: what both chain-coordinated contracts share."""

    contract_name = ""

    def __init__(self, backend: ChainBackend, address: str) -> None:
        self.backend = backend
        self.contract = backend.contract(self.contract_name, address)
        self.address: str = self.contract.address
        self._pending: list[PendingTx] | None = None   # collecting, inside batch()

    @classmethod
    def _deploy_with(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium,
                     terms: StudyTerms, *extra: Any) -> Any:
        address = backend.deploy(sponsor, cls.contract_name, consortium.address,
                                 digest_to_bytes32(terms.config_digest), digest_to_bytes32(terms.initial_model),
                                 [Web3.to_checksum_address(m) for m in terms.roster], terms.commit_window,
                                 terms.result_window, terms.min_participants, *extra)
        return cls(backend, address)

    def _send(self, account: LocalAccount, fn: Any) -> TxReceipt | PendingTx:
        if self._pending is not None:
            self._pending.append(self.backend.submit(account, fn))
            return self._pending[-1]
        return self.backend.transact(account, fn)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Members acting in the same phase: inside, each transaction method sends without waiting
        and returns a PendingTx; leaving waits for all (on the embedded chain they share one block)
        and raises the first failure once every one was waited for."""
        pending: list[PendingTx] = []
        self._pending = pending
        try:
            yield
        finally:
            self._pending = None
        failures = []
        for tx in pending:
            try:
                tx.wait()
            except ChainError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def _view(self, name: str, *args: Any) -> Any:
        return self.backend.call(getattr(self.contract.functions, name)(*args))

    # --- transactions ----------------------------------------------------------------------

    def commit_update(self, member: LocalAccount, round: int, parent_model: str, update: str,
                      num_samples: int, metrics_digest: str) -> TxReceipt | PendingTx:
        """`member` commits its own update for the open round."""
        return self._send(member, self.contract.functions.commit_update(
            round, digest_to_bytes32(parent_model), digest_to_bytes32(update), num_samples,
            digest_to_bytes32(metrics_digest)))

    def close_commits(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        """Close the commit phase (everyone committed, or the deadline passed)."""
        return self._send(member, self.contract.functions.close_commits(round))

    # --- reads -----------------------------------------------------------------------------

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

    def reputation(self, member: str) -> int:
        return self._view("reputation", Web3.to_checksum_address(member))

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


class CommitteeStudy(RoundStudy):
    """Semi-coupled study: a committee drawn by reputation aggregates each round."""

    contract_name = "CommitteeStudy"

    @classmethod
    def deploy(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium, terms: StudyTerms,
               committee_size: int) -> CommitteeStudy:
        """Start the study (the sponsor must hold the coordinator role); round 1 opens at once."""
        return cls._deploy_with(backend, sponsor, consortium, terms, committee_size)

    def redraw(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        return self._send(member, self.contract.functions.redraw(round))

    def submit_result(self, member: LocalAccount, round: int, attempt: int, model: str,
                      manifest_digest: str) -> TxReceipt | PendingTx:
        return self._send(member, self.contract.functions.submit_result(
            round, attempt, digest_to_bytes32(model), digest_to_bytes32(manifest_digest)))

    def committee_size(self) -> int:
        return self._view("committee_size")

    def attempt(self) -> int:
        """How many committees the open round has drawn (0 while committing)."""
        return self._view("attempt")

    def committee(self, round: int, attempt: int) -> list[str]:
        return list(self._view("committee_of", round, attempt))

    def final_attempt(self, round: int) -> int:
        return self._view("final_attempt", round)


class ConsensusStudy(RoundStudy):
    """Fully coupled study: every member scores, aggregates and votes; two thirds finalize."""

    contract_name = "ConsensusStudy"

    @classmethod
    def deploy(cls, backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium, terms: StudyTerms,
               weight_by_reputation: bool = False) -> ConsensusStudy:
        """Start the study (the sponsor must hold the coordinator role); round 1 opens at once."""
        return cls._deploy_with(backend, sponsor, consortium, terms, weight_by_reputation)

    def submit_scores(self, validator: LocalAccount, round: int, scores: Sequence[int]) -> TxReceipt | PendingTx:
        """`validator`'s scores (parts per million) of the round's updates, in commit order."""
        return self._send(validator, self.contract.functions.submit_scores(round, list(scores)))

    def close_scores(self, member: LocalAccount, round: int) -> TxReceipt | PendingTx:
        return self._send(member, self.contract.functions.close_scores(round))

    def submit_vote(self, validator: LocalAccount, round: int, model: str, manifest_digest: str,
                    rewards: Sequence[int]) -> TxReceipt | PendingTx:
        return self._send(validator, self.contract.functions.submit_vote(
            round, digest_to_bytes32(model), digest_to_bytes32(manifest_digest), list(rewards)))

    def scores(self, round: int, from_block: int = 0) -> dict[str, list[int]]:
        """validator -> its scores of the round's updates (commit order), as recorded on chain;
        `from_block`: where the round's scoring opened, if known."""
        return {e["validator"]: list(e["scores"]) for e in self.events("ScoresSubmitted", round, from_block)}

    def score_count(self, round: int) -> int:
        """How many validators have submitted scores in `round`."""
        return self._view("score_count", round)

    def weight_by_reputation(self) -> bool:
        return self._view("weight_by_reputation")

    def reward_balance(self, member: str) -> int:
        return self._view("reward_balance", Web3.to_checksum_address(member))


def committee_seed(entropy: bytes, round: int, attempt: int) -> bytes:
    """The seed CommitteeStudy derives for a draw: keccak(entropy, round, attempt).

    `entropy` is the hash of the block before the closing transaction's block for a round's
    first draw, and keccak(previous seed, that block hash) for a redraw.
    """
    return Web3.keccak(entropy + round.to_bytes(32, "big") + attempt.to_bytes(32, "big"))


def draw_committee(seed: bytes, members: Sequence[str], weights: Sequence[int], size: int) -> list[str]:
    """CommitteeStudy's draw, recomputed: `size` picks without replacement, each with
    probability proportional to weight (reputation; 0 for members without the institution role).

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
