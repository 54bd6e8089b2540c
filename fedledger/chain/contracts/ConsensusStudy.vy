# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger study, fully coupled: every member validates and votes on the model
@notice Members commit their own updates. Every roster member then scores every committed
        update on its own held-out data and puts the scores on chain; once the scores are
        closed, each member applies the same documented exclusion rule to them, aggregates
        the accepted updates and votes for (model, manifest, rewards, reasons): a reason code
        per committed update, 0 for an aggregated one. The round finalizes when two thirds of
        the vote's electorate (by count, or by reputation if so configured) vote for the same
        result; the rewards in it are credited, contributors whose update was rejected lose
        reputation and voters who disagreed with the outcome lose reputation.
        A vote has epochs. Epoch 0's electorate is every roster member that may take part (an
        active institution, not suspended). A vote still undecided past its deadline, split or
        short of voters, can be reopened: the next epoch's electorate is whoever voted in the
        last one (everyone again if no one did), so members silent for a whole vote window lose
        their say in that round and cannot stall it for ever. Votes of an abandoned epoch count
        for nothing and are not judged. Scores likewise: past the deadline with fewer than two
        thirds scored, the window is extended once, then the scores close with whoever scored.
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

SCORING: constant(uint256) = 2
VOTING: constant(uint256) = 3
MAX_SCORE: constant(uint256) = 1000000  # scores are parts per million (accuracy 0.8 -> 800000)


event ScoresSubmitted:
    round_number: indexed(uint256)
    validator: indexed(address)
    scores: DynArray[uint256, rounds.MAX_MEMBERS]

event ScoresClosed:
    round_number: indexed(uint256)
    validators: uint256
    deadline: uint256

event ScoreWindowExtended:
    round_number: indexed(uint256)
    validators: uint256
    deadline: uint256

event VoteReopened:
    round_number: indexed(uint256)
    epoch: uint256
    electorate: uint256  # voters in it, by count
    deadline: uint256

event VoteSubmitted:
    round_number: indexed(uint256)
    validator: indexed(address)
    epoch: uint256
    model: bytes32
    manifest_digest: bytes32
    rewards: DynArray[uint256, rounds.MAX_MEMBERS]
    reasons: DynArray[uint8, rounds.MAX_MEMBERS]

event RewardCredited:
    member: indexed(address)
    round_number: indexed(uint256)
    amount: uint256


weight_by_reputation: public(bool)
_scored: HashMap[uint256, HashMap[address, bool]]
score_count: public(HashMap[uint256, uint256])
_score_extended: HashMap[uint256, bool]
vote_epoch: public(HashMap[uint256, uint256])  # the open vote's epoch; for a finalized round, the deciding one
# round -> epoch -> whose votes form its electorate: 0 every member that may take part, k the voters of epoch k - 1
_electorate_of: HashMap[uint256, HashMap[uint256, uint256]]
_vote_of: HashMap[uint256, HashMap[uint256, HashMap[address, bytes32]]]  # round -> epoch -> voter -> key
_voters: HashMap[uint256, HashMap[uint256, uint256]]  # round -> epoch -> votes cast
# round -> epoch -> what its electorate weighs (count or reputation), fixed when the epoch opens
_electorate_weight: HashMap[uint256, HashMap[uint256, uint256]]
_votes_for: HashMap[uint256, HashMap[uint256, HashMap[bytes32, uint256]]]  # by count or reputation
final_key: public(HashMap[uint256, bytes32])
reward_balance: public(HashMap[address, uint256])


@deploy
def __init__(consortium: address, config_digest: bytes32, initial_model: bytes32,
             roster: DynArray[address, rounds.MAX_MEMBERS], commit_window: uint256, result_window: uint256,
             min_participants: uint256, suspension_threshold: uint256, epsilon_budget: uint256,
             delta: uint256, weight_by_reputation: bool):
    """
    @notice Deploying starts the study (the deployer must hold the coordinator role) and opens round 1.
    """
    rounds._start(consortium, config_digest, initial_model, roster, commit_window, result_window, min_participants,
                  suspension_threshold, epsilon_budget, delta)
    self.weight_by_reputation = weight_by_reputation


