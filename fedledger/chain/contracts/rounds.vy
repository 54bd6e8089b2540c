# pragma version 0.4.3
"""
@title Round lifecycle shared by the chain-coordinated architectures
@notice The roster, per-round update commitments and finalization that CommitteeStudy
        (semi-coupled) and ConsensusStudy (fully coupled) have in common; reputation and
        suspension are the shared policy of reputation_policy.vy. No one coordinates: round 1 opens
        when the study starts and each finalized round opens the next. Deadlines are block
        numbers, so every member sees the same ones.
        A commitment refused for a reason of the sender's own is not a revert but a
        CommitRejected record (with a reason code of reputation_policy.vy), so refusals stay on chain.
        In a study with a differential-privacy budget every commitment carries its privacy
        spend (privacy_budget.vy), and one that would pass the budget is refused.
"""

import evaluations
import privacy_budget as privacy
import reputation_policy as policy
import secagg_board as secagg

uses: evaluations
uses: policy
uses: privacy

interface Consortium:
    def has_role(member: address, role: uint256) -> bool: view

INSTITUTION: constant(uint256) = 1
COORDINATOR: constant(uint256) = 2
MAX_MEMBERS: constant(uint256) = 128
# A result vote that matches the finalized one, or not.
AGREED: constant(int256) = 1
DISAGREED: constant(int256) = -50

# Phases of the current round. The contracts add their own after COMMITTING.
COMMITTING: constant(uint256) = 1


struct Commitment:
    update: bytes32
    num_samples: uint256


event StudyStarted:
    sponsor: indexed(address)
    config_digest: bytes32
    initial_model: bytes32
    members: DynArray[address, MAX_MEMBERS]

event RoundOpened:
    round_number: indexed(uint256)
    parent_model: bytes32
    deadline: uint256

event UpdateCommitted:
    round_number: indexed(uint256)
    member: indexed(address)
    update: bytes32
    num_samples: uint256
    metrics_digest: bytes32

event CommitWindowExtended:
    round_number: indexed(uint256)
    committed: uint256
    deadline: uint256

event RoundFinalized:
    round_number: indexed(uint256)
    parent_model: bytes32
    model: bytes32
    manifest_digest: bytes32

event CommitRejected:
    round_number: indexed(uint256)
    member: indexed(address)
    update: bytes32
    reason: uint8


consortium: public(Consortium)
sponsor: public(address)  # who started the study; it has no power over rounds
config_digest: public(bytes32)
initial_model: public(bytes32)
latest_model: public(bytes32)
round_count: public(uint256)  # finalized rounds; the open round is round_count + 1
phase: public(uint256)
phase_deadline: public(uint256)  # block after which a stalled phase may be closed or redrawn
commit_window: public(uint256)
result_window: public(uint256)
min_participants: public(uint256)
members: public(DynArray[address, MAX_MEMBERS])
on_roster: public(HashMap[address, bool])
_committers: HashMap[uint256, DynArray[address, MAX_MEMBERS]]
_commitments: HashMap[uint256, HashMap[address, Commitment]]
_committed_update: HashMap[uint256, HashMap[bytes32, bool]]  # digests committed in a round: no copies
finalized_model: public(HashMap[uint256, bytes32])
finalized_manifest: public(HashMap[uint256, bytes32])
# The finalized reason codes, one byte per committer in `committers` order, 32 to a word: a
# round where every update was aggregated writes nothing.
_finalized_reasons: HashMap[uint256, uint256[4]]


@internal
def _start(consortium: address, config_digest: bytes32, initial_model: bytes32,
           roster: DynArray[address, MAX_MEMBERS], commit_window: uint256, result_window: uint256,
           min_participants: uint256, suspension_threshold: uint256, epsilon_budget: uint256, delta: uint256):
    assert consortium.is_contract, "consortium is not a contract"
    self.consortium = Consortium(consortium)
    assert staticcall self.consortium.has_role(msg.sender, COORDINATOR), "caller is not a coordinator"
    assert config_digest != empty(bytes32), "empty config digest"
    assert initial_model != empty(bytes32), "empty initial model"
    assert len(roster) >= 2, "a study needs at least two members"
    assert min_participants >= 1 and min_participants <= len(roster), "min_participants out of range"
    assert commit_window > 0 and result_window > 0, "windows must be at least one block"
    policy._init(suspension_threshold)
    privacy._init(epsilon_budget, delta)
    for member: address in roster:
        assert not self.on_roster[member], "member listed twice"
        assert staticcall self.consortium.has_role(member, INSTITUTION), "member is not an institution"
        self.on_roster[member] = True
        policy._enrol(member)
    self.sponsor = msg.sender
    self.config_digest = config_digest
    self.initial_model = initial_model
    self.latest_model = initial_model
    self.members = roster
    self.commit_window = commit_window
    self.result_window = result_window
    self.min_participants = min_participants
    log StudyStarted(sponsor=msg.sender, config_digest=config_digest, initial_model=initial_model, members=roster)
    self._open_next()


