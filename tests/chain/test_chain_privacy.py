"""privacy_budget.vy in every study contract: LooseStudy (the coordinator anchors each
participant's spend), SemiStudy and FullStudy (each member commits its own, through
rounds.vy). A study without a budget takes no spends; with one, every release is logged
(PrivacySpent), one past the budget is refused (code 15, at no reputation cost) and a malformed
one too (code 8); the consortium's admin may change the budget.

Everything runs on the real embedded EVM.
"""

from dataclasses import replace

import pytest

from fedledger.chain import (
    INITIAL_REPUTATION,
    NO_SPEND,
    EmbeddedChain,
    PrivacySpend,
    SpendRecord,
    LooseStudy,
    spend_problem,
)
from fedledger.chain.records import NO_DIGEST, address_order
from fedledger.errors import TransactionReverted

from .conftest import digest, set_up_study
from .test_chain_rounds import (
    ACCEPTED,
    INVALID_FORMAT,
    KINDS,
    NOT_MEMBER,
    OUT_OF_RANGE,
    OUTLIER,
    Run,
    deploy,
    make_terms,
    refused,
    result,
    set_up_consortium,
    submit,
    vote,
)

PRIVACY_BUDGET = 15
BUDGET = 3_000_000          # epsilon 3, in millionths
DELTA = 10**13              # 1e-5, in 1e-18 units
RATE_SCALE = 10**9          # sample rate 1, in billionths
CONTRACTS = ("ledger", *KINDS)


def spend(epsilon, noise=1_100_000, rate=RATE_SCALE, steps=1):
    return PrivacySpend(noise_multiplier=noise, sample_rate=rate, steps=steps, epsilon=epsilon)


# --- studies without a budget ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_study_without_a_budget_takes_no_spends(embedded, kind):
    run = start_private(embedded, kind, budget=0, delta=0)
    a, b = run.members[:2]
    assert (run.study.epsilon_budget(), run.study.delta()) == (0, 0)

    commit(run, a, NO_SPEND)
    assert run.study.committers(1) == [a.address]
    assert run.study.events("PrivacySpent") == [] and run.study.events("CommitRejected") == []

    reputations = run.reputations()
    for bad in (spend(1_000_000), PrivacySpend(1, 0, 0, 0), PrivacySpend(0, 1, 0, 0), PrivacySpend(0, 0, 1, 0),
                PrivacySpend(0, 0, 0, 1)):
        receipt = commit(run, b, bad)
        assert receipt["status"] == 1
        assert run.study.commit_rejections(1, receipt["blockNumber"]) == \
            [(b.address, run.update(b, 1), INVALID_FORMAT)], bad
        assert spend_problem(bad, 0, 0) == INVALID_FORMAT
    assert run.study.committers(1) == [a.address]
    assert run.study.events("PrivacySpent") == []
    assert run.study.epsilon_spent(a.address) == run.study.epsilon_spent(b.address) == 0
    assert run.reputations() == reputations and run.study.events("ReputationChanged") == []
    commit(run, b, NO_SPEND)                                   # the refusals stored nothing
    assert run.study.committers(1) == [a.address, b.address]


def test_a_ledger_without_a_budget_takes_no_spends(embedded):
    s = set_up_study(embedded)
    ledger, (i0, i1, i2, i3) = s.ledger, s.institutions
    assert (ledger.epsilon_budget(), ledger.delta()) == (0, 0)
    participants = [i0.address, i1.address]
    base = s.record(1, digest("model 0"), participants, [(i2.address, digest("x"), OUTLIER)])
    for changes in ({"spends": tuple((p, spend(1_000_000)) for p in participants)},
                    {"spends": tuple((p, NO_SPEND) for p in participants)},    # empty ones are still spends
                    {"participants": (), "rejected_spends": ((i2.address, spend(1_000_000)),)}):
        with refused("StudyLedger.anchor_round", "one privacy spend per participant and rejection"):
            ledger.anchor_round(s.coordinator, replace(base, **changes))
        assert ledger.round_count() == 0
    ledger.anchor_round(s.coordinator, s.record(1, digest("model 0"), participants, [(i3.address, digest("x"), OUTLIER)]))
    assert ledger.round_count() == 1 and ledger.events("PrivacySpent") == []
    assert ledger.get_round(1).spends == ledger.get_round(1).rejected_spends == ()
    assert ledger.epsilon_spent(i0.address) == 0


