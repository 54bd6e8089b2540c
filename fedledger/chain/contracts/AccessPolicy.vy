# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger risk-based access authorisation
@notice Who may do what with a patient's data, decided from the request's context and the
        patient's risk level (FRAMH, Mazzocca et al., IEEE TCSS 2022), with the chain in place of
        a central authorisation server. The consortium's admin governs: it names the requesters
        and their roles, sets the policy (role x action x risk level -> deny, permit or break
        glass) and names the risk model, a FedLedger-trained model by study, round and digest.
        Anyone the admin named may request access; every request is decided here and recorded,
        denials included, never reverted: requester, role, hashed patient pseudonym, action, the
        risk level and the digests of the model and of the input it was estimated from, whether
        the requester declared an emergency, the decision and its reason. A break-glass cell
        permits only a declared emergency, and each such access waits for the admin's review.
        The contract cannot see the patient's vitals: the risk level is the requester's claim,
        which an auditor holding the input can check by running the named model again.
"""

interface Consortium:
    def admin() -> address: view

# Decisions (the policy's cells and a request's outcome). Unset cells deny.
DENY: constant(uint8) = 0
PERMIT: constant(uint8) = 1
BREAK_GLASS: constant(uint8) = 2   # a declared emergency is permitted, flagged for review

# Why a request got its decision.
BY_POLICY: constant(uint8) = 0        # the policy's cell decided
NOT_A_REQUESTER: constant(uint8) = 1  # the caller holds no requester role
WRONG_MODEL: constant(uint8) = 2      # the risk level was not estimated by the named risk model
OUT_OF_RANGE: constant(uint8) = 3     # an action or risk level the policy does not know
NO_EMERGENCY: constant(uint8) = 4     # a break-glass cell, without a declared emergency
EMERGENCY: constant(uint8) = 5        # a break-glass cell and a declared emergency: permitted, to review

MAX_ROLES: constant(uint8) = 16       # requester roles 1..16 (0: none)
MAX_ACTIONS: constant(uint8) = 16     # actions 0..15
RISK_LEVELS: constant(uint8) = 3      # stable, serious, critical

# A break-glass access's review.
PENDING: constant(uint8) = 1
UPHELD: constant(uint8) = 2
OVERTURNED: constant(uint8) = 3


event RequesterSet:
    requester: indexed(address)
    role: uint8

event PolicySet:
    role: uint8
    action: uint8
    risk_level: uint8
    decision: uint8

event RiskModelSet:
    study: indexed(address)
    round_number: uint256
    model: bytes32

event AccessDecided:
    request_id: indexed(uint256)
    requester: indexed(address)
    patient: indexed(bytes32)
    role: uint8
    action: uint8
    risk_level: uint8
    model: bytes32
    input_digest: bytes32
    emergency: bool
    decision: uint8
    reason: uint8

event BreakGlassReviewed:
    request_id: indexed(uint256)
    upheld: bool


consortium: public(Consortium)
requester_role: public(HashMap[address, uint8])
_policy: HashMap[uint256, uint8]
risk_model: public(bytes32)
risk_model_study: public(address)
risk_model_round: public(uint256)
request_count: public(uint256)
review_status: public(HashMap[uint256, uint8])   # request id -> PENDING, UPHELD or OVERTURNED (break glass only)


@deploy
def __init__(consortium: address):
    assert consortium.is_contract, "consortium is not a contract"
    self.consortium = Consortium(consortium)


@internal
@view
def _check_admin():
    assert msg.sender == staticcall self.consortium.admin(), "only the consortium's admin"


@internal
@pure
def _cell(role: uint8, action: uint8, risk_level: uint8) -> uint256:
    return (convert(role, uint256) * convert(MAX_ACTIONS, uint256) + convert(action, uint256)) * 4 \
        + convert(risk_level, uint256)


@external
def set_requester(requester: address, role: uint8):
    """
    @notice Give `requester` a role (1..MAX_ROLES), or take its role away (0).
    """
    self._check_admin()
    assert requester != empty(address), "zero address"
    assert role <= MAX_ROLES, "role out of range"
    self.requester_role[requester] = role
    log RequesterSet(requester=requester, role=role)


@external
def set_policy(role: uint8, action: uint8, risk_level: uint8, decision: uint8):
    """
    @notice Set what `role` gets for `action` on a patient at `risk_level`.
    """
    self._check_admin()
    assert role >= 1 and role <= MAX_ROLES, "role out of range"
    assert action < MAX_ACTIONS, "action out of range"
    assert risk_level < RISK_LEVELS, "risk level out of range"
    assert decision <= BREAK_GLASS, "decision must be 0 (deny), 1 (permit) or 2 (break glass)"
    self._policy[self._cell(role, action, risk_level)] = decision
    log PolicySet(role=role, action=action, risk_level=risk_level, decision=decision)


@external
@view
def policy(role: uint8, action: uint8, risk_level: uint8) -> uint8:
    """
    @notice The decision of one cell (DENY for a cell never set or out of range).
    """
    if role == 0 or role > MAX_ROLES or action >= MAX_ACTIONS or risk_level >= RISK_LEVELS:
        return DENY
    return self._policy[self._cell(role, action, risk_level)]


@external
def set_risk_model(study: address, round_number: uint256, model: bytes32):
    """
    @notice Name the model that estimates patients' risk levels: round `round_number`'s model
            `model` of the study contract `study` (the audit checks the study holds it).
    """
    self._check_admin()
    assert study.is_contract, "study is not a contract"
    assert round_number >= 1, "a model of round 1 or later"
    assert model != empty(bytes32), "empty model digest"
    self.risk_model = model
    self.risk_model_study = study
    self.risk_model_round = round_number
    log RiskModelSet(study=study, round_number=round_number, model=model)


@external
def request_access(patient: bytes32, action: uint8, risk_level: uint8, model: bytes32, input_digest: bytes32,
                   emergency: bool) -> uint8:
    """
    @notice Ask for `action` on `patient` (a hashed pseudonym), whose risk level `model`
            estimated from the input hashing to `input_digest`. Decided, recorded and returned.
    """
    role: uint8 = self.requester_role[msg.sender]
    decision: uint8 = DENY
    reason: uint8 = BY_POLICY
    if role == 0:
        reason = NOT_A_REQUESTER
    elif model != self.risk_model or model == empty(bytes32):
        reason = WRONG_MODEL
    elif action >= MAX_ACTIONS or risk_level >= RISK_LEVELS:
        reason = OUT_OF_RANGE
    else:
        cell: uint8 = self._policy[self._cell(role, action, risk_level)]
        if cell == PERMIT:
            decision = PERMIT
        elif cell == BREAK_GLASS and emergency:
            decision = BREAK_GLASS
            reason = EMERGENCY
        elif cell == BREAK_GLASS:
            reason = NO_EMERGENCY
    request_id: uint256 = self.request_count + 1
    self.request_count = request_id
    if decision == BREAK_GLASS:
        self.review_status[request_id] = PENDING
    log AccessDecided(request_id=request_id, requester=msg.sender, patient=patient, role=role, action=action,
                      risk_level=risk_level, model=model, input_digest=input_digest, emergency=emergency,
                      decision=decision, reason=reason)
    return decision


@external
def review_break_glass(request_id: uint256, upheld: bool):
    """
    @notice The admin's review of a break-glass access: upheld (it was justified) or overturned.
    """
    self._check_admin()
    assert self.review_status[request_id] == PENDING, "not a break-glass access awaiting review"
    self.review_status[request_id] = UPHELD if upheld else OVERTURNED
    log BreakGlassReviewed(request_id=request_id, upheld=upheld)
