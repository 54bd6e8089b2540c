# pragma version 0.4.3
"""
@title Reputation policy shared by every FedLedger study contract
@notice Reputation, suspension and re-admission, written once for StudyLedger (loosely
        coupled), CommitteeStudy (semi) and ConsensusStudy (full, both through rounds.vy).
        Reputation moves by fixed deltas, kept within 0..MAX_REPUTATION; every move is a
        ReputationChanged event, so an auditor can replay it. A move that leaves a member
        strictly below a non-zero `suspension_threshold` suspends it: it may no longer take
        part until the consortium's admin reinstates it, which resets its reputation to
        INITIAL_REPUTATION. A threshold of 0 never suspends anyone.
"""

interface Governance:
    def admin() -> address: view

INITIAL_REPUTATION: constant(uint256) = 100
MAX_REPUTATION: constant(uint256) = 1000

# Why an update was not aggregated: the codes of fedledger/validation/reasons.py.
ACCEPTED: constant(uint8) = 0
NOT_MEMBER: constant(uint8) = 1
SUSPENDED: constant(uint8) = 2
WRONG_ROUND: constant(uint8) = 3
DUPLICATE: constant(uint8) = 4
BAD_SIGNATURE: constant(uint8) = 5
MISSING: constant(uint8) = 6
DIGEST_MISMATCH: constant(uint8) = 7
INVALID_FORMAT: constant(uint8) = 8
WRONG_LAYOUT: constant(uint8) = 9
NOT_FINITE: constant(uint8) = 10
OUT_OF_RANGE: constant(uint8) = 11
NORM_ABOVE_BOUND: constant(uint8) = 12
OUTLIER: constant(uint8) = 13
LOW_SCORE: constant(uint8) = 14
PRIVACY_BUDGET: constant(uint8) = 15
TOO_FEW_FOR_NOISE: constant(uint8) = 16
COPIED: constant(uint8) = 17
NOT_DRAWN: constant(uint8) = 18
MAX_REASON: constant(uint8) = 18

# Reputation deltas of the policy's own reasons (the contracts add "agreed", "disagreed", "absent").
UPDATE_ACCEPTED: constant(int256) = 1
UPDATE_REJECTED: constant(int256) = -20

# A member's standing is one storage word: its reputation in the low 128 bits and two flags,
# so that meeting a member, moving its reputation or checking its suspension touch one slot.
REPUTATION_BITS: constant(uint256) = 2**128 - 1
KNOWN: constant(uint256) = 2**128  # reputation initialized (roster members; institutions a ledger has met)
SUSPENDED_FLAG: constant(uint256) = 2**129


event ReputationChanged:
    member: indexed(address)
    round_number: indexed(uint256)
    before: uint256
    after: uint256
    reason: String[24]

event MemberSuspended:
    member: indexed(address)
    round_number: indexed(uint256)
    reputation: uint256

event MemberReinstated:
    member: indexed(address)
    admin: address

event UpdateRejected:
    round_number: indexed(uint256)
    member: indexed(address)
    update: bytes32  # empty when the coordinator of a loosely coupled study had no digest to name
    reason: uint8


_standing: HashMap[address, uint256]
_last_penalty: HashMap[address, uint256]  # the round of a member's latest "update rejected"
suspension_threshold: public(uint256)  # fixed at deployment; 0: never suspend
suspended_count: public(uint256)  # members suspended now


@external
@view
def reputation(member: address) -> uint256:
    return self._standing[member] & REPUTATION_BITS


@external
@view
def suspended(member: address) -> bool:
    return self._standing[member] & SUSPENDED_FLAG != 0


@internal
@view
def _reputation(member: address) -> uint256:
    return self._standing[member] & REPUTATION_BITS


@internal
@view
def _suspended(member: address) -> bool:
    return self._standing[member] & SUSPENDED_FLAG != 0


@internal
@view
def _known(member: address) -> bool:
    return self._standing[member] & KNOWN != 0


@internal
def _init(suspension_threshold: uint256):
    assert suspension_threshold <= INITIAL_REPUTATION, "suspension threshold above the initial reputation"
    self.suspension_threshold = suspension_threshold


@internal
def _enrol(member: address):
    """
    @notice Give `member` INITIAL_REPUTATION the first time the contract meets it.
    """
    if self._standing[member] & KNOWN == 0:
        self._standing[member] = KNOWN | INITIAL_REPUTATION


@internal
def _change(member: address, round_number: uint256, delta: int256, reason: String[24]):
    """
    @notice Move reputation by `delta`, kept within 0..MAX_REPUTATION; suspend the member if it
            falls strictly below a non-zero threshold.
    """
    standing: uint256 = self._standing[member]
    before: uint256 = standing & REPUTATION_BITS
    after: uint256 = convert(max(0, min(convert(MAX_REPUTATION, int256), convert(before, int256) + delta)), uint256)
    standing = standing & ~REPUTATION_BITS | after
    log ReputationChanged(member=member, round_number=round_number, before=before, after=after, reason=reason)
    threshold: uint256 = self.suspension_threshold
    if threshold != 0 and after < threshold and standing & SUSPENDED_FLAG == 0:
        standing |= SUSPENDED_FLAG
        self.suspended_count += 1
        log MemberSuspended(member=member, round_number=round_number, reputation=after)
    self._standing[member] = standing


@internal
@pure
def _penalized(reason: uint8) -> bool:
    """
    @notice Whether a rejection with code `reason` is the member's own fault, shown by bytes it
            committed to (DIGEST_MISMATCH..LOW_SCORE), so that it may cost reputation. The codes
            below are not: anyone can claim another's address, replay its old update or forge a
            signature in its name, and that a blob could not be fetched (MISSING) rests on the
            word of whoever tried; nor are PRIVACY_BUDGET or TOO_FEW_FOR_NOISE: keeping to its
            privacy budget is the member's right, and too few others passing is not its fault.
    """
    return reason >= DIGEST_MISMATCH and reason <= LOW_SCORE


@internal
def _judge_update(member: address, round_number: uint256, update: bytes32, reason: uint8, penalize: bool):
    """
    @notice The outcome of one update: aggregated (reason 0) earns "update accepted"; any other
            code is an UpdateRejected record and, if `penalize` and the code is `_penalized`,
            costs "update rejected", at most once per member and round.
    """
    if reason == ACCEPTED:
        self._change(member, round_number, UPDATE_ACCEPTED, "update accepted")
        return
    log UpdateRejected(round_number=round_number, member=member, update=update, reason=reason)
    if penalize and self._penalized(reason):
        assert self._last_penalty[member] != round_number, "member already penalized this round"
        self._last_penalty[member] = round_number
        self._change(member, round_number, UPDATE_REJECTED, "update rejected")


@internal
def _reinstate(member: address, governance: address, round_number: uint256):
    """
    @notice Lift `member`'s suspension and reset its reputation to INITIAL_REPUTATION; only the
            admin of `governance` (the consortium) may.
    """
    assert msg.sender == staticcall Governance(governance).admin(), "only the consortium admin"
    standing: uint256 = self._standing[member]
    assert standing & SUSPENDED_FLAG != 0, "member is not suspended"
    self.suspended_count -= 1
    before: uint256 = standing & REPUTATION_BITS
    self._standing[member] = standing & ~(REPUTATION_BITS | SUSPENDED_FLAG) | INITIAL_REPUTATION
    log ReputationChanged(member=member, round_number=round_number, before=before, after=INITIAL_REPUTATION,
                          reason="reinstated")
    log MemberReinstated(member=member, admin=msg.sender)
