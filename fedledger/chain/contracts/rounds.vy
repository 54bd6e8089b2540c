# pragma version 0.4.3
"""
@title Round lifecycle shared by the chain-coordinated architectures
@notice The roster, reputation, per-round update commitments and finalization that
        CommitteeStudy (semi-coupled) and ConsensusStudy (fully coupled) have in common.
        No one coordinates: round 1 opens when the study starts and each finalized round
        opens the next. Deadlines are block numbers, so every member sees the same ones.
"""

interface Consortium:
    def has_role(member: address, role: uint256) -> bool: view

INSTITUTION: constant(uint256) = 1
COORDINATOR: constant(uint256) = 2
MAX_MEMBERS: constant(uint256) = 128
INITIAL_REPUTATION: constant(uint256) = 100
MAX_REPUTATION: constant(uint256) = 1000
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

event ReputationChanged:
    member: indexed(address)
    round_number: indexed(uint256)
    before: uint256
    after: uint256
    reason: String[24]


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
reputation: public(HashMap[address, uint256])
_committers: HashMap[uint256, DynArray[address, MAX_MEMBERS]]
_commitments: HashMap[uint256, HashMap[address, Commitment]]
finalized_model: public(HashMap[uint256, bytes32])
finalized_manifest: public(HashMap[uint256, bytes32])


@internal
def _start(consortium: address, config_digest: bytes32, initial_model: bytes32,
           roster: DynArray[address, MAX_MEMBERS], commit_window: uint256, result_window: uint256,
           min_participants: uint256):
    assert consortium.is_contract, "consortium is not a contract"
    self.consortium = Consortium(consortium)
    assert staticcall self.consortium.has_role(msg.sender, COORDINATOR), "caller is not a coordinator"
    assert config_digest != empty(bytes32), "empty config digest"
    assert initial_model != empty(bytes32), "empty initial model"
    assert len(roster) >= 2, "a study needs at least two members"
    assert min_participants >= 1 and min_participants <= len(roster), "min_participants out of range"
    assert commit_window > 0 and result_window > 0, "windows must be at least one block"
    for member: address in roster:
        assert not self.on_roster[member], "member listed twice"
        assert staticcall self.consortium.has_role(member, INSTITUTION), "member is not an institution"
        self.on_roster[member] = True
        self.reputation[member] = INITIAL_REPUTATION
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


@internal
@view
def _check_current(round_number: uint256, phase: uint256, what: String[16]):
    assert round_number == self.round_count + 1, "not the open round"
    assert self.phase == phase, concat("round is not ", what)


@external
def commit_update(round_number: uint256, parent_model: bytes32, update: bytes32, num_samples: uint256,
                  metrics_digest: bytes32):
    """
    @notice Commit the caller's update for the open round, trained from `parent_model`.
    """
    self._check_current(round_number, COMMITTING, "committing")
    self._check_active_member(msg.sender)
    assert parent_model == self.latest_model, "parent is not the latest model"
    assert update != empty(bytes32), "empty update digest"
    assert num_samples > 0, "no training samples"
    assert self._commitments[round_number][msg.sender].update == empty(bytes32), "already committed this round"
    self._commitments[round_number][msg.sender] = Commitment(update=update, num_samples=num_samples)
    self._committers[round_number].append(msg.sender)
    log UpdateCommitted(round_number=round_number, member=msg.sender, update=update, num_samples=num_samples,
                        metrics_digest=metrics_digest)


@internal
def _close_commits(round_number: uint256) -> bool:
    """
    @notice True when the commit phase closes: everyone committed, or the deadline passed with
            enough commitments. Past the deadline with too few, the window is extended instead.
    """
    self._check_current(round_number, COMMITTING, "committing")
    committed: uint256 = len(self._committers[round_number])
    if committed == len(self.members):
        return True
    assert block.number > self.phase_deadline, "commit window still open"
    if committed >= self.min_participants:
        return True
    self.phase_deadline = block.number + self.commit_window
    log CommitWindowExtended(round_number=round_number, committed=committed, deadline=self.phase_deadline)
    return False


@internal
def _finalize(model: bytes32, manifest_digest: bytes32):
    assert model != empty(bytes32), "empty model digest"
    round_number: uint256 = self.round_count + 1
    self.finalized_model[round_number] = model
    self.finalized_manifest[round_number] = manifest_digest
    log RoundFinalized(round_number=round_number, parent_model=self.latest_model, model=model,
                       manifest_digest=manifest_digest)
    self.round_count = round_number
    self.latest_model = model
    self._open_next()


@internal
def _change_reputation(member: address, round_number: uint256, delta: int256, reason: String[24]):
    """
    @notice Move reputation by `delta`, kept within 0..MAX_REPUTATION.
    """
    before: uint256 = self.reputation[member]
    after: int256 = max(0, min(convert(MAX_REPUTATION, int256), convert(before, int256) + delta))
    self.reputation[member] = convert(after, uint256)
    log ReputationChanged(member=member, round_number=round_number, before=before, after=convert(after, uint256),
                          reason=reason)


@internal
def _judge(member: address, round_number: uint256, agreed: bool):
    """
    @notice Reward or penalize a result vote by whether it matches the finalized result.
    """
    if agreed:
        self._change_reputation(member, round_number, AGREED, "agreed")
    else:
        self._change_reputation(member, round_number, DISAGREED, "disagreed")


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
def roster() -> DynArray[address, MAX_MEMBERS]:
    return self.members
