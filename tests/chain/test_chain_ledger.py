"""StudyLedger.vy: anchoring rounds, chain continuity, rejection records and the reputation
policy, and every way an anchor is refused."""

from dataclasses import replace

import pytest
from eth_account import Account
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedledger.chain import (
    INITIAL_REPUTATION,
    Consortium,
    EmbeddedChain,
    Rejection,
    Role,
    LooseStudy,
)
from fedledger.crypto import UpdateCommitment, sign_commitment
from fedledger.errors import ChainError, TransactionReverted

from fedledger.validation import Reason, penalized

from .conftest import FUNDS, digest, set_up_study

# Reason codes (fedledger/validation/reasons.py)
NOT_MEMBER, SUSPENDED, DUPLICATE, BAD_SIGNATURE, MISSING, OUTLIER = 1, 2, 4, 5, 6, 13


def test_anchored_rounds_read_back_in_order(study):
    ledger, coordinator = study.ledger, study.coordinator
    assert (ledger.config_digest(), ledger.initial_model()) == (digest("config"), digest("model 0"))
    assert ledger.coordinator() == coordinator.address
    assert ledger.round_count() == 0

    parent, records, blocks = digest("model 0"), [], []
    rejected = {2: ((study.outsider.address, digest("forged"), BAD_SIGNATURE),
                    (study.institutions[0].address, None, MISSING),
                    (study.institutions[0].address, digest("again"), DUPLICATE))}
    for n in (1, 2, 3):
        # The caller need not sort participants: the wrapper sends them in address order.
        record = study.record(n, parent, participants=[i.address.lower() for i in reversed(study.institutions)],
                              rejected=rejected.get(n, ()))
        blocks.append(ledger.anchor_round(coordinator, record)["blockNumber"])
        records.append(record)
        parent = record.model

    in_order = tuple(sorted((i.address for i in study.institutions), key=lambda a: int(a, 16)))
    expected = [replace(r, participants=in_order) for r in records]
    assert ledger.round_count() == 3
    assert [ledger.get_round(n) for n in (1, 2, 3)] == expected
    assert ledger.anchored_rounds() == list(zip(expected, blocks, strict=True))
    assert ledger.latest_model() == records[-1].model
    assert ledger.rejections(2) == list(rejected[2]) and ledger.rejections(1) == ledger.rejections(3) == []
    assert all(isinstance(r, Rejection) for r in ledger.get_round(2).rejected)


def test_anchor_with_four_participants_costs_one_transaction(study):
    stats = study.backend.stats
    before = (stats.transactions, stats.gas_used, stats.calldata_bytes)
    receipt = study.ledger.anchor_round(study.coordinator, study.record(1, digest("model 0")))
    assert stats.transactions == before[0] + 1
    assert stats.gas_used - before[1] == receipt["gasUsed"]
    assert 21_000 < receipt["gasUsed"] < 550_000   # measured 455k: the first anchor meets every participant
    # selector, 11 head words, 4 participants with their length, 4 empty rejection arrays (their lengths)
    assert stats.calldata_bytes - before[2] == 4 + 32 * (12 + 1 + 4 + 5)


