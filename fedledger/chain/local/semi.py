"""`LocalSemiStudy`: CommitteeStudy.vy (the semi study contract) in memory."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.local.base import (
    MAX_COMMITTEE,
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
    committee_seed,
    draw_committee,
    result_key,
)
from fedledger.chain.rules import (
    semi_majority,
)


class LocalSemiStudy(RoundsStandIn):
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

    @transaction
    def close_commits(self, member: LocalAccount, round: int) -> None:
        """`close_commits`: close the commit phase and draw the committee."""
        if self._close_commits(round):
            self._draw(round, 1, self._entropy(round, 1))
            self._phase = Phase.AGGREGATING

    @transaction
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

    @transaction
    def submit_result(self, member: LocalAccount, round: int, attempt: int, model: str, manifest_digest: str,
                      reasons: Sequence[int]) -> None:
        """`submit_result`: a committee member's result; a majority of the committee finalizes
        the round, and a late result from the finalizing committee is judged against it."""
        check_digests(model, manifest_digest)
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
