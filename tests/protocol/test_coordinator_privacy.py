"""The loose coordinator checks every spend as the contract would, and anchors every release."""

import dataclasses

import pytest

from fedledger.chain import NO_SPEND, PrivacySpend
from fedledger.errors import UpdateRejected
from fedledger.protocol import SignedUpdate, round_outcome
from fedledger.validation import Reason

DP = {"privacy": {"mechanism": "dp-sgd", "epsilon": 2.0}}


def test_spends_are_checked_and_every_release_is_anchored(loose_round):
    study = loose_round(**DP)
    a, b, c, d = [n.train(study.task()) for n in study.nodes]
    greedy = dataclasses.replace(b, spend=dataclasses.replace(b.spend, epsilon=2_000_001))
    missing = dataclasses.replace(c, spend=None)
    for update in (a, greedy, missing, d):
        study.offer(update)
    study.anchor()
    outcome = round_outcome("loose", study.chain.study, study.store, 1)
    codes = {r.institution: r.code for r in outcome.rejected}
    assert codes == {b.institution: Reason.PRIVACY_BUDGET, c.institution: Reason.PRIVACY_BUDGET}
    # only the releases the contract accepts are on chain
    ledger = study.chain.study
    assert {(s.member, s.spend) for s in ledger.privacy_spends(1)} == {(a.institution, a.spend), (d.institution, d.spend)}
    assert ledger.epsilon_spent(b.institution) == 0


def test_an_update_rejected_by_screening_still_counts_as_spent(loose_round):
    study = loose_round(**DP, validation={"max_update_norm": 1e-6})
    updates = [n.train(study.task()) for n in study.nodes]
    for update in updates:
        study.offer(update)
    record = study.anchor()     # the tiny norm bound rejects every update
    outcome = round_outcome("loose", study.chain.study, study.store, 1)
    assert {r.code for r in outcome.rejected} == {Reason.NORM_ABOVE_BOUND} and not outcome.accepted
    assert {(s.member, s.spend) for s in study.chain.study.privacy_spends(1)} == \
        {(u.institution, u.spend) for u in updates}
    assert record.spends == () and len(record.rejected_spends) == 4


def test_a_spend_travels_with_the_signed_update_and_is_checked_on_arrival(loose_round):
    study = loose_round(**DP)
    update = study.nodes[0].train(study.task())
    assert SignedUpdate.from_dict(update.to_dict()) == update
    assert update.spend != NO_SPEND and update.spend.steps == 5
    for bad in ([1, 2, 3], [1, 2, 3, -4], [1, 2, 3, True], "spend"):
        with pytest.raises(UpdateRejected, match="spend must be four unsigned integers"):
            SignedUpdate.from_dict({**update.to_dict(), "spend": bad})
    assert isinstance(update.spend, PrivacySpend)
