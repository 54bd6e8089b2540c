# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger study ledger (loosely coupled: one anchor per round)
@notice One contract per study. Its coordinator anchors each round: the global model digest,
        the Merkle root of the accepted updates, the participants and the digests of the
        round's metrics and manifest. Rounds form a chain: each one names the previous
        round's model as its parent, so none can be skipped, replayed or forked.
        The anchor also records the updates the coordinator rejected, with a reason code
        each, and applies the shared reputation policy (reputation_policy.vy): every participant
        earns "update accepted", every rejected institution loses "update rejected", and a
        suspended institution cannot be a participant until the consortium's admin
        reinstates it. A rejection costs reputation only with evidence: the institution's own
        signature over the update it names (its signed commitment), which the contract checks,
        and at most once per institution and round. In a study with a differential-privacy budget (privacy_budget.vy) the
        anchor carries each participant's privacy spend, and a participant whose spend would
        pass the budget is refused: the coordinator must reject its update instead (code 15).
        An institution's reputation starts at INITIAL_REPUTATION the first
        time an anchor names it: `reputation(x)` reads 0 until then, `reputation_of(x)` the
        reputation in effect (INITIAL_REPUTATION for an institution not met yet).
"""

import evaluations
import privacy_budget as privacy
import reputation_policy as policy
import secagg_board as secagg

initializes: evaluations
initializes: policy
initializes: privacy
exports: (policy.__interface__, privacy.__interface__, evaluations.evaluation_of)

interface Consortium:
    def has_role(member: address, role: uint256) -> bool: view

INSTITUTION: constant(uint256) = 1
COORDINATOR: constant(uint256) = 2
MAX_PARTICIPANTS: constant(uint256) = 128


# What an institution signed when it sent an update (fedledger/crypto/signing.py): the sample
# count of its commitment and its EIP-191 signature, 65 bytes (empty where none is offered).
struct Evidence:
    num_samples: uint256
    signature: Bytes[65]

UPDATE_DOMAIN: constant(String[19]) = "FedLedger update v1"


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
def __init__(consortium: address, suspension_threshold: uint256, epsilon_budget: uint256, delta: uint256):
    assert consortium.is_contract, "consortium is not a contract"
    self.consortium = Consortium(consortium)
    policy._init(suspension_threshold)
    privacy._init(epsilon_budget, delta)


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
    rejected: DynArray[address, MAX_PARTICIPANTS],
    rejected_updates: DynArray[bytes32, MAX_PARTICIPANTS],
    reasons: DynArray[uint8, MAX_PARTICIPANTS],
    evidence: DynArray[Evidence, MAX_PARTICIPANTS],
    spends: DynArray[privacy.PrivacySpend, MAX_PARTICIPANTS],
):
    """
    @notice Record round `round_number`. Participants must be active institutions that are
            not suspended, listed in strictly increasing address order (which also rules out
            duplicates cheaply). `rejected`, `rejected_updates` and `reasons` list the updates
            left out, in any order: who sent each, its digest (empty if there was none to
            name) and why (a code 1..17); anyone may appear there, members or not, several
            times. `evidence` holds, in `rejected` order, what the member signed for that
            update: a rejection that costs reputation (reputation_policy `_penalized`) must
            carry the institution's signature over its commitment to the named update, and
            only one such rejection per institution and round is accepted. In a study with a privacy budget, `spends` holds each participant's privacy
            spend, in `participants` order, then one per rejection, in `rejected` order: a
            rejected update was released too, so its spend counts (an empty one where there is
            none to record: a refused or forged submission). Without a budget it is empty.
    """
    assert self.coordinator != empty(address), "study not started"
    assert msg.sender == self.coordinator, "only the study coordinator"
    # The coordinator may have been demoted since the study started.
    assert staticcall self.consortium.has_role(msg.sender, COORDINATOR), "coordinator role revoked"
    assert round_number == self.round_count + 1, "wrong round number"
    assert parent_model == self.latest_model, "parent is not the latest model"
    assert model != empty(bytes32), "empty model digest"
    assert len(rejected) == len(reasons) and len(rejected_updates) == len(reasons) \
        and len(evidence) == len(reasons), "one update, one reason and one evidence per rejected member"
    has_budget: bool = privacy.epsilon_budget != 0
    assert len(spends) == (len(participants) + len(rejected) if has_budget else 0), \
        "one privacy spend per participant and rejection"
    previous: uint256 = 0
    for i: uint256 in range(MAX_PARTICIPANTS):
        if i == len(participants):
            break
        participant: address = participants[i]
        assert convert(participant, uint256) > previous, "participants not strictly increasing (duplicate?)"
        previous = convert(participant, uint256)
        assert staticcall self.consortium.has_role(participant, INSTITUTION), "participant is not an institution"
        policy._enrol(participant)
        assert not policy._suspended(participant), "participant is suspended"
        policy._judge_update(participant, round_number, empty(bytes32), policy.ACCEPTED, True)
        if has_budget:
            assert privacy._valid(participant, spends[i]), "malformed privacy spend"
            assert privacy._within_budget(spends[i]), "participant past its privacy budget"
            privacy._spend(participant, round_number, spends[i])
    for i: uint256 in range(MAX_PARTICIPANTS):
        if i == len(rejected):
            break
        assert reasons[i] != policy.ACCEPTED and reasons[i] <= policy.MAX_REASON, "reason code must be 1..18"
        member: address = rejected[i]
        institution: bool = staticcall self.consortium.has_role(member, INSTITUTION)
        if institution:
            policy._enrol(member)
            if policy._penalized(reasons[i]):
                assert self._signer(round_number, parent_model, rejected_updates[i], evidence[i]) == member, \
                    "a penalty needs the institution's signature over the rejected update"
        policy._judge_update(member, round_number, rejected_updates[i], reasons[i], institution)
        if has_budget and not privacy._is_empty(spends[len(participants) + i]):
            assert institution, "privacy spend of a non-institution"
            assert privacy._valid(member, spends[len(participants) + i]), "malformed privacy spend"
            assert privacy._within_budget(spends[len(participants) + i]), "rejected member past its privacy budget"
            privacy._spend(member, round_number, spends[len(participants) + i])
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


@internal
@view
def _signer(round_number: uint256, parent_model: bytes32, update: bytes32, evidence: Evidence) -> address:
    """
    @notice Who signed the commitment "update `update`, trained from `parent_model` in round
            `round_number` of this study on this chain, on `evidence.num_samples` samples"
            (fedledger.crypto.UpdateCommitment, EIP-191); empty for a malformed signature.
    """
    if len(evidence.signature) != 65:
        return empty(address)
    commitment: bytes32 = keccak256(abi_encode(UPDATE_DOMAIN, chain.id, self, round_number, parent_model, update,
                                               evidence.num_samples))
    digest: bytes32 = keccak256(concat(b"\x19Ethereum Signed Message:\n32", commitment))
    return ecrecover(digest, convert(slice(evidence.signature, 64, 1), uint256),
                     extract32(evidence.signature, 0), extract32(evidence.signature, 32))


@external
def reinstate(member: address):
    """
    @notice Lift `member`'s suspension and reset its reputation to the initial one: only the
            consortium's admin may.
    """
    policy._reinstate(member, self.consortium.address, self.round_count + 1)


@internal
@view
def _check_poster(round_number: uint256):
    assert self.coordinator != empty(address), "study not started"
    assert staticcall self.consortium.has_role(msg.sender, INSTITUTION), "not an active institution"
    assert not policy._suspended(msg.sender), "member is suspended"
    assert round_number == self.round_count + 1, "not the open round"


@external
def advertise_keys(round_number: uint256, cipher_key: bytes32, mask_key: bytes32):
    """
    @notice Secure aggregation: publish the caller's X25519 public keys for the open round.
    """
    self._check_poster(round_number)
    secagg._advertise(msg.sender, round_number, cipher_key, mask_key)


@external
def post_secagg(round_number: uint256, step: uint8, digest: bytes32):
    """
    @notice Secure aggregation: log the digest of the caller's CKKS material (steps 3 to 5:
            the public context, the sealed secret contexts, a decrypted sum) in the open round.
    """
    self._check_poster(round_number)
    secagg._post(msg.sender, round_number, step, digest)


@external
def post_secagg_data(round_number: uint256, step: uint8, data: Bytes[secagg.MAX_DATA]):
    """
    @notice Secure aggregation: log the caller's sealed shares (step 1) or the shares it
            reveals for unmasking (step 2) in the open round, packed as they are.
    """
    self._check_poster(round_number)
    secagg._post_data(msg.sender, round_number, step, data)


@external
def submit_evaluation(round_number: uint256, evaluation: bytes32):
    """
    @notice The digest of the caller's signed evaluation of anchored round `round_number`'s
            model on its own test set: any active institution, once a round.
    """
    assert round_number >= 1 and round_number <= self.round_count, "round not anchored"
    assert staticcall self.consortium.has_role(msg.sender, INSTITUTION), "not an active institution"
    evaluations._submit(msg.sender, round_number, self._rounds[round_number].model, evaluation)


@external
def set_privacy_budget(epsilon_budget: uint256):
    """
    @notice Change each member's privacy budget (epsilon, in millionths): only the consortium's admin may.
    """
    privacy._set_budget(epsilon_budget, self.consortium.address)


@external
@view
def reputation_of(member: address) -> uint256:
    """
    @notice `member`'s reputation in effect: the stored one once an anchor named it, else
            INITIAL_REPUTATION for an active institution and 0 for anyone else.
    """
    if policy._known(member):
        return policy._reputation(member)
    if staticcall self.consortium.has_role(member, INSTITUTION):
        return policy.INITIAL_REPUTATION
    return 0


@external
@view
def get_round(round_number: uint256) -> Round:
    assert round_number >= 1 and round_number <= self.round_count, "no such round"
    return self._rounds[round_number]
