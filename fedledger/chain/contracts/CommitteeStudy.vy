# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger study, semi-coupled: the contract runs the round, a committee aggregates
@notice Members commit their own updates. When the commit phase closes, a committee of
        `committee_size` members is drawn by reputation from the previous block's hash; each
        committee member aggregates off chain and submits a result: the model and manifest
        digests and a reason code per committed update (0: aggregated). A majority of the
        committee finalizes the round; each committer's update is then judged by its code.
        A committee member whose result differs from the finalized one loses reputation; if
        the committee stays short of a majority past the deadline, anyone may redraw it and
        the silent members lose reputation. Suspended members are never drawn.
"""

import evaluations
import privacy_budget as privacy
import reputation_policy as policy
import rounds

initializes: evaluations
initializes: policy
initializes: privacy
initializes: rounds[evaluations := evaluations, policy := policy, privacy := privacy]
exports: (rounds.__interface__, policy.__interface__, privacy.__interface__, evaluations.evaluation_of)

MAX_COMMITTEE: constant(uint256) = 16
AGGREGATING: constant(uint256) = 2

ABSENT: constant(int256) = -20


event CommitteeDrawn:
    round_number: indexed(uint256)
    attempt: uint256
    seed: bytes32
    committee: DynArray[address, MAX_COMMITTEE]
    deadline: uint256

event ResultSubmitted:
    round_number: indexed(uint256)
    attempt: uint256
    member: indexed(address)
    model: bytes32
    manifest_digest: bytes32
    reasons: DynArray[uint8, rounds.MAX_MEMBERS]


committee_size: public(uint256)
attempt: public(uint256)  # committee draws in the open round so far (1 after the first)
_committees: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_COMMITTEE]]]
_seeds: HashMap[uint256, HashMap[uint256, bytes32]]
_vote_of: HashMap[uint256, HashMap[uint256, HashMap[address, bytes32]]]  # round, attempt, member -> result key
_votes_for: HashMap[uint256, HashMap[uint256, HashMap[bytes32, uint256]]]
final_attempt: public(HashMap[uint256, uint256])
final_key: public(HashMap[uint256, bytes32])


@deploy
def __init__(consortium: address, config_digest: bytes32, initial_model: bytes32,
             roster: DynArray[address, rounds.MAX_MEMBERS], commit_window: uint256, result_window: uint256,
             min_participants: uint256, suspension_threshold: uint256, epsilon_budget: uint256,
             delta: uint256, committee_size: uint256):
    """
    @notice Deploying starts the study (the deployer must hold the coordinator role) and opens round 1.
    """
    assert committee_size >= 1 and committee_size <= MAX_COMMITTEE, "committee_size must be 1..16"
    assert committee_size <= len(roster), "committee larger than the roster"
    rounds._start(consortium, config_digest, initial_model, roster, commit_window, result_window, min_participants,
                  suspension_threshold, epsilon_budget, delta)
    self.committee_size = committee_size


@external
def close_commits(round_number: uint256):
    """
    @notice Close the commit phase (all committed, or past the deadline) and draw the committee.
    """
    if rounds._close_commits(round_number):
        rounds.phase = AGGREGATING
        self.attempt = 0
        self._draw(round_number, blockhash(block.number - 1))


@external
def redraw(round_number: uint256):
    """
    @notice Past the result deadline without a majority: silent committee members lose
            reputation and a new committee is drawn.
    """
    rounds._check_current(round_number, AGGREGATING, "aggregating")
    assert block.number > rounds.phase_deadline, "result window still open"
    for member: address in self._committees[round_number][self.attempt]:
        if self._vote_of[round_number][self.attempt][member] == empty(bytes32):
            policy._change(member, round_number, ABSENT, "absent")
    self._draw(round_number, keccak256(concat(self._seeds[round_number][self.attempt], blockhash(block.number - 1))))


@internal
def _draw(round_number: uint256, entropy: bytes32):
    """
    @notice Draw without replacement, each pick with probability proportional to reputation
            among members not yet picked that are active institutions and not suspended (the
            others weigh 0). `committee_of` and the seed in the event let anyone recompute it.
    """
    self.attempt += 1
    seed: bytes32 = keccak256(concat(entropy, convert(round_number, bytes32), convert(self.attempt, bytes32)))
    weights: DynArray[uint256, rounds.MAX_MEMBERS] = []
    total: uint256 = 0
    for member: address in rounds.members:
        weight: uint256 = 0
        if rounds._eligible(member):
            weight = policy._reputation(member)
        weights.append(weight)
        total += weight
    committee: DynArray[address, MAX_COMMITTEE] = []
    for i: uint256 in range(MAX_COMMITTEE):
        if i == self.committee_size or total == 0:
            break
        target: uint256 = convert(keccak256(concat(seed, convert(i, bytes32))), uint256) % total
        for j: uint256 in range(rounds.MAX_MEMBERS):
            if j == len(weights):
                break
            if target < weights[j]:
                committee.append(rounds.members[j])
                total -= weights[j]
                weights[j] = 0
                break
            target -= weights[j]
    assert len(committee) > 0, "no member with reputation left to draw"
    self._committees[round_number][self.attempt] = committee
    self._seeds[round_number][self.attempt] = seed
    rounds.phase_deadline = block.number + rounds.result_window
    log CommitteeDrawn(round_number=round_number, attempt=self.attempt, seed=seed, committee=committee,
                       deadline=rounds.phase_deadline)


@external
def submit_result(round_number: uint256, attempt: uint256, model: bytes32, manifest_digest: bytes32,
                  reasons: DynArray[uint8, rounds.MAX_MEMBERS]):
    """
    @notice A committee member's result for `round_number`: the model, the manifest and one
            reason code per committed update in `committers` order (0: aggregated). Accepted
            while the round is open and, from members of the finalizing committee who had not
            answered yet, after it finalized (they are then judged against the finalized result).
    """
    assert model != empty(bytes32) and manifest_digest != empty(bytes32), "empty digest"
    assert round_number >= 1, "no round 0"
    assert msg.sender in self._committees[round_number][attempt], "not on this committee"
    rounds._check_active_member(msg.sender)
    assert self._vote_of[round_number][attempt][msg.sender] == empty(bytes32), "already submitted"
    rounds._check_reasons(round_number, reasons)
    key: bytes32 = keccak256(concat(model, manifest_digest, keccak256(abi_encode(reasons))))
    if round_number <= rounds.round_count:
        assert attempt == self.final_attempt[round_number], "that committee was replaced"
    else:
        rounds._check_current(round_number, AGGREGATING, "aggregating")
        assert attempt == self.attempt, "that committee was replaced"
    self._vote_of[round_number][attempt][msg.sender] = key
    log ResultSubmitted(round_number=round_number, attempt=attempt, member=msg.sender, model=model,
                        manifest_digest=manifest_digest, reasons=reasons)
    if round_number <= rounds.round_count:
        rounds._judge(msg.sender, round_number, key == self.final_key[round_number])
        return
    self._votes_for[round_number][attempt][key] += 1
    committee: DynArray[address, MAX_COMMITTEE] = self._committees[round_number][attempt]
    if self._votes_for[round_number][attempt][key] * 2 > len(committee):
        self.final_attempt[round_number] = attempt
        self.final_key[round_number] = key
        for member: address in committee:
            vote: bytes32 = self._vote_of[round_number][attempt][member]
            if vote != empty(bytes32):
                rounds._judge(member, round_number, vote == key)
        self.attempt = 0   # the next round has drawn no committee yet
        rounds._finalize(model, manifest_digest, reasons)


@external
@view
def committee_of(round_number: uint256, attempt: uint256) -> DynArray[address, MAX_COMMITTEE]:
    return self._committees[round_number][attempt]


@external
@view
def seed_of(round_number: uint256, attempt: uint256) -> bytes32:
    return self._seeds[round_number][attempt]