# --- commitments in a study with a budget ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_accepted_commit_logs_its_spend(embedded, kind):
    run = start_private(embedded, kind)
    a, b = run.members[:2]
    assert (run.study.epsilon_budget(), run.study.delta()) == (BUDGET, DELTA)
    released = spend(1_500_000, noise=1_100_000, rate=20_000_000, steps=50)

    receipt = commit(run, a, released)
    assert run.study.committers(1) == [a.address]
    (event,) = run.study.events("PrivacySpent")
    assert event == {"round_number": 1, "member": a.address, "noise_multiplier": 1_100_000,
                     "sample_rate": 20_000_000, "steps": 50, "epsilon": 1_500_000, "block": receipt["blockNumber"]}
    assert run.study.privacy_spends(1) == [SpendRecord(1, a.address, released)]
    assert run.study.privacy_spends(2) == []
    assert run.study.epsilon_spent(a.address) == 1_500_000 and run.study.epsilon_spent(b.address) == 0
    assert [e["event"] for e in run.study.all_events() if e["block"] == receipt["blockNumber"]] == \
        ["PrivacySpent", "UpdateCommitted"]
    assert run.study.events("CommitRejected") == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_spend_up_to_the_budget_is_accepted_one_above_is_refused(embedded, kind):
    run = start_private(embedded, kind)
    a, b = run.members[:2]
    commit(run, a, spend(BUDGET))                                       # exactly the budget
    assert run.study.epsilon_spent(a.address) == BUDGET

    reputations = run.reputations()
    receipt = commit(run, b, spend(BUDGET + 1))
    assert receipt["status"] == 1
    assert run.study.commit_rejections(1) == [(b.address, run.update(b, 1), PRIVACY_BUDGET)]
    assert run.study.committers(1) == [a.address]
    assert run.study.epsilon_spent(b.address) == 0
    assert [r.member for r in run.study.privacy_spends(1)] == [a.address]
    assert run.reputations() == reputations
    assert run.study.events("ReputationChanged", from_block=receipt["blockNumber"]) == []

    commit(run, b, spend(BUDGET))                                       # within it, b may still commit
    assert run.study.committers(1) == [a.address, b.address] and run.study.epsilon_spent(b.address) == BUDGET


@pytest.mark.parametrize("kind", KINDS)
def test_spends_accumulate_over_rounds_and_a_budget_rejection_costs_nothing(embedded, kind):
    """A result may reject a committed update for the budget (code 15): recorded, no penalty, and
    its release still counts; the next round's spend must go above it."""
    run = start_private(embedded, kind)
    m0, m1 = run.members[:2]
    for member in run.members:
        commit(run, member, spend(1_000_000))
    receipt = finish_round(run, [PRIVACY_BUDGET] + [ACCEPTED] * (len(run.members) - 1))
    assert run.study.rejections(1) == [(m0.address, run.update(m0, 1), PRIVACY_BUDGET)]
    moves = [(e["member"], e["reason"]) for e in run.study.events("ReputationChanged", 1)]
    own = [reason for member, reason in moves if member == m0.address]
    assert set(own) <= {"agreed"}                                  # as a voter, if it voted; nothing for its update
    assert run.study.reputation(m0.address) == INITIAL_REPUTATION + len(own)
    assert [m for m, reason in moves if reason.startswith("update")] == [m.address for m in run.members[1:]]
    assert run.study.epsilon_spent(m0.address) == 1_000_000        # its release counts all the same
    assert run.study.events("UpdateRejected", 1)[0]["block"] == receipt["blockNumber"]

    stale = commit(run, m0, spend(1_000_000))
    assert run.study.commit_rejections(2, stale["blockNumber"]) == [(m0.address, run.update(m0, 2), INVALID_FORMAT)]
    commit(run, m0, spend(2_000_000))
    commit(run, m1, spend(1_000_001, noise=1, rate=RATE_SCALE, steps=1))    # noise 1, one step, the least increase
    assert run.study.committers(2) == [m0.address, m1.address]
    assert run.study.privacy_spends(2) == [SpendRecord(2, m0.address, spend(2_000_000)),
                                           SpendRecord(2, m1.address, spend(1_000_001, noise=1))]
    assert [(r.round, r.member) for r in run.study.privacy_spends()] == \
        [(1, m.address) for m in run.members] + [(2, m0.address), (2, m1.address)]
    assert (run.study.epsilon_spent(m0.address), run.study.epsilon_spent(m1.address)) == (2_000_000, 1_000_001)