@pytest.fixture(scope="module")
def one_round():
    """A study with round 1 anchored; the refused anchors below leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    study = set_up_study(chain)
    study.ledger.anchor_round(study.coordinator, study.record(1, digest("model 0")))
    auditor = Account.create()   # a member, but not an institution
    study.consortium.add_member(study.admin, auditor.address, "auditor", Role.AUDITOR)
    yield study, auditor
    chain.close()


def _round2(study, **changes):
    """A valid record for round 2, with `changes` applied."""
    return replace(study.record(2, digest("model 1")), **changes)


def _with(study, *others):
    return (study.institutions[0].address, *others)


REFUSED = {   # case: (sender and record, reason)
    "sender is an institution": (lambda s, a: (s.institutions[0], _round2(s)), "only the study coordinator"),
    "sender is the admin": (lambda s, a: (s.admin, _round2(s)), "only the study coordinator"),
    "skips a round": (lambda s, a: (s.coordinator, _round2(s, round=3)), "wrong round number"),
    "replays round 1": (lambda s, a: (s.coordinator, s.record(1, digest("model 0"))), "wrong round number"),
    "forks from an older model": (lambda s, a: (s.coordinator, _round2(s, parent_model=digest("model 0"))),
                                  "parent is not the latest model"),
    "outsider participates": (lambda s, a: (s.coordinator, _round2(s, participants=_with(s, s.outsider.address))),
                              "participant is not an institution"),
    "auditor participates": (lambda s, a: (s.coordinator, _round2(s, participants=_with(s, a.address))),
                             "participant is not an institution"),
    "coordinator participates": (lambda s, a: (s.coordinator,
                                               _round2(s, participants=_with(s, s.coordinator.address))),
                                 "participant is not an institution"),
    "duplicate participant": (lambda s, a: (s.coordinator, _round2(s, participants=_with(
        s, s.institutions[1].address, s.institutions[0].address))),
                              r"participants not strictly increasing \(duplicate\?\)"),
    "empty model digest": (lambda s, a: (s.coordinator, _round2(s, model="00" * 32)), "empty model digest"),
    "rejection with reason 0": (lambda s, a: (s.coordinator, _round2(s, rejected=((a.address, None, 0),))),
                                r"reason code must be 1\.\.18"),
    "rejection with reason 19": (lambda s, a: (s.coordinator, _round2(s, rejected=(
        (a.address, digest("x"), OUTLIER), (s.outsider.address, digest("y"), 19)))), r"reason code must be 1\.\.18"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_anchor_surfaces_the_reason(one_round, case):
    study, auditor = one_round
    make, reason = REFUSED[case]
    sender, record = make(study, auditor)
    transactions = study.backend.stats.transactions
    with pytest.raises(TransactionReverted, match=rf"^StudyLedger\.anchor_round reverted: {reason}$"):
        study.ledger.anchor_round(sender, record)
    assert study.backend.stats.transactions == transactions
    assert study.ledger.round_count() == 1


def test_contract_itself_requires_increasing_addresses(one_round):
    """The wrapper sorts; the contract enforces the order for any other client."""
    study, _ = one_round
    unsorted = sorted((i.address for i in study.institutions), key=lambda a: int(a, 16), reverse=True)
    r = _round2(study)
    fn = study.ledger.contract.functions.anchor_round(
        2, bytes.fromhex(r.parent_model), bytes.fromhex(r.model), bytes.fromhex(r.updates_root), unsorted,
        bytes.fromhex(r.metrics_digest), bytes.fromhex(r.manifest_digest), [], [], [], [], [])
    with pytest.raises(TransactionReverted, match="participants not strictly increasing"):
        study.backend.transact(study.coordinator, fn)


def test_malformed_digest_is_refused_before_sending(one_round):
    study, _ = one_round
    with pytest.raises(ValueError, match="64 lowercase hex"):
        study.ledger.anchor_round(study.coordinator, _round2(study, model="0x" + "ab" * 32))


def test_study_must_be_started_once_by_a_coordinator(embedded):
    s = set_up_study(embedded, start=False)
    assert s.ledger.coordinator() == "0x" + "00" * 20
    with pytest.raises(TransactionReverted, match="study not started"):
        s.ledger.anchor_round(s.coordinator, s.record(1, digest("model 0")))
    with pytest.raises(TransactionReverted, match="caller is not a coordinator"):
        s.ledger.start_study(s.institutions[0], digest("config"), digest("model 0"))
    with pytest.raises(TransactionReverted, match="empty config digest"):
        s.ledger.start_study(s.coordinator, "00" * 32, digest("model 0"))
    s.ledger.start_study(s.coordinator, digest("config"), digest("model 0"))
    with pytest.raises(TransactionReverted, match="study already started"):
        s.ledger.start_study(s.coordinator, digest("other config"), digest("model 0"))


def test_membership_changes_take_effect_on_the_next_anchor(study):
    s = study
    leaver = s.institutions[0]
    s.consortium.remove_member(s.admin, leaver.address)
    with pytest.raises(TransactionReverted, match="participant is not an institution"):
        s.ledger.anchor_round(s.coordinator, s.record(1, digest("model 0")))
    remaining = [i.address for i in s.institutions[1:]]
    s.ledger.anchor_round(s.coordinator, s.record(1, digest("model 0"), participants=remaining))

    s.consortium.set_roles(s.admin, s.coordinator.address, Role.AUDITOR)
    with pytest.raises(TransactionReverted, match="coordinator role revoked"):
        s.ledger.anchor_round(s.coordinator, s.record(2, digest("model 1"), participants=remaining))


def test_reading_a_missing_round_or_a_wrong_address_fails_clearly(study):
    with pytest.raises(TransactionReverted, match=r"StudyLedger\.get_round reverted: no such round"):
        study.ledger.get_round(1)
    with pytest.raises(ChainError, match="no contract at"):
        LooseStudy(study.backend, study.outsider.address)


def test_an_unfunded_sender_is_told_to_fund_its_account(embedded):
    broke = Account.create()
    with pytest.raises(ChainError, match=rf"^Consortium\.constructor: {broke.address} holds too little ether"):
        Consortium.deploy(embedded, broke)


# --- rejection records and the reputation policy -----------------------------------------------


def _changes(ledger, round=None):
    return [(e["member"], e["before"], e["after"], e["reason"]) for e in ledger.events("ReputationChanged", round)]


def test_anchors_record_rejections_and_move_reputation(study):
    ledger, (i0, i1, i2, i3), outsider = study.ledger, study.institutions, study.outsider
    assert ledger.suspension_threshold() == 0
    # Before any anchor names them, institutions stand at the initial reputation; others at 0.
    assert [ledger.reputation(i.address) for i in (i0, i3)] == [INITIAL_REPUTATION] * 2
    assert ledger.stored_reputation(i0.address) == 0 and ledger.reputation(outsider.address) == 0

    rejected = ((i3.address, digest("far away"), OUTLIER), (outsider.address, None, NOT_MEMBER),
                (i0.address, digest("second"), DUPLICATE))
    participants = [i0.address, i1.address, i2.address]
    receipt = ledger.anchor_round(study.coordinator, study.record(1, digest("model 0"), participants, rejected))

    in_order = sorted(participants, key=lambda a: int(a, 16))
    assert _changes(ledger, 1) == [(p, 100, 101, "update accepted") for p in in_order] + [
        (i3.address, 100, 80, "update rejected"),               # an institution is penalized for its content
    ]   # a duplicate is recorded without a penalty (anyone can claim an address); an outsider has nothing to lose
    events = ledger.events("UpdateRejected")
    assert [(e["round_number"], e["member"], e["update"].hex(), e["reason"], e["block"]) for e in events] == [
        (1, i3.address, digest("far away"), OUTLIER, receipt["blockNumber"]),
        (1, outsider.address, "00" * 32, NOT_MEMBER, receipt["blockNumber"]),
        (1, i0.address, digest("second"), DUPLICATE, receipt["blockNumber"])]
    assert ledger.rejections(1) == list(rejected) == list(ledger.get_round(1).rejected)
    assert {i.address: ledger.reputation(i.address) for i in (i0, i1, i2, i3)} == \
        {i0.address: 101, i1.address: 101, i2.address: 101, i3.address: 80}
    assert ledger.stored_reputation(i3.address) == 80
    assert ledger.reputation(outsider.address) == 0 and ledger.stored_reputation(outsider.address) == 0
    assert ledger.events("MemberSuspended") == []


def test_a_round_with_every_update_rejected_is_anchored_without_participants(study):
    s = study
    bad = s.institutions[0]
    s.ledger.anchor_round(s.coordinator, s.record(1, digest("model 0"), [], [(bad.address, digest("nan"), 10)]))
    assert s.ledger.round_count() == 1 and s.ledger.get_round(1).participants == ()
    assert s.ledger.rejections(1) == [(bad.address, digest("nan"), 10)]
    assert s.ledger.reputation(bad.address) == 80


def test_threshold_zero_never_suspends_on_the_ledger(study):
    s, parent = study, digest("model 0")
    loser = s.institutions[0]
    for n in range(1, 7):
        s.ledger.anchor_round(s.coordinator, s.record(n, parent, [i.address for i in s.institutions[1:]],
                                                      [(loser.address, digest(f"bad {n}"), OUTLIER)]))
        parent = digest(f"model {n}")
    assert s.ledger.reputation(loser.address) == 0 and not s.ledger.suspended(loser.address)
    assert s.ledger.events("MemberSuspended") == []
    s.ledger.anchor_round(s.coordinator, s.record(7, parent))      # it may still take part
    assert s.ledger.reputation(loser.address) == 1


def test_suspension_and_reinstatement_on_the_ledger(embedded):
    s = set_up_study(embedded, suspension_threshold=50)
    ledger, coordinator = s.ledger, s.coordinator
    victim, others = s.institutions[3], [i.address for i in s.institutions[:3]]
    assert ledger.suspension_threshold() == 50
    parent, n = digest("model 0"), 0

    def anchor(participants, rejected=()):
        nonlocal parent, n
        n += 1
        receipt = ledger.anchor_round(coordinator, s.record(n, parent, participants, rejected))
        parent = digest(f"model {n}")
        return receipt

    anchor(others, [(victim.address, digest("bad 1"), OUTLIER)])             # 100 -> 80
    anchor(others + [victim.address])                                        # 80 -> 81
    anchor(others, [(victim.address, digest("bad 3"), OUTLIER)])             # 81 -> 61: not below 50
    assert not ledger.suspended(victim.address)
    receipt = anchor(others, [(victim.address, digest("bad 4"), OUTLIER)])   # 61 -> 41: suspended
    assert [(m, b, a, r) for m, b, a, r in _changes(ledger) if m == victim.address] == [
        (victim.address, 100, 80, "update rejected"), (victim.address, 80, 81, "update accepted"),
        (victim.address, 81, 61, "update rejected"), (victim.address, 61, 41, "update rejected")]
    (suspension,) = ledger.events("MemberSuspended")
    assert (suspension["member"], suspension["round_number"], suspension["reputation"], suspension["block"]) == \
        (victim.address, 4, 41, receipt["blockNumber"])
    assert ledger.suspended(victim.address) and ledger.reputation(victim.address) == 41
    assert ledger._view("suspended_count") == 1

    # A suspended institution cannot be a participant; its updates are rejected as SUSPENDED.
    with pytest.raises(TransactionReverted, match=r"^StudyLedger\.anchor_round reverted: participant is suspended$"):
        ledger.anchor_round(coordinator, s.record(5, parent, others + [victim.address]))
    anchor(others, [(victim.address, digest("while suspended"), SUSPENDED)])  # recorded, no further penalty
    assert ledger.rejections(5) == [(victim.address, digest("while suspended"), SUSPENDED)]
    assert len(ledger.events("MemberSuspended")) == 1                       # suspended once

    # Only the consortium's admin re-admits it, with the initial reputation.
    for sender in (coordinator, victim, s.institutions[0], s.outsider):
        with pytest.raises(TransactionReverted, match=r"^StudyLedger\.reinstate reverted: only the consortium admin$"):
            ledger.reinstate(sender, victim.address)
    with pytest.raises(TransactionReverted, match="member is not suspended"):
        ledger.reinstate(s.admin, s.institutions[0].address)
    receipt = ledger.reinstate(s.admin, victim.address)
    assert not ledger.suspended(victim.address) and ledger.reputation(victim.address) == INITIAL_REPUTATION
    assert ledger.rejections(5) and ledger.reputation(victim.address) == INITIAL_REPUTATION
    assert _changes(ledger, 6) == [(victim.address, 41, 100, "reinstated")]   # dated to the open round
    (reinstated,) = ledger.events("MemberReinstated")
    assert (reinstated["member"], reinstated["admin"], reinstated["block"]) == \
        (victim.address, s.admin.address, receipt["blockNumber"])
    assert ledger._view("suspended_count") == 0
    with pytest.raises(TransactionReverted, match="member is not suspended"):
        ledger.reinstate(s.admin, victim.address)
    anchor(others + [victim.address])
    assert ledger.reputation(victim.address) == 101


def test_a_coordinator_cannot_penalize_an_institution_without_its_signature(embedded):
    """A coordinator made up three "missing update" rejections of one hospital in round 1, with
    digests it invented, and had it suspended (issue 14, finding 2). A rejection now costs
    reputation only for a fault shown by an update the institution signed, checked by the
    contract, and at most once per institution and round; MISSING rests on the coordinator's word
    alone and costs nothing."""
    s = set_up_study(embedded, suspension_threshold=50)
    ledger, victim, parent = s.ledger, s.institutions[3], digest("model 0")
    others = [i.address for i in s.institutions[:3]]
    made_up = [(victim.address, digest(f"invented {k}"), MISSING) for k in range(3)]
    ledger.anchor_round(s.coordinator, s.record(1, parent, others, made_up))
    assert ledger.rejections(1) == made_up                                   # recorded, as claimed
    assert ledger.reputation(victim.address) == INITIAL_REPUTATION and not ledger.suspended(victim.address)

    signed = s.record(2, digest("model 1"), others, [(victim.address, digest("real"), OUTLIER)])
    (samples, signature), = signed.evidence
    stranger = Account.create()
    forged = sign_commitment(stranger, UpdateCommitment(embedded.chain_id, ledger.address, 2, digest("model 1"),
                                                        digest("real"), samples))
    other_update = s.record(2, digest("model 1"), others, [(victim.address, digest("another"), OUTLIER)])
    for evidence in ((), ((0, ""),), ((samples, forged),), ((samples + 1, signature),), other_update.evidence):
        with pytest.raises(TransactionReverted, match="a penalty needs the institution's signature"):
            ledger.anchor_round(s.coordinator, replace(signed, evidence=evidence))
    twice = s.record(2, digest("model 1"), others, [(victim.address, digest("real"), OUTLIER),
                                                    (victim.address, digest("another"), OUTLIER)])
    with pytest.raises(TransactionReverted, match="member already penalized this round"):
        ledger.anchor_round(s.coordinator, twice)
    ledger.anchor_round(s.coordinator, signed)                               # the member's own signed update
    assert ledger.reputation(victim.address) == 80 and ledger.round_count() == 2


def test_a_threshold_above_the_initial_reputation_is_refused(embedded):
    s = set_up_study(embedded, ledger=False)
    with pytest.raises(TransactionReverted, match=r"^StudyLedger\.constructor reverted: suspension threshold above "
                                                  r"the initial reputation$"):
        LooseStudy.deploy(embedded, s.admin, s.consortium, INITIAL_REPUTATION + 1)
    assert LooseStudy.deploy(embedded, s.admin, s.consortium, INITIAL_REPUTATION).suspension_threshold() == 100


def test_contract_itself_requires_one_update_and_reason_per_rejection(one_round):
    study, _ = one_round
    r = _round2(study)
    head = (bytes.fromhex(r.parent_model), bytes.fromhex(r.model), bytes.fromhex(r.updates_root),
            sorted((i.address for i in study.institutions), key=lambda a: int(a, 16)),
            bytes.fromhex(r.metrics_digest), bytes.fromhex(r.manifest_digest))
    member, update = study.outsider.address, bytes(32)
    unsigned = (0, b"")
    for rejected, updates, reasons, evidence in (
            ([member], [update], [], [unsigned]), ([member], [], [OUTLIER], [unsigned]),
            ([], [update], [OUTLIER], []), ([member, member], [update], [OUTLIER] * 2, [unsigned] * 2),
            ([member], [update], [OUTLIER], [])):
        fn = study.ledger.contract.functions.anchor_round(2, *head, rejected, updates, reasons, evidence, [])
        with pytest.raises(TransactionReverted, match="one update, one reason and one evidence per rejected member"):
            study.backend.transact(study.coordinator, fn)
    assert study.ledger.round_count() == 1


def test_gas_of_anchor_round_with_rejections(embedded, capsys):
    """gasUsed of anchor_round by participants and rejections (half of them institutions, half
    outsiders). Each shape is anchored twice: "new" meets some institutions for the first time
    (their reputation is initialized), "again" only known ones."""
    s = set_up_study(embedded, institutions=20)
    outsiders = [Account.create().address for _ in range(10)]
    embedded.fund(outsiders, FUNDS)
    table, parent, n = [], digest("model 0"), 0
    for participants, rejections in ((4, 0), (4, 4), (10, 0), (10, 10)):
        people = [i.address for i in s.institutions[:participants]]
        rejected = [(m, digest(f"rejected {j}"), OUTLIER) for j, m in enumerate(
            [i.address for i in s.institutions[participants:participants + rejections // 2]]
            + outsiders[:rejections - rejections // 2])]
        for when in ("new", "again"):
            n += 1
            receipt = s.ledger.anchor_round(s.coordinator, s.record(n, parent, people, rejected))
            parent = digest(f"model {n}")
            table.append((participants, rejections, when, receipt["gasUsed"]))
            assert len(s.ledger.rejections(n)) == rejections
    with capsys.disabled():
        print("\nStudyLedger.anchor_round gas (participants, rejections, anchor)")
        for participants, rejections, when, gas in table:
            print(f"  {participants:>3} participants {rejections:>3} rejected  {when:5} {gas:>9,}")
    bounds = {(4, 0): 550_000, (4, 4): 700_000, (10, 0): 1_000_000, (10, 10): 1_400_000}
    for participants, rejections, _, gas in table:
        assert 21_000 < gas < bounds[(participants, rejections)], (participants, rejections, gas)


# --- a hostile coordinator (hypothesis) ----------------------------------------------------------

EVIDENCE = ["none", "stranger's", "the member's, other samples", "another member's", "the member's"]


def test_a_hostile_coordinator_never_penalizes_without_the_members_signature(embedded):
    """Whatever rejections a coordinator anchors (any member, digest, code and evidence), the
    contract either refuses the round or costs reputation only to members whose own signature
    over the rejected update it was shown, for a code a signed update can show, once each: the
    hostile-participant property, for coordinators."""
    rejection = st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 17), st.sampled_from(EVIDENCE))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rejections=st.lists(rejection, min_size=1, max_size=4))
    @example(rejections=[(0, 0, int(Reason.OUTLIER), "the member's"), (1, 1, int(Reason.OUTLIER), "stranger's")])
    def check(rejections):
        s = set_up_study(embedded, suspension_threshold=50)
        ledger, parent, members = s.ledger, digest("model 0"), s.institutions
        stranger = Account.create()

        def signed(account, update, samples=10):
            return sign_commitment(account, UpdateCommitment(embedded.chain_id, ledger.address, 1, parent, update,
                                                             samples))

        rejected, evidence, shown = [], [], set()
        for who, tag, code, kind in rejections:
            member, update = members[who], digest(f"update {tag}")
            signature = {"none": "", "stranger's": signed(stranger, update),
                         "the member's, other samples": signed(member, update, 11),
                         "another member's": signed(members[(who + 1) % 4], update),
                         "the member's": signed(member, update)}[kind]
            rejected.append((member.address, update, code))
            evidence.append((10 if signature else 0, signature))
            if kind == "the member's" and penalized(code):
                shown.add(member.address)
        record = replace(s.record(1, parent, [m.address for m in members if m.address not in
                                               {r[0] for r in rejected}]),
                         rejected=tuple(rejected), evidence=tuple(evidence))
        try:
            ledger.anchor_round(s.coordinator, record)
        except TransactionReverted:
            assert ledger.round_count() == 0
            assert all(ledger.reputation(m.address) == INITIAL_REPUTATION for m in members)
            return
        lost = {m.address for m in members if ledger.reputation(m.address) < INITIAL_REPUTATION}
        assert lost <= shown, (rejections, lost)
        assert all(ledger.reputation(m) >= INITIAL_REPUTATION - 20 for m in lost)      # once each
        assert not any(ledger.suspended(m.address) for m in members)

    check()
