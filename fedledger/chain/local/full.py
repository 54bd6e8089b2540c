"""`LocalFullStudy`: ConsensusStudy.vy (the full study contract) in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.local.base import (
    MAX_SCORE,
    check_digests,
    transaction,
)
from fedledger.chain.local.rounds import RoundsStandIn
from fedledger.chain.records import (
    NO_DIGEST,
)
from fedledger.chain.rounds import (
    Phase,
    Verdict,
    result_key,
)
from fedledger.chain.rules import (
    Closing,
    full_quorum,
    quorum_total,
    score_closing,
    vote_weight,
)
from fedledger.validation.reasons import Reason


class LocalFullStudy(RoundsStandIn):
    """ConsensusStudy.vy (FullStudy's interface): every member scores and votes; two thirds of
    the members not suspended, by count or by reputation, finalize."""

    contract_name = "ConsensusStudy"

    def __init__(self, roster: Sequence[str], config_digest: str, initial_model: str, commit_window: int,
                 result_window: int, min_participants: int, suspension_threshold: int = 0, epsilon_budget: int = 0,
                 delta: int = 0, weight_by_reputation: bool = False) -> None:
        self._weight_by_reputation = weight_by_reputation
        self._scored: dict[int, set[str]] = {}
        self._score_extended: set[int] = set()
        self._epoch: dict[int, int] = {}                    # round -> its vote's current epoch
        self._electorate_of: dict[tuple[int, int], int] = {}  # (round, epoch) -> 0: everyone, k: epoch k - 1's voters
        self._vote_of: dict[tuple[int, int], dict[str, bytes]] = {}    # (round, epoch) -> member -> key
        self._votes_for: dict[tuple[int, int], Counter[bytes]] = {}
        self._electorate_weight: dict[tuple[int, int], int] = {}   # fixed when the epoch opens
        self._rewards: Counter[str] = Counter()
        super().__init__(roster, config_digest, initial_model, commit_window, result_window, min_participants,
                         suspension_threshold, epsilon_budget, delta)

    @transaction
    def close_commits(self, member: LocalAccount, round: int) -> None:
        """`close_commits`: close the commit phase; scoring starts."""
        if self._close_commits(round):
            self._phase = Phase.SCORING
            self._phase_deadline = self.clock.next_block() + self._result_window

    @transaction
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

    @transaction
    def close_scores(self, member: LocalAccount, round: int) -> None:
        """`close_scores`: freeze the scores (everyone scored, or two thirds past the deadline);
        voting starts. Past the deadline with fewer, the window is extended once, then they close."""
        self._check_current(round, Phase.SCORING, "scoring")
        scored = len(self._scored.get(round, set()))
        closing = score_closing(scored, self.counted_members(), self._past_deadline(), round in self._score_extended)
        self._require(closing is not Closing.WAIT, "score window still open")
        self._phase_deadline = self.clock.next_block() + self._result_window
        if closing is Closing.EXTEND:
            self._score_extended.add(round)
            self._emit("ScoreWindowExtended", round_number=round, validators=scored, deadline=self._phase_deadline)
            return
        self._phase = Phase.VOTING
        self._electorate_weight[round, 0] = quorum_total(self._electorate_standings(round, 0),
                                                         self._weight_by_reputation)
        self._emit("ScoresClosed", round_number=round, validators=scored, deadline=self._phase_deadline)

    @transaction
    def close_votes(self, member: LocalAccount, round: int) -> None:
        """`close_votes`: reopen an undecided vote past its deadline in a new epoch, whose
        electorate is the last epoch's voters (everyone, if no one voted)."""
        self._check_current(round, Phase.VOTING, "voting")
        self._require(self._past_deadline(), "vote window still open")
        epoch = self.vote_epoch(round)
        electorate = epoch + 1 if self._vote_of.get((round, epoch)) else self._electorate_of.get((round, epoch), 0)
        self._epoch[round] = epoch + 1
        self._electorate_of[round, epoch + 1] = electorate
        standings = self._electorate_standings(round, epoch + 1)
        self._electorate_weight[round, epoch + 1] = quorum_total(standings, self._weight_by_reputation)
        self._phase_deadline = self.clock.next_block() + self._result_window
        self._emit("VoteReopened", round_number=round, epoch=epoch + 1, electorate=quorum_total(standings, False),
                   deadline=self._phase_deadline)

    def _in_electorate(self, round: int, epoch: int, member: str) -> bool:
        source = self._electorate_of.get((round, epoch), 0)
        return source == 0 or member in self._vote_of.get((round, source - 1), {})

    def _electorate_standings(self, round: int, epoch: int) -> list[tuple[int, bool]]:
        """(reputation, suspended) of each roster member in the electorate of `epoch`."""
        return [(self._reputations[m], m in self._suspended) for m in self._members
                if self._in_electorate(round, epoch, m)]

    @transaction
    def submit_vote(self, validator: LocalAccount, round: int, model: str, manifest_digest: str,
                    rewards: Sequence[int], reasons: Sequence[int]) -> None:
        """`submit_vote`: the validator's result; two thirds finalize it, crediting its rewards,
        and a vote after the round finalized is judged against the outcome."""
        check_digests(model, manifest_digest)
        sender, rewards, reasons = validator.address, list(rewards), [int(r) for r in reasons]
        self._require(model != NO_DIGEST and manifest_digest != NO_DIGEST, "empty digest")
        self._require(round >= 1, "no round 0")
        self._check_active_member(sender)
        epoch = self.vote_epoch(round)
        self._require(sender not in self._vote_of.get((round, epoch), {}), "already voted this round")
        late = round <= self._round_count
        if not late:
            self._check_current(round, Phase.VOTING, "voting")
        self._require(self._in_electorate(round, epoch, sender), "not in this vote's electorate")
        committers = self.committers(round)
        self._require(len(rewards) == len(committers), "one reward per committed update")
        self._check_reasons(round, reasons)
        self._require(all(reward == 0 or code == Reason.ACCEPTED for reward, code in zip(rewards, reasons)),
                      "rejected update cannot be rewarded")
        key = result_key(model, manifest_digest, reasons, rewards)
        votes = self._vote_of.setdefault((round, epoch), {})
        votes[sender] = key
        self._emit("VoteSubmitted", round_number=round, validator=sender, epoch=epoch, model=model,
                   manifest_digest=manifest_digest, rewards=rewards, reasons=reasons)
        if late:
            self._judge(sender, round, key == self._final_key[round])
            return
        tally = self._votes_for.setdefault((round, epoch), Counter())
        tally[key] += vote_weight(self._reputations[sender], self._weight_by_reputation)
        if not full_quorum(tally[key], self._electorate_weight[round, epoch]):
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
        return [Verdict(e["validator"], e["model"], e["manifest_digest"], list(e["reasons"]), e["epoch"],
                        list(e["rewards"])) for e in self.events("VoteSubmitted", round)]

    def score_count(self, round: int) -> int:
        return len(self._scored.get(round, set()))

    def vote_epoch(self, round: int) -> int:
        return self._epoch.get(round, 0)

    def may_vote(self, round: int, member: str) -> bool:
        return self._in_electorate(round, self.vote_epoch(round), Web3.to_checksum_address(member))

    def weight_by_reputation(self) -> bool:
        return self._weight_by_reputation

    def reward_balance(self, member: str) -> int:
        return self._rewards[Web3.to_checksum_address(member)]