@pytest.fixture(scope="module", params=KINDS)
def second_round(request):
    """Round 1 finalized with every member's spend at epsilon 1; round 2 open. Refused commits
    leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    run = start_private(chain, request.param)
    for member in run.members:
        commit(run, member, spend(1_000_000))
    finish_round(run)
    assert [run.study.epsilon_spent(m.address) for m in run.members] == [1_000_000] * len(run.members)
    yield run
    chain.close()


COMMIT_REFUSED = {   # case: (run -> (sender, spend, commit kwargs), reason code); member 1 spent epsilon 1
    "epsilon equal to the spent one": (lambda r: (r.members[1], spend(1_000_000), {}), INVALID_FORMAT),
    "epsilon below the spent one": (lambda r: (r.members[1], spend(999_999), {}), INVALID_FORMAT),
    "no spend": (lambda r: (r.members[1], NO_SPEND, {}), INVALID_FORMAT),
    "zero noise": (lambda r: (r.members[1], spend(2_000_000, noise=0), {}), INVALID_FORMAT),
    "zero sample rate": (lambda r: (r.members[1], spend(2_000_000, rate=0), {}), INVALID_FORMAT),
    "sample rate above 1": (lambda r: (r.members[1], spend(2_000_000, rate=RATE_SCALE + 1), {}), INVALID_FORMAT),
    "zero steps": (lambda r: (r.members[1], spend(2_000_000, steps=0), {}), INVALID_FORMAT),
    "malformed and past the budget": (lambda r: (r.members[1], spend(BUDGET + 1, steps=0), {}), INVALID_FORMAT),
    "past the budget": (lambda r: (r.members[1], spend(BUDGET + 1), {}), PRIVACY_BUDGET),
    "far past the budget": (lambda r: (r.members[1], spend(2**256 - 1), {}), PRIVACY_BUDGET),
    "empty update digest, valid spend": (lambda r: (r.members[1], spend(2_000_000), {"update": NO_DIGEST}),
                                         INVALID_FORMAT),
    "zero samples, past the budget": (lambda r: (r.members[1], spend(BUDGET + 1), {"samples": 0}), OUT_OF_RANGE),
    "outsider, valid spend": (lambda r: (r.s.outsider, spend(1_000_000), {}), NOT_MEMBER),
}


@pytest.mark.parametrize("case", COMMIT_REFUSED)
def test_refused_spend_is_recorded_with_its_reason(second_round, case):
    """No revert: a CommitRejected record; nothing stored, nothing spent, no reputation moved."""
    run = second_round
    make, code = COMMIT_REFUSED[case]
    sender, released, kwargs = make(run)
    spent = run.study.epsilon_spent(sender.address)
    reputations = run.reputations()
    receipt = commit(run, sender, released, **kwargs)
    assert receipt["status"] == 1
    update = kwargs.get("update", run.update(sender, 2))
    assert run.study.commit_rejections(2, receipt["blockNumber"]) == \
        [(sender.address, None if update == NO_DIGEST else update, code)]
    assert run.study.events("PrivacySpent", from_block=receipt["blockNumber"]) == []
    assert run.study.events("UpdateCommitted", from_block=receipt["blockNumber"]) == []
    assert run.study.committers(2) == []
    assert run.study.epsilon_spent(sender.address) == spent
    assert run.reputations() == reputations
    assert run.study.events("ReputationChanged", from_block=receipt["blockNumber"]) == []
    if code in (INVALID_FORMAT, PRIVACY_BUDGET) and not kwargs:     # what the coordinator's check says too
        assert spend_problem(released, spent, BUDGET) == code


# --- anchors in a ledger with a budget ---------------------------------------------------------


def test_an_anchor_records_each_participants_spend(embedded):
    s = private_ledger(embedded)
    ledger, (i0, i1, i2, i3) = s.ledger, s.institutions
    assert (ledger.epsilon_budget(), ledger.delta()) == (BUDGET, DELTA)
    # Participants and spends in no particular order: the wrapper sorts participants, spends follow their member.
    released = {m.address: spend(1_000_000 + 1000 * n, noise=900_000 + n, rate=10_000_000 * (n + 1), steps=10 + n)
                for n, m in enumerate((i0, i1, i2, i3))}
    unsorted = sorted((i0.address, i1.address, i2.address), key=address_order, reverse=True)
    record = replace(s.record(1, digest("model 0"), [p.lower() for p in unsorted],
                              [(i3.address, digest("far away"), OUTLIER)]),
                     spends=tuple((p.lower(), released[p]) for p in reversed([i1.address, i0.address, i2.address])),
                     rejected_spends=((i3.address, released[i3.address]),))
    receipt = ledger.anchor_round(s.coordinator, record)

    in_order = tuple(sorted(unsorted, key=address_order))
    expected = replace(record, participants=in_order, spends=tuple((p, released[p]) for p in in_order))
    assert ledger.get_round(1) == expected
    assert ledger.anchored_rounds() == [(expected, receipt["blockNumber"])]
    assert [(e["round_number"], e["member"], e["noise_multiplier"], e["sample_rate"], e["steps"], e["epsilon"],
             e["block"]) for e in ledger.events("PrivacySpent")] == \
        [(1, m, *released[m].as_args(), receipt["blockNumber"]) for m in (*in_order, i3.address)]
    assert {m: ledger.epsilon_spent(m) for m in released} == {m: x.epsilon for m, x in released.items()}
    assert ledger.reputation(i3.address) == INITIAL_REPUTATION - 20           # its content, not its spend

    # A spend of exactly the budget is accepted.
    second = replace(s.record(2, record.model, [i0.address]), spends=((i0.address, spend(BUDGET)),))
    ledger.anchor_round(s.coordinator, second)
    assert ledger.get_round(2).spends == ((i0.address, spend(BUDGET)),)
    assert ledger.epsilon_spent(i0.address) == BUDGET and ledger.round_count() == 2


@pytest.mark.parametrize("budget", [BUDGET, 0], ids=["with a budget", "without a budget"])
def test_a_ledger_rejection_for_the_budget_costs_no_reputation(embedded, budget):
    s = private_ledger(embedded, budget=budget, delta=DELTA if budget else 0)
    ledger, (i0, i1, i2, i3) = s.ledger, s.institutions
    participants = [i0.address, i1.address, i2.address]
    record = s.record(1, digest("model 0"), participants, [(i3.address, digest("too much"), PRIVACY_BUDGET)])
    if budget:
        record = replace(record, spends=tuple((p, spend(1_000_000)) for p in participants))
    ledger.anchor_round(s.coordinator, record)
    assert ledger.rejections(1) == [(i3.address, digest("too much"), PRIVACY_BUDGET)] == list(ledger.get_round(1).rejected)
    assert [e for e in ledger.events("ReputationChanged") if e["member"] == i3.address] == []
    assert ledger.reputation(i3.address) == ledger.stored_reputation(i3.address) == INITIAL_REPUTATION
    assert ledger.epsilon_spent(i3.address) == 0 and ledger.get_round(1).rejected_spends == ()

    rejected = ((i3.address, digest("too much"), 19),)
    with refused("StudyLedger.anchor_round", "reason code must be 1..18"):
        ledger.anchor_round(s.coordinator, replace(s.record(2, record.model, participants, rejected),
                                                   spends=tuple((p, spend(2_000_000)) for p in participants)
                                                   if budget else ()))
    assert ledger.round_count() == 1


@pytest.fixture(scope="module")
def anchored_once():
    """A ledger with a budget and round 1 anchored, every institution at epsilon 1; refused
    anchors leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    s = private_ledger(chain)
    participants = [i.address for i in s.institutions]
    s.ledger.anchor_round(s.coordinator, replace(s.record(1, digest("model 0"), participants),
                                                 spends=tuple((p, spend(1_000_000)) for p in participants)))
    yield s
    chain.close()


