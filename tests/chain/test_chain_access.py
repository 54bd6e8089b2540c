"""AccessPolicy.vy on the embedded EVM: the consortium's admin governs, every request is decided
by the policy and recorded (denials too), break glass needs a declared emergency and a review."""

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.audit import AuditReport
from fedledger.audit.access import replay_access, verify_access
from fedledger.chain.access import AccessPolicy, AccessReason, Decision, Review, RiskModel
from fedledger.chain.embedded import EmbeddedChain
from fedledger.errors import TransactionReverted

from .conftest import FUNDS, digest, set_up_study

PHYSICIAN, NURSE, RESEARCHER = 1, 2, 3
READ_VITALS, EXPORT = 0, 2
STABLE, SERIOUS, CRITICAL = 0, 1, 2
PATIENT = digest("salt|patient 17")


@pytest.fixture
def access(study):
    policy = AccessPolicy.deploy(study.backend, study.admin, study.consortium.address)
    policy.set_risk_model(study.admin, study.ledger.address, 3, digest("risk model"))
    physician, nurse = Account.create(), Account.create()
    study.backend.fund([physician.address, nurse.address], FUNDS)
    policy.set_requester(study.admin, physician.address, PHYSICIAN)
    policy.set_requester(study.admin, nurse.address, NURSE)
    return study, policy, physician, nurse


def ask(policy, who, action=READ_VITALS, risk=STABLE, model=None, emergency=False):
    return policy.request_access(who, PATIENT, action, risk, model or digest("risk model"), digest("vitals"),
                                 emergency)


def test_the_policy_decides_and_every_request_is_recorded(access):
    study, policy, physician, nurse = access
    policy.set_policy(study.admin, PHYSICIAN, READ_VITALS, STABLE, Decision.PERMIT)
    policy.set_policy(study.admin, NURSE, READ_VITALS, CRITICAL, Decision.PERMIT)
    granted = ask(policy, physician)
    assert (granted.decision, granted.reason, granted.role) == (Decision.PERMIT, AccessReason.BY_POLICY, PHYSICIAN)
    assert (granted.patient, granted.model, granted.input_digest) == (PATIENT, digest("risk model"), digest("vitals"))
    # the nurse may read a critical patient's vitals, not a stable one's: the risk level decides
    assert ask(policy, nurse, risk=CRITICAL).decision == Decision.PERMIT
    denied = ask(policy, nurse, risk=STABLE)
    assert (denied.decision, denied.reason) == (Decision.DENY, AccessReason.BY_POLICY)
    assert [r.request_id for r in policy.decisions()] == [1, 2, 3]
    assert [r.decision for r in policy.decisions()] == [Decision.PERMIT, Decision.PERMIT, Decision.DENY]
    assert policy.risk_model() == RiskModel(study.ledger.address, 3, digest("risk model"))


def test_strangers_other_models_and_unknown_actions_are_denied_with_their_reason(access):
    study, policy, physician, _ = access
    policy.set_policy(study.admin, PHYSICIAN, READ_VITALS, STABLE, Decision.PERMIT)
    stranger = study.outsider
    assert ask(policy, stranger).reason == AccessReason.NOT_A_REQUESTER
    assert ask(policy, physician, model=digest("another model")).reason == AccessReason.WRONG_MODEL
    assert ask(policy, physician, action=16).reason == AccessReason.OUT_OF_RANGE
    assert ask(policy, physician, risk=3).reason == AccessReason.OUT_OF_RANGE
    assert all(r.decision == Decision.DENY for r in policy.decisions())
    # a requester whose role is taken away is a stranger again
    policy.set_requester(study.admin, physician.address, 0)
    assert ask(policy, physician).reason == AccessReason.NOT_A_REQUESTER


def test_break_glass_needs_a_declared_emergency_and_waits_for_review(access):
    study, policy, physician, _ = access
    policy.set_policy(study.admin, PHYSICIAN, EXPORT, CRITICAL, Decision.BREAK_GLASS)
    plain = ask(policy, physician, action=EXPORT, risk=CRITICAL)
    assert (plain.decision, plain.reason) == (Decision.DENY, AccessReason.NO_EMERGENCY)
    urgent = ask(policy, physician, action=EXPORT, risk=CRITICAL, emergency=True)
    assert (urgent.decision, urgent.reason, urgent.emergency) == (Decision.BREAK_GLASS, AccessReason.EMERGENCY, True)
    assert [r.request_id for r in policy.awaiting_review()] == [urgent.request_id]
    assert policy.review_of(plain.request_id) == Review.NONE
    policy.review(study.admin, urgent.request_id, upheld=False)
    assert policy.review_of(urgent.request_id) == Review.OVERTURNED and policy.awaiting_review() == []
    with pytest.raises(TransactionReverted, match="not a break-glass access awaiting review"):
        policy.review(study.admin, urgent.request_id, upheld=True)
    with pytest.raises(TransactionReverted, match="not a break-glass access awaiting review"):
        policy.review(study.admin, plain.request_id, upheld=True)