@internal
def _open_next():
    self.phase = COMMITTING
    self.phase_deadline = block.number + self.commit_window
    log RoundOpened(round_number=self.round_count + 1, parent_model=self.latest_model, deadline=self.phase_deadline)


@internal
@view
def _check_active_member(member: address):
    assert self.on_roster[member], "not on the study's roster"
    assert staticcall self.consortium.has_role(member, INSTITUTION), "not an active institution"
    assert not policy._suspended(member), "member is suspended"


@internal
@view
def _eligible(member: address) -> bool:
    """
    @notice Whether roster member `member` may take part now: an active institution, not suspended.
    """
    return staticcall self.consortium.has_role(member, INSTITUTION) and not policy._suspended(member)


@internal
@view
def _counted_members() -> uint256:
    """
    @notice Roster members that count in quorums: those that may take part now (a member
            removed from the consortium or suspended does not count).
    """
    counted: uint256 = 0
    for member: address in self.members:
        if self._eligible(member):
            counted += 1
    return counted


@internal
@view
def _check_current(round_number: uint256, phase: uint256, what: String[16]):
    assert round_number == self.round_count + 1, "not the open round"
    assert self.phase == phase, concat("round is not ", what)


@external
def commit_update(round_number: uint256, parent_model: bytes32, update: bytes32, num_samples: uint256,
                  metrics_digest: bytes32, spend: privacy.PrivacySpend):
    """
    @notice Commit the caller's update for the open round, trained from `parent_model`, with
            its privacy spend (empty in a study without a privacy budget). A commitment
            refused for a reason of the sender's own does not revert: it is logged as
            CommitRejected with its reason code, stored nowhere and costs no reputation (an
            honest member can lose a race against a closing phase).
    """
    reason: uint8 = policy.ACCEPTED
    if not self.on_roster[msg.sender] or not staticcall self.consortium.has_role(msg.sender, INSTITUTION):
        reason = policy.NOT_MEMBER
    elif policy._suspended(msg.sender):
        reason = policy.SUSPENDED
    elif round_number != self.round_count + 1 or self.phase != COMMITTING or parent_model != self.latest_model:
        reason = policy.WRONG_ROUND
    elif self._commitments[round_number][msg.sender].update != empty(bytes32):
        reason = policy.DUPLICATE
    elif num_samples == 0:
        reason = policy.OUT_OF_RANGE
    elif update == empty(bytes32) or not privacy._valid(msg.sender, spend):
        reason = policy.INVALID_FORMAT
    elif self._committed_update[round_number][update]:
        reason = policy.COPIED
    elif not privacy._within_budget(spend):
        reason = policy.PRIVACY_BUDGET
    if reason != policy.ACCEPTED:
        log CommitRejected(round_number=round_number, member=msg.sender, update=update, reason=reason)
        return
    self._commitments[round_number][msg.sender] = Commitment(update=update, num_samples=num_samples)
    self._committed_update[round_number][update] = True
    self._committers[round_number].append(msg.sender)
    privacy._spend(msg.sender, round_number, spend)
    log UpdateCommitted(round_number=round_number, member=msg.sender, update=update, num_samples=num_samples,
                        metrics_digest=metrics_digest)


@internal
def _close_commits(round_number: uint256) -> bool:
    """
    @notice True when the commit phase closes with at least min_participants commitments: at
            once when every roster member that is an active institution and not suspended
            committed, else once the deadline passed. Past the deadline with too few, the
            window is extended instead.
    """
    self._check_current(round_number, COMMITTING, "committing")
    committed: uint256 = len(self._committers[round_number])
    if committed >= self.min_participants:
        if block.number > self.phase_deadline or self._everyone_committed(round_number):
            return True
    assert block.number > self.phase_deadline, "commit window still open"
    self.phase_deadline = block.number + self.commit_window
    log CommitWindowExtended(round_number=round_number, committed=committed, deadline=self.phase_deadline)
    return False


@internal
@view
def _everyone_committed(round_number: uint256) -> bool:
    """
    @notice Whether every roster member that may take part now has committed in `round_number`.
    """
    for member: address in self.members:
        if self._commitments[round_number][member].update == empty(bytes32) and self._eligible(member):
            return False
    return True


@internal
@view
def _check_reasons(round_number: uint256, reasons: DynArray[uint8, MAX_MEMBERS]):
    """
    @notice A result names one reason code per committed update, in `committers` order.
    """
    assert len(reasons) == len(self._committers[round_number]), "one reason per committed update"
    for code: uint8 in reasons:
        assert code <= policy.MAX_REASON, "reason code above 18"