ANCHOR_REFUSED = {   # case: (study -> round 2 record, reason); every institution spent epsilon 1
    "participant past the budget": (lambda s: _round2(s, {1: spend(BUDGET + 1)}), "participant past its privacy budget"),
    "participant far past the budget": (lambda s: _round2(s, {3: spend(2**256 - 1)}),
                                        "participant past its privacy budget"),
    "epsilon equal to the spent one": (lambda s: _round2(s, {1: spend(1_000_000)}), "malformed privacy spend"),
    "epsilon below the spent one": (lambda s: _round2(s, {0: spend(1)}), "malformed privacy spend"),
    "empty spend of a participant": (lambda s: _round2(s, {2: NO_SPEND}), "malformed privacy spend"),
    "zero noise": (lambda s: _round2(s, {1: spend(2_000_000, noise=0)}), "malformed privacy spend"),
    "zero sample rate": (lambda s: _round2(s, {1: spend(2_000_000, rate=0)}), "malformed privacy spend"),
    "sample rate above 1": (lambda s: _round2(s, {1: spend(2_000_000, rate=RATE_SCALE + 1)}),
                            "malformed privacy spend"),
    "zero steps": (lambda s: _round2(s, {1: spend(2_000_000, steps=0)}), "malformed privacy spend"),
    "malformed and past the budget": (lambda s: _round2(s, {1: spend(BUDGET + 1, noise=0, rate=0)}),
                                      "malformed privacy spend"),
    "no spends": (lambda s: replace(_round2(s), spends=()), "one privacy spend per participant and rejection"),
    "rejected institution past the budget": (
        lambda s: _round2(s, people=3, rejected=[(s.institutions[3].address, digest("x"), OUTLIER)],
                          rejected_spends={3: spend(BUDGET + 1)}), "rejected member past its privacy budget"),
    "rejected institution's epsilon not above its spent": (
        lambda s: _round2(s, people=3, rejected=[(s.institutions[3].address, digest("x"), OUTLIER)],
                          rejected_spends={3: spend(1_000_000)}), "malformed privacy spend"),
    "rejected institution's spend with zero steps": (
        lambda s: _round2(s, people=3, rejected=[(s.institutions[3].address, digest("x"), OUTLIER)],
                          rejected_spends={3: spend(2_000_000, steps=0)}), "malformed privacy spend"),
    "rejected outsider with a spend": (
        lambda s: replace(_round2(s, rejected=[(s.outsider.address, digest("x"), NOT_MEMBER)]),
                          rejected_spends=((s.outsider.address, spend(1_000_000)),)),
        "privacy spend of a non-institution"),
    "rejection with reason 19": (lambda s: _round2(s, rejected=[(s.outsider.address, None, 19)]),
                                 "reason code must be 1..18"),
}


