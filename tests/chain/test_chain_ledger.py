"""StudyLedger.vy: anchoring rounds, chain continuity, and every way an anchor is refused."""

from dataclasses import replace

import pytest
from eth_account import Account

from fedledger.chain import Consortium, EmbeddedChain, Role, StudyLedger
from fedledger.errors import ChainError, TransactionReverted

from .conftest import digest, set_up_study


def test_anchored_rounds_read_back_in_order(study):
    ledger, coordinator = study.ledger, study.coordinator
    assert (ledger.config_digest(), ledger.initial_model()) == (digest("config"), digest("model 0"))
    assert ledger.coordinator() == coordinator.address
    assert ledger.round_count() == 0

    parent, records, blocks = digest("model 0"), [], []
    for n in (1, 2, 3):
        # The caller need not sort participants: the wrapper sends them in address order.
        record = study.record(n, parent, participants=[i.address.lower() for i in reversed(study.institutions)])
        blocks.append(ledger.anchor_round(coordinator, record)["blockNumber"])
        records.append(record)
        parent = record.model

    in_order = tuple(sorted((i.address for i in study.institutions), key=lambda a: int(a, 16)))
    expected = [replace(r, participants=in_order) for r in records]
    assert ledger.round_count() == 3
    assert [ledger.get_round(n) for n in (1, 2, 3)] == expected
    assert ledger.anchored_rounds() == list(zip(expected, blocks, strict=True))
    assert ledger.latest_model() == records[-1].model


def test_anchor_with_four_participants_costs_one_transaction(study):
    stats = study.backend.stats
    before = (stats.transactions, stats.gas_used, stats.calldata_bytes)
    receipt = study.ledger.anchor_round(study.coordinator, study.record(1, digest("model 0")))
    assert stats.transactions == before[0] + 1
    assert stats.gas_used - before[1] == receipt["gasUsed"]
    assert 21_000 < receipt["gasUsed"] < 400_000
    assert stats.calldata_bytes - before[2] == 4 + 32 * (7 + 1 + 4)   # selector, 7 head words, length, 4 addresses


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
    "no participants": (lambda s, a: (s.coordinator, _round2(s, participants=())), "no participants"),
    "empty model digest": (lambda s, a: (s.coordinator, _round2(s, model="00" * 32)), "empty model digest"),
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
        bytes.fromhex(r.metrics_digest), bytes.fromhex(r.manifest_digest))
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
        StudyLedger(study.backend, study.outsider.address)


def test_an_unfunded_sender_is_told_to_fund_its_account(embedded):
    broke = Account.create()
    with pytest.raises(ChainError, match=rf"^Consortium\.constructor: {broke.address} holds too little ether"):
        Consortium.deploy(embedded, broke)