@pytest.mark.parametrize("call, message", [
    (lambda s, p, who: p.set_policy(who, PHYSICIAN, READ_VITALS, STABLE, Decision.PERMIT), "only the consortium's admin"),
    (lambda s, p, who: p.set_requester(who, who.address, PHYSICIAN), "only the consortium's admin"),
    (lambda s, p, who: p.set_risk_model(who, s.ledger.address, 1, digest("mine")), "only the consortium's admin"),
    (lambda s, p, who: p.set_policy(s.admin, 0, READ_VITALS, STABLE, Decision.PERMIT), "role out of range"),
    (lambda s, p, who: p.set_policy(s.admin, 17, READ_VITALS, STABLE, Decision.PERMIT), "role out of range"),
    (lambda s, p, who: p.set_policy(s.admin, PHYSICIAN, 16, STABLE, Decision.PERMIT), "action out of range"),
    (lambda s, p, who: p.set_policy(s.admin, PHYSICIAN, READ_VITALS, 3, Decision.PERMIT), "risk level out of range"),
    (lambda s, p, who: p.set_policy(s.admin, PHYSICIAN, READ_VITALS, STABLE, 3), "decision must be 0"),
    (lambda s, p, who: p.set_requester(s.admin, who.address, 17), "role out of range"),
    (lambda s, p, who: p.set_risk_model(s.admin, who.address, 1, digest("m")), "study is not a contract"),
    (lambda s, p, who: p.set_risk_model(s.admin, s.ledger.address, 0, digest("m")), "a model of round 1 or later"),
])
def test_only_the_admin_governs_and_bad_settings_are_refused(access, call, message):
    study, policy, physician, _ = access
    with pytest.raises(TransactionReverted, match=message):
        call(study, policy, physician)
    assert policy.policy(PHYSICIAN, READ_VITALS, STABLE) == Decision.DENY


@pytest.fixture(scope="module")
def shared_policy():
    chain = EmbeddedChain.create(None, "revm")
    study = set_up_study(chain)
    policy = AccessPolicy.deploy(chain, study.admin, study.consortium.address)
    policy.set_risk_model(study.admin, study.ledger.address, 1, digest("risk model"))
    requesters = {role: Account.create() for role in (1, 2, 16)}
    chain.fund([a.address for a in requesters.values()], FUNDS)
    for role, account in requesters.items():
        policy.set_requester(study.admin, account.address, role)
    yield study, policy, requesters
    chain.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.dictionaries(st.tuples(st.sampled_from([1, 2, 16]), st.integers(0, 15), st.integers(0, 2)),
                             st.sampled_from(list(Decision)), max_size=6),
       request=st.tuples(st.sampled_from([1, 2, 16]), st.integers(0, 15), st.integers(0, 2), st.booleans()))
def test_a_decision_is_the_policys_cell_with_break_glass_only_in_an_emergency(shared_policy, cells, request):
    study, policy, requesters = shared_policy
    for (role, action, risk), decision in cells.items():
        policy.set_policy(study.admin, role, action, risk, decision)
    role, action, risk, emergency = request
    cell = policy.policy(role, action, risk)
    if (role, action, risk) in cells:
        assert cell == cells[(role, action, risk)]
    record = ask(policy, requesters[role], action=action, risk=risk, emergency=emergency)
    expected = {Decision.PERMIT: Decision.PERMIT, Decision.DENY: Decision.DENY,
                Decision.BREAK_GLASS: Decision.BREAK_GLASS if emergency else Decision.DENY}[cell]
    assert record.decision == expected and record.role == role
    assert (policy.review_of(record.request_id) == Review.PENDING) == (expected == Decision.BREAK_GLASS)


def model_of(study):
    return lambda address, round: study.ledger.round_model(round) if address == study.ledger.address else None


def test_the_audit_replays_the_history_and_catches_forged_decisions_and_wrong_models(study):
    study.ledger.anchor_round(study.coordinator, study.record(1, digest("model 0")))
    policy = AccessPolicy.deploy(study.backend, study.admin, study.consortium.address)
    policy.set_risk_model(study.admin, study.ledger.address, 1, digest("model 1"))    # round 1's model
    physician = Account.create()
    study.backend.fund([physician.address], FUNDS)
    policy.set_requester(study.admin, physician.address, PHYSICIAN)
    policy.set_policy(study.admin, PHYSICIAN, READ_VITALS, SERIOUS, Decision.PERMIT)
    policy.set_policy(study.admin, PHYSICIAN, EXPORT, CRITICAL, Decision.BREAK_GLASS)
    model = digest("model 1")
    for risk in (STABLE, SERIOUS):
        ask(policy, physician, risk=risk, model=model)
    urgent = ask(policy, physician, action=EXPORT, risk=CRITICAL, model=model, emergency=True)
    policy.review(study.admin, urgent.request_id, upheld=True)
    ask(policy, study.outsider, model=model)
    history = policy.history()
    assert replay_access(history, model_of(study)) == (4, [])
    report = AuditReport("access")
    verify_access(report, policy, model_of(study))
    assert report.ok, report.findings

    # a decision rewritten into a permit the policy never gave
    forged = [dict(e) for e in history]
    denied = next(e for e in forged if e["event"] == "AccessDecided" and e["decision"] == Decision.DENY)
    denied["decision"] = int(Decision.PERMIT)
    requests, problems = replay_access(forged, model_of(study))
    assert len(problems) == 1 and f"request {denied['request_id']}" in problems[0] and "recorded permit" in problems[0]
    # a review of an access that was never a break glass
    reviewed = [dict(e) for e in history]
    next(e for e in reviewed if e["event"] == "BreakGlassReviewed")["request_id"] = 1
    assert any("no break-glass access awaiting review" in p for p in replay_access(reviewed, model_of(study))[1])

    # the contract takes any digest as the risk model: the audit says when it is not the study's
    policy.set_risk_model(study.admin, study.ledger.address, 1, digest("a model no round made"))
    report = AuditReport("access")
    verify_access(report, policy, model_of(study))
    assert not report.ok and "is not round 1's model" in report.findings[-1].detail