@pytest.mark.parametrize("case", ANCHOR_REFUSED)
def test_refused_anchor_stores_nothing(anchored_once, case):
    s = anchored_once
    make, reason = ANCHOR_REFUSED[case]
    transactions = s.backend.stats.transactions
    with refused("StudyLedger.anchor_round", reason):
        s.ledger.anchor_round(s.coordinator, make(s))
    assert s.backend.stats.transactions == transactions
    assert s.ledger.round_count() == 1 and s.ledger.latest_model() == digest("model 1")
    assert [s.ledger.epsilon_spent(i.address) for i in s.institutions] == [1_000_000] * 4
    assert len(s.ledger.events("PrivacySpent")) == 4


def test_a_malformed_spend_of_a_rejected_member_is_refused(embedded):
    """Only the empty spend (all four fields 0) means "nothing to record" for a rejection: a
    non-empty one with zero noise (here epsilon 5, sample rate 1, one step) is refused as
    malformed, as it would be for a participant, rather than skipped."""
    s = private_ledger(embedded)
    i0, i3 = s.institutions[0], s.institutions[3]
    record = replace(s.record(1, digest("model 0"), [i0.address], [(i3.address, digest("x"), OUTLIER)]),
                     spends=((i0.address, spend(1_000_000)),),
                     rejected_spends=((i3.address, PrivacySpend(0, RATE_SCALE, 1, 5_000_000)),))
    with refused("StudyLedger.anchor_round", "malformed privacy spend"):
        s.ledger.anchor_round(s.coordinator, record)
    assert s.ledger.round_count() == 0


