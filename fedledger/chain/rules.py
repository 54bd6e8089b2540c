"""Rules of the chain-coordinated contracts (rounds.vy, CommitteeStudy.vy, ConsensusStudy.vy)
that more than the contracts need: the ledger-off stand-ins of chain/local.py apply them, and an
auditor checks a chain's history against them. Each is the contract's own arithmetic, pure.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Closing(enum.Enum):
    """What a call that closes a phase (close_commits, close_scores) does now."""
    CLOSE = "close"     # the phase ends: the next one starts
    EXTEND = "extend"   # past the deadline with too few: the window is extended from now
    WAIT = "wait"       # the window is still open: the call reverts


def commit_closing(committed: int, min_participants: int, past_deadline: bool, everyone_committed: bool
                   ) -> Closing:
    """rounds.vy `_close_commits`: with at least `min_participants` commitments the phase closes
    once the deadline passed or every eligible roster member committed; past the deadline with
    fewer, the window is extended."""
    if committed >= min_participants and (past_deadline or everyone_committed):
        return Closing.CLOSE
    return Closing.EXTEND if past_deadline else Closing.WAIT


def score_closing(scored: int, counted: int, past_deadline: bool, extended: bool) -> Closing:
    """ConsensusStudy.vy `close_scores`: the scores close once all `counted` members (those that
    may take part) scored, or past the deadline with two thirds of them; past the deadline with
    fewer, the window is extended once (`extended`: it was), then they close with whoever scored,
    if anyone did."""
    if scored >= counted:
        return Closing.CLOSE
    if not past_deadline:
        return Closing.WAIT
    if 3 * scored < 2 * counted and (scored == 0 or not extended):
        return Closing.EXTEND
    return Closing.CLOSE


def semi_majority(agreeing: int, committee_size: int) -> bool:
    """CommitteeStudy.vy `submit_result`: a result finalizes the round once more than half of
    the drawn committee (`committee_size` members as drawn) submitted it."""
    return 2 * agreeing > committee_size


def vote_weight(reputation: int, by_reputation: bool) -> int:
    """ConsensusStudy.vy `submit_vote`: what one vote weighs: 1, or the voter's reputation."""
    return reputation if by_reputation else 1


def quorum_total(standings: Iterable[tuple[int, bool]], by_reputation: bool) -> int:
    """ConsensusStudy.vy `submit_vote`: the weight two thirds of which finalize a round, over the
    roster's (reputation, suspended) standings: the members not suspended, counted or weighed
    by reputation."""
    return sum(vote_weight(reputation, by_reputation) for reputation, suspended in standings if not suspended)


def full_quorum(weight: int, total: int) -> bool:
    """ConsensusStudy.vy `submit_vote`: votes for one result weighing `weight` finalize the round
    once they reach two thirds of `total` (quorum_total)."""
    return 3 * weight >= 2 * total
