# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger study ledger (loosely coupled: one anchor per round)
@notice One contract per study. Its coordinator anchors each round: the global model digest,
        the Merkle root of the accepted updates, the participants and the digests of the
        round's metrics and manifest. Rounds form a chain: each one names the previous
        round's model as its parent, so none can be skipped, replayed or forked.
"""

interface Consortium:
    def has_role(member: address, role: uint256) -> bool: view

INSTITUTION: constant(uint256) = 1
COORDINATOR: constant(uint256) = 2
MAX_PARTICIPANTS: constant(uint256) = 128


struct Round:
    parent_model: bytes32
    model: bytes32
    updates_root: bytes32
    participants: DynArray[address, MAX_PARTICIPANTS]
    metrics_digest: bytes32
    manifest_digest: bytes32


event StudyStarted:
    coordinator: indexed(address)
    config_digest: bytes32
    initial_model: bytes32

event RoundAnchored:
    round_number: indexed(uint256)
    parent_model: bytes32
    model: bytes32
    updates_root: bytes32
    participants: DynArray[address, MAX_PARTICIPANTS]
    metrics_digest: bytes32
    manifest_digest: bytes32


consortium: public(Consortium)
coordinator: public(address)  # empty until the study starts
config_digest: public(bytes32)
initial_model: public(bytes32)
latest_model: public(bytes32)
round_count: public(uint256)
_rounds: HashMap[uint256, Round]


@deploy
def __init__(consortium: address):
    assert consortium.is_contract, "consortium is not a contract"
    self.consortium = Consortium(consortium)


@external
def start_study(config_digest: bytes32, initial_model: bytes32):
    """
    @notice Fix the study's configuration and initial model; the caller becomes its coordinator.
    """
    assert self.coordinator == empty(address), "study already started"
    assert staticcall self.consortium.has_role(msg.sender, COORDINATOR), "caller is not a coordinator"
    assert config_digest != empty(bytes32), "empty config digest"
    assert initial_model != empty(bytes32), "empty initial model"
    self.coordinator = msg.sender
    self.config_digest = config_digest
    self.initial_model = initial_model
    self.latest_model = initial_model
    log StudyStarted(coordinator=msg.sender, config_digest=config_digest, initial_model=initial_model)


@external
def anchor_round(
    round_number: uint256,
    parent_model: bytes32,
    model: bytes32,
    updates_root: bytes32,
    participants: DynArray[address, MAX_PARTICIPANTS],
    metrics_digest: bytes32,
    manifest_digest: bytes32,
):
    """
    @notice Record round `round_number`. Participants must be active institutions, listed in
            strictly increasing address order (which also rules out duplicates cheaply).
    """
    assert self.coordinator != empty(address), "study not started"
    assert msg.sender == self.coordinator, "only the study coordinator"
    # The coordinator may have been demoted since the study started.
    assert staticcall self.consortium.has_role(msg.sender, COORDINATOR), "coordinator role revoked"
    assert round_number == self.round_count + 1, "wrong round number"
    assert parent_model == self.latest_model, "parent is not the latest model"
    assert model != empty(bytes32), "empty model digest"
    assert len(participants) > 0, "no participants"
    previous: uint256 = 0
    for participant: address in participants:
        assert convert(participant, uint256) > previous, "participants not strictly increasing (duplicate?)"
        previous = convert(participant, uint256)
        assert staticcall self.consortium.has_role(participant, INSTITUTION), "participant is not an institution"
    self._rounds[round_number] = Round(
        parent_model=parent_model,
        model=model,
        updates_root=updates_root,
        participants=participants,
        metrics_digest=metrics_digest,
        manifest_digest=manifest_digest,
    )
    self.round_count = round_number
    self.latest_model = model
    log RoundAnchored(
        round_number=round_number,
        parent_model=parent_model,
        model=model,
        updates_root=updates_root,
        participants=participants,
        metrics_digest=metrics_digest,
        manifest_digest=manifest_digest,
    )


@external
@view
def get_round(round_number: uint256) -> Round:
    assert round_number >= 1 and round_number <= self.round_count, "no such round"
    return self._rounds[round_number]