def test_contract_itself_requires_one_spend_per_participant_and_rejection(anchored_once):
    """The wrapper sends one spend per participant and rejection; the contract checks the count for any client."""
    s = anchored_once
    r = _round2(s)
    participants = sorted((i.address for i in s.institutions), key=address_order)
    head = (2, bytes.fromhex(r.parent_model), bytes.fromhex(r.model), bytes.fromhex(r.updates_root), participants,
            bytes.fromhex(r.metrics_digest), bytes.fromhex(r.manifest_digest))
    one = spend(2_000_000).as_args()
    rejection = ([s.outsider.address], [bytes(32)], [NOT_MEMBER], [(0, b"")])
    for rejected, count in ((([], [], [], []), 3), (([], [], [], []), 5), (rejection, 4), (rejection, 6)):
        fn = s.ledger.contract.functions.anchor_round(*head, *rejected, [one] * count)
        with pytest.raises(TransactionReverted, match="one privacy spend per participant and rejection"):
            s.backend.transact(s.coordinator, fn)
    assert s.ledger.round_count() == 1
    # An empty spend for a rejection is how "nothing to record" is said: accepted, nothing spent.
    s.backend.transact(s.coordinator, s.ledger.contract.functions.anchor_round(*head, *rejection,
                                                                               [one] * 4 + [NO_SPEND.as_args()]))
    assert s.ledger.round_count() == 2
    assert s.ledger.epsilon_spent(s.outsider.address) == 0 and len(s.ledger.privacy_spends(2)) == 4
    assert s.ledger.get_round(2).rejected_spends == ()


# --- governance ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONTRACTS)
def test_the_admin_changes_the_budget(embedded, kind):
    s, study = deploy_any(embedded, kind, BUDGET, DELTA)
    label = f"{study.contract_name}.set_privacy_budget"
    for sender in (s.coordinator, s.institutions[0], s.outsider):
        with refused(label, "only the consortium admin"):
            study.set_privacy_budget(sender, 5_000_000)
    with refused(label, "a privacy budget cannot be switched off"):
        study.set_privacy_budget(s.admin, 0)
    assert study.epsilon_budget() == BUDGET and study.events("PrivacyBudgetChanged") == []

    raised = study.set_privacy_budget(s.admin, 5_000_000)
    assert study.epsilon_budget() == 5_000_000
    lowered = study.set_privacy_budget(s.admin, 1)
    assert (study.epsilon_budget(), study.delta()) == (1, DELTA)
    assert study.events("PrivacyBudgetChanged") == [
        {"before": BUDGET, "after": 5_000_000, "admin": s.admin.address, "block": raised["blockNumber"]},
        {"before": 5_000_000, "after": 1, "admin": s.admin.address, "block": lowered["blockNumber"]}]