@external
def close_commits(round_number: uint256):
    """
    @notice Close the commit phase (all committed, or past the deadline); scoring starts.
    """
    if rounds._close_commits(round_number):
        rounds.phase = SCORING
        rounds.phase_deadline = block.number + rounds.result_window


@external
def submit_scores(round_number: uint256, scores: DynArray[uint256, rounds.MAX_MEMBERS]):
    """
    @notice The caller's scores of the round's updates, in `committers` order.
    """
    rounds._check_current(round_number, SCORING, "scoring")
    rounds._check_active_member(msg.sender)
    assert not self._scored[round_number][msg.sender], "already scored this round"
    assert len(scores) == len(rounds._committers[round_number]), "one score per committed update"
    for score: uint256 in scores:
        assert score <= MAX_SCORE, "score above 1000000"
    self._scored[round_number][msg.sender] = True
    self.score_count[round_number] += 1
    log ScoresSubmitted(round_number=round_number, validator=msg.sender, scores=scores)


@external
def close_scores(round_number: uint256):
    """
    @notice Freeze the scores (all members that may take part scored, or past the deadline
            with two thirds of them); voting starts. Past the deadline with fewer, the window is
            extended once; past the extended one, the scores close with whoever scored (if anyone did).
    """
    rounds._check_current(round_number, SCORING, "scoring")
    scored: uint256 = self.score_count[round_number]
    counted: uint256 = rounds._counted_members()
    if scored < counted:
        assert block.number > rounds.phase_deadline, "score window still open"
        if 3 * scored < 2 * counted and (scored == 0 or not self._score_extended[round_number]):
            self._score_extended[round_number] = True
            rounds.phase_deadline = block.number + rounds.result_window
            log ScoreWindowExtended(round_number=round_number, validators=scored, deadline=rounds.phase_deadline)
            return
    rounds.phase = VOTING
    rounds.phase_deadline = block.number + rounds.result_window
    self._electorate_weight[round_number][0] = self._electorate(round_number, 0, self.weight_by_reputation)
    log ScoresClosed(round_number=round_number, validators=scored, deadline=rounds.phase_deadline)


@external
def close_votes(round_number: uint256):
    """
    @notice Reopen an undecided vote past its deadline in a new epoch: its electorate is the
            last epoch's voters (everyone that may take part, if no one voted).
    """
    rounds._check_current(round_number, VOTING, "voting")
    assert block.number > rounds.phase_deadline, "vote window still open"
    epoch: uint256 = self.vote_epoch[round_number]
    electorate: uint256 = epoch + 1
    if self._voters[round_number][epoch] == 0:
        electorate = self._electorate_of[round_number][epoch]
    self.vote_epoch[round_number] = epoch + 1
    self._electorate_of[round_number][epoch + 1] = electorate
    self._electorate_weight[round_number][epoch + 1] = self._electorate(round_number, epoch + 1,
                                                                        self.weight_by_reputation)
    rounds.phase_deadline = block.number + rounds.result_window
    log VoteReopened(round_number=round_number, epoch=epoch + 1, electorate=self._electorate(round_number, epoch + 1, False),
                     deadline=rounds.phase_deadline)


@internal
@view
def _in_electorate(round_number: uint256, epoch: uint256, member: address) -> bool:
    source: uint256 = self._electorate_of[round_number][epoch]
    return source == 0 or self._vote_of[round_number][source - 1][member] != empty(bytes32)