@internal
def _finalize(model: bytes32, manifest_digest: bytes32, reasons: DynArray[uint8, MAX_MEMBERS]):
    """
    @notice Finalize the open round on (model, manifest, reasons): each committer's update is
            judged by its reason code, the round recorded and the next one opened.
    """
    assert model != empty(bytes32), "empty model digest"
    round_number: uint256 = self.round_count + 1
    self.finalized_model[round_number] = model
    self.finalized_manifest[round_number] = manifest_digest
    packed: uint256[4] = empty(uint256[4])
    committers: DynArray[address, MAX_MEMBERS] = self._committers[round_number]
    for i: uint256 in range(MAX_MEMBERS):
        if i == len(committers):
            break
        code: uint8 = reasons[i]
        if code != policy.ACCEPTED:
            packed[i // 32] |= convert(code, uint256) << (8 * (i % 32))
        policy._judge_update(committers[i], round_number, self._commitments[round_number][committers[i]].update,
                             code, True)
    for w: uint256 in range(4):
        if packed[w] != 0:
            self._finalized_reasons[round_number][w] = packed[w]
    log RoundFinalized(round_number=round_number, parent_model=self.latest_model, model=model,
                       manifest_digest=manifest_digest)
    self.round_count = round_number
    self.latest_model = model
    self._open_next()


@internal
def _judge(member: address, round_number: uint256, agreed: bool):
    """
    @notice Reward or penalize a result vote by whether it matches the finalized result.
    """
    if agreed:
        policy._change(member, round_number, AGREED, "agreed")
    else:
        policy._change(member, round_number, DISAGREED, "disagreed")


@external
def reinstate(member: address):
    """
    @notice Lift `member`'s suspension and reset its reputation to the initial one: only the
            consortium's admin may.
    """
    policy._reinstate(member, self.consortium.address, self.round_count + 1)


@external
def advertise_keys(round_number: uint256, cipher_key: bytes32, mask_key: bytes32):
    """
    @notice Secure aggregation: publish the caller's X25519 public keys for the open round.
    """
    self._check_active_member(msg.sender)
    assert round_number == self.round_count + 1, "not the open round"
    secagg._advertise(msg.sender, round_number, cipher_key, mask_key)


@external
def post_secagg(round_number: uint256, step: uint8, digest: bytes32):
    """
    @notice Secure aggregation: log the digest of the caller's CKKS material (steps 3 to 5:
            the public context, the sealed secret contexts, a decrypted sum) in the open round.
    """
    self._check_active_member(msg.sender)
    assert round_number == self.round_count + 1, "not the open round"
    secagg._post(msg.sender, round_number, step, digest)


@external
def post_secagg_data(round_number: uint256, step: uint8, data: Bytes[secagg.MAX_DATA]):
    """
    @notice Secure aggregation: log the caller's sealed shares (step 1) or the shares it
            reveals for unmasking (step 2) in the open round, packed as they are.
    """
    self._check_active_member(msg.sender)
    assert round_number == self.round_count + 1, "not the open round"
    secagg._post_data(msg.sender, round_number, step, data)


@external
def submit_evaluation(round_number: uint256, evaluation: bytes32):
    """
    @notice The digest of the caller's signed evaluation of finalized round `round_number`'s
            model on its own test set: any roster member that may take part, once a round.
    """
    assert round_number >= 1 and round_number <= self.round_count, "round not finalized"
    self._check_active_member(msg.sender)
    evaluations._submit(msg.sender, round_number, self.finalized_model[round_number], evaluation)


@external
def set_privacy_budget(epsilon_budget: uint256):
    """
    @notice Change each member's privacy budget (epsilon, in millionths): only the consortium's admin may.
    """
    privacy._set_budget(epsilon_budget, self.consortium.address)


@external
@view
def committers(round_number: uint256) -> DynArray[address, MAX_MEMBERS]:
    """
    @notice Who committed in `round_number`, in commit order (the order scores and rewards use).
    """
    return self._committers[round_number]


@external
@view
def commitment(round_number: uint256, member: address) -> Commitment:
    return self._commitments[round_number][member]


@external
@view
def commitments_of(round_number: uint256) -> DynArray[Commitment, MAX_MEMBERS]:
    """
    @notice The round's commitments in `committers` order: one call instead of one per member.
    """
    result: DynArray[Commitment, MAX_MEMBERS] = []
    for member: address in self._committers[round_number]:
        result.append(self._commitments[round_number][member])
    return result


@external
@view
def finalized_reasons(round_number: uint256) -> DynArray[uint8, MAX_MEMBERS]:
    """
    @notice The reason code of each committed update of a finalized round, in `committers`
            order (0: aggregated); empty while the round is not finalized.
    """
    result: DynArray[uint8, MAX_MEMBERS] = []
    if self.finalized_model[round_number] == empty(bytes32):
        return result
    packed: uint256[4] = self._finalized_reasons[round_number]
    for i: uint256 in range(MAX_MEMBERS):
        if i == len(self._committers[round_number]):
            break
        result.append(convert((packed[i // 32] >> (8 * (i % 32))) & 255, uint8))
    return result


@external
@view
def roster() -> DynArray[address, MAX_MEMBERS]:
    return self.members


@external
@view
def counted_members() -> uint256:
    """
    @notice Roster members that count in quorums now: active institutions, not suspended.
    """
    return self._counted_members()