@pytest.mark.parametrize("kind", CONTRACTS)
def test_a_study_without_a_budget_cannot_be_given_one(embedded, kind):
    s, study = deploy_any(embedded, kind, 0, 0)
    label = f"{study.contract_name}.set_privacy_budget"
    with refused(label, "only the consortium admin"):
        study.set_privacy_budget(s.coordinator, BUDGET)
    with refused(label, "the study has no privacy budget"):
        study.set_privacy_budget(s.admin, BUDGET)
    assert study.epsilon_budget() == 0 and study.events("PrivacyBudgetChanged") == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_changed_budget_applies_to_the_next_commit(embedded, kind):
    run = start_private(embedded, kind)
    a, b, c = run.members[:3]
    commit(run, a, spend(2_000_000))
    run.study.set_privacy_budget(run.s.admin, 1_500_000)
    over = commit(run, b, spend(2_000_000))
    assert run.study.commit_rejections(1, over["blockNumber"]) == [(b.address, run.update(b, 1), PRIVACY_BUDGET)]
    commit(run, b, spend(1_500_000))
    run.study.set_privacy_budget(run.s.admin, 4_000_000)
    commit(run, c, spend(4_000_000))                                      # above the first budget
    assert run.study.committers(1) == [a.address, b.address, c.address]
    assert [r.spend.epsilon for r in run.study.privacy_spends(1)] == [2_000_000, 1_500_000, 4_000_000]
    assert run.study.epsilon_spent(a.address) == 2_000_000               # spent before the change: kept


def test_a_changed_budget_applies_to_the_next_anchor(embedded):
    s = private_ledger(embedded)
    ledger, people = s.ledger, [i.address for i in s.institutions]
    ledger.anchor_round(s.coordinator, replace(s.record(1, digest("model 0"), people),
                                               spends=tuple((p, spend(2_000_000)) for p in people)))
    ledger.set_privacy_budget(s.admin, 2_500_000)
    record = replace(s.record(2, digest("model 1"), people), spends=tuple((p, spend(2_600_000)) for p in people))
    with refused("StudyLedger.anchor_round", "participant past its privacy budget"):
        ledger.anchor_round(s.coordinator, record)
    assert ledger.round_count() == 1
    ledger.set_privacy_budget(s.admin, 2_600_000)
    ledger.anchor_round(s.coordinator, record)
    assert ledger.round_count() == 2 and [ledger.epsilon_spent(p) for p in people] == [2_600_000] * 4


# --- deployment ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def consortium():
    """A consortium for refused deployments, which leave no trace, so it is shared."""
    chain = EmbeddedChain.create(None)
    yield set_up_consortium(chain, 4)
    chain.close()


DEPLOY_REFUSED = {   # case: (epsilon_budget, delta, reason)
    "epsilon without delta": (BUDGET, 0, "a privacy budget needs both epsilon and delta"),
    "delta without epsilon": (0, DELTA, "a privacy budget needs both epsilon and delta"),
    "delta of 1": (BUDGET, 10**18, "delta must be below 1"),
    "delta above 1": (BUDGET, 2**256 - 1, "delta must be below 1"),
}


@pytest.mark.parametrize("kind", CONTRACTS)
@pytest.mark.parametrize("case", DEPLOY_REFUSED)
def test_refused_budget_at_deployment(consortium, case, kind):
    budget, delta, reason = DEPLOY_REFUSED[case]
    name = {"ledger": "StudyLedger", "committee": "CommitteeStudy", "consensus": "ConsensusStudy"}[kind]
    head = consortium.backend.block_number()
    with refused(f"{name}.constructor", reason):
        deploy_any(consortium.backend, kind, budget, delta, s=consortium)
    assert consortium.backend.block_number() == head