@internal
@view
def _electorate(round_number: uint256, epoch: uint256, by_reputation: bool) -> uint256:
    """
    @notice What the electorate of `epoch` that may take part now weighs: by count, or by
            reputation. Fixed when the epoch opens, so that a vote costs the same whatever the
            roster's size; a member removed or suspended during the epoch still weighs until the next.
    """
    total: uint256 = 0
    for member: address in rounds.members:
        if rounds._eligible(member) and self._in_electorate(round_number, epoch, member):
            if by_reputation:
                total += policy._reputation(member)
            else:
                total += 1
    return total


@external
@view
def may_vote(round_number: uint256, member: address) -> bool:
    """
    @notice Whether `member` is in the electorate of `round_number`'s current (or deciding) epoch.
    """
    return self._in_electorate(round_number, self.vote_epoch[round_number], member)


@internal
@view
def _result_key(model: bytes32, manifest_digest: bytes32, rewards: DynArray[uint256, rounds.MAX_MEMBERS],
                reasons: DynArray[uint8, rounds.MAX_MEMBERS]) -> bytes32:
    return keccak256(concat(model, manifest_digest, keccak256(abi_encode(rewards)), keccak256(abi_encode(reasons))))


@external
def submit_vote(round_number: uint256, model: bytes32, manifest_digest: bytes32,
                rewards: DynArray[uint256, rounds.MAX_MEMBERS], reasons: DynArray[uint8, rounds.MAX_MEMBERS]):
    """
    @notice The caller's result in the vote's current epoch: the model, the manifest, each
            committer's reward and each committer's reason code (0: aggregated), in
            `committers` order; a rejected update earns no reward. Votes arriving after the
            round finalized (from the deciding epoch's electorate) are judged against the outcome.
    """
    assert model != empty(bytes32) and manifest_digest != empty(bytes32), "empty digest"
    assert round_number >= 1, "no round 0"
    rounds._check_active_member(msg.sender)
    epoch: uint256 = self.vote_epoch[round_number]
    assert self._vote_of[round_number][epoch][msg.sender] == empty(bytes32), "already voted this round"
    if round_number > rounds.round_count:
        rounds._check_current(round_number, VOTING, "voting")
    assert self._in_electorate(round_number, epoch, msg.sender), "not in this vote's electorate"
    committers: DynArray[address, rounds.MAX_MEMBERS] = rounds._committers[round_number]
    assert len(rewards) == len(committers), "one reward per committed update"
    rounds._check_reasons(round_number, reasons)
    for i: uint256 in range(rounds.MAX_MEMBERS):
        if i == len(committers):
            break
        assert rewards[i] == 0 or reasons[i] == policy.ACCEPTED, "rejected update cannot be rewarded"
    key: bytes32 = self._result_key(model, manifest_digest, rewards, reasons)
    self._vote_of[round_number][epoch][msg.sender] = key
    self._voters[round_number][epoch] += 1
    log VoteSubmitted(round_number=round_number, validator=msg.sender, epoch=epoch, model=model,
                      manifest_digest=manifest_digest, rewards=rewards, reasons=reasons)
    if round_number <= rounds.round_count:
        rounds._judge(msg.sender, round_number, key == self.final_key[round_number])
        return
    weight: uint256 = 1
    if self.weight_by_reputation:
        weight = policy._reputation(msg.sender)
    self._votes_for[round_number][epoch][key] += weight
    if 3 * self._votes_for[round_number][epoch][key] < 2 * self._electorate_weight[round_number][epoch]:
        return
    self.final_key[round_number] = key
    for member: address in rounds.members:
        vote: bytes32 = self._vote_of[round_number][epoch][member]
        if vote != empty(bytes32):
            rounds._judge(member, round_number, vote == key)
    for i: uint256 in range(rounds.MAX_MEMBERS):
        if i == len(committers):
            break
        if rewards[i] > 0:
            self.reward_balance[committers[i]] += rewards[i]
            log RewardCredited(member=committers[i], round_number=round_number, amount=rewards[i])
    rounds._finalize(model, manifest_digest, reasons)
