"""rounds.vy in memory: the roster, commitments, the commit window and finalization that the
semi and full stand-ins share."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain.local.base import (
    ZERO_ADDRESS,
    BoardStandIn,
    EvaluationStandIn,
    PrivacyStandIn,
    ReputationStandIn,
    check_digests,
    optional_digest,
    transaction,
)
from fedledger.chain.privacy import NO_SPEND, PrivacySpend
from fedledger.chain.records import (
    NO_DIGEST,
    Rejection,
)
from fedledger.chain.rounds import (
    Commitment,
    Phase,
)
from fedledger.chain.rules import (
    Closing,
    commit_closing,
)
from fedledger.validation.reasons import MAX_REASON, Reason


class RoundsStandIn(ReputationStandIn, PrivacyStandIn, BoardStandIn, EvaluationStandIn):
    """rounds.vy: the roster, commitments, the commit window and finalization that the semi and
    full stand-ins share (RoundStudy's interface). Deploying one starts the study in block 1 and
    opens round 1."""

    def __init__(self, roster: Sequence[str], config_digest: str, initial_model: str, commit_window: int,
                 result_window: int, min_participants: int, suspension_threshold: int, epsilon_budget: int,
                 delta: int) -> None:
        super().__init__()
        check_digests(config_digest, initial_model)
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

    def _evaluated_model(self, member: str, round: int) -> str:
        self._require(1 <= round <= self._round_count, "round not finalized")
        self._check_active_member(member)
        return self._finalized[round][0]

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
        self._require(all(code <= MAX_REASON for code in reasons), "reason code above 18")

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

    @transaction
    def commit_update(self, member: LocalAccount, round: int, parent_model: str, update: str, num_samples: int,
                      metrics_digest: str, spend: PrivacySpend = NO_SPEND) -> None:
        """`commit_update`: a commitment refused for a reason of the sender's own is no revert
        but a CommitRejected record with its reason code."""
        check_digests(parent_model, update, metrics_digest)
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
        elif any(c.update == update for c in self._commitments.get(round, {}).values()):
            reason = Reason.COPIED
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

    def counted_members(self) -> int:
        """Roster members that count in quorums now (not suspended)."""
        return sum(1 for m in self._members if self._eligible(m))

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
        return [Rejection(e["member"], optional_digest(e["update"]), e["reason"])
                for e in self.events("CommitRejected", round, from_block)]