@pytest.mark.parametrize("kind", CONTRACTS)
def test_boundary_budget_at_deployment(consortium, kind):
    _, study = deploy_any(consortium.backend, kind, 1, 10**18 - 1, s=consortium)
    assert (study.epsilon_budget(), study.delta()) == (1, 10**18 - 1)


# --- harness -----------------------------------------------------------------------------------


def start_private(backend, kind, *, budget=BUDGET, delta=DELTA, institutions=4) -> Run:
    """A SemiStudy (committees of 3) or FullStudy with a privacy budget, round 1 open."""
    s = set_up_consortium(backend, institutions)
    terms = replace(make_terms(s), epsilon_budget=budget, delta=delta)
    return Run(s, deploy(s, kind, terms), list(s.institutions))


def private_ledger(backend, *, budget=BUDGET, delta=DELTA):
    """conftest's study, its ledger deployed with a privacy budget and started."""
    s = set_up_study(backend, ledger=False)
    s.ledger = LooseStudy.deploy(backend, s.admin, s.consortium, 0, budget, delta)
    s.ledger.start_study(s.coordinator, digest("config"), digest("model 0"))
    return s


def deploy_any(backend, kind, budget, delta, s=None):
    """(study, wrapper): a LooseStudy ("ledger") or a round study with the given budget."""
    if kind == "ledger":
        s = set_up_study(backend, ledger=False) if s is None else s
        return s, LooseStudy.deploy(backend, s.admin, s.consortium, 0, budget, delta)
    s = set_up_consortium(backend, 4) if s is None else s
    return s, deploy(s, kind, replace(make_terms(s), epsilon_budget=budget, delta=delta))


def commit(run, member, released, round=None, *, update=None, samples=10):
    """`member` commits its update for the open round (or `round`) with privacy spend `released`."""
    round = run.study.open_round() if round is None else round
    return run.study.commit_update(member, round, run.study.latest_model(),
                                   run.update(member, round) if update is None else update, samples,
                                   digest(f"metrics {round} {member.address}"), released)


def finish_round(run, reasons=None):
    """Close the open round (every member committed) and finalize it with `reasons` (each
    committed update aggregated unless given); the finalizing receipt."""
    round = run.study.open_round()
    committers = run.study.committers(round)
    reasons = [ACCEPTED] * len(committers) if reasons is None else reasons
    run.study.close_commits(run.members[0], round)
    receipt = None
    if run.name == "CommitteeStudy":
        attempt = run.study.attempt()
        for address in run.study.committee(round, attempt):
            if run.study.round_count() < round:
                receipt = submit(run, run.account(address), round, attempt, *result(round), reasons)
    else:
        for member in run.members:
            run.study.submit_scores(member, round, [800_000] * len(committers))
        run.study.close_scores(run.members[0], round)
        rewards = [0 if code else 1 for code in reasons]
        for member in run.members:
            if run.study.round_count() < round:
                receipt = vote(run, member, round, rewards=rewards, reasons=reasons)
    assert run.study.round_count() == round, "the round did not finalize"
    return receipt


def _round2(s, overrides=None, *, people=4, rejected=(), rejected_spends=None):
    """A round 2 record of the first `people` institutions, each spending epsilon 2 unless
    `overrides` ({institution index: spend}) says otherwise; `rejected_spends` likewise by index."""
    participants = [i.address for i in s.institutions[:people]]
    spends = {p: spend(2_000_000) for p in participants}
    spends.update({s.institutions[n].address: x for n, x in (overrides or {}).items()})
    return replace(s.record(2, digest("model 1"), participants, rejected), spends=tuple(spends.items()),
                   rejected_spends=tuple((s.institutions[n].address, x) for n, x in (rejected_spends or {}).items()))
