"""The loosely coupled coordinator checks each update's privacy spend as the contract would, and
anchors the spends of participants and of the updates it rejected after screening."""

import dataclasses

import pytest
from eth_account import Account

from fedledger.aggregation import make_strategy
from fedledger.chain import NO_SPEND, EmbeddedChain, PrivacySpend
from fedledger.config import config_from_dict
from fedledger.errors import UpdateRejected
from fedledger.learning import (
    TrainConfig,
    build_model,
    get_flat_params,
    load_fed_heart_disease,
)
from fedledger.protocol import InstitutionNode, ModelSpec, SignedUpdate
from fedledger.protocol.privacy import PrivacyPlan
from fedledger.protocol.setup import loose_coordinator, set_up_chain
from fedledger.report import summarize_evaluations
from fedledger.store import ArtifactStore
from fedledger.validation import Reason, ValidationRules

CONFIG = {"study": {"rounds": 2}, "training": {"local_steps": 5},
          "privacy": {"mechanism": "dp-sgd", "epsilon": 2.0}}


@pytest.fixture
def study(tmp_path):
    cfg = config_from_dict(CONFIG)
    plan = PrivacyPlan.from_config(cfg.to_dict())
    clients = load_fed_heart_disease()
    store = ArtifactStore(tmp_path / "store")
    spec = ModelSpec("logreg", clients[0].num_features)
    nodes = [InstitutionNode(c.name, Account.create(), c, spec, TrainConfig(local_steps=5), store, 1, plan)
             for c in clients]
    initial = store.put_params(get_flat_params(build_model("logreg", spec.num_features, seed=1)))
    admin, key = Account.create(), Account.create()
    backend = EmbeddedChain.create(None)
    chain = set_up_chain(backend, admin, key, [(n.name, n.account) for n in nodes], store.put_json({}), initial, cfg)
    coordinator = loose_coordinator(key, store, make_strategy("fedavg"), chain.consortium, chain.ledger,
                                    ValidationRules(max_update_norm=1e-6))
    yield coordinator, nodes, initial, chain
    backend.close()


def _round(coordinator, nodes, submissions, initial):
    task = coordinator.open_round(1, initial)
    accepted, rejected = coordinator.screen(task, submissions)
    evaluate = lambda model: summarize_evaluations({n.name: n.evaluate(model) for n in nodes})  # noqa: E731
    return coordinator.finalize(task, accepted, rejected, None, evaluate)


def test_spends_are_checked_and_every_release_is_anchored(study):
    coordinator, nodes, initial, chain = study
    task = coordinator.open_round(1, initial)
    updates = [n.train(task) for n in nodes]
    a, b, c, d = updates
    greedy = dataclasses.replace(b, spend=dataclasses.replace(b.spend, epsilon=2_000_001))
    missing = dataclasses.replace(c, spend=None)
    coordinator.rules = ValidationRules()
    outcome = _round(coordinator, nodes, [a, greedy, missing, d], initial)
    codes = {r.institution: r.code for r in outcome.rejected}
    assert codes == {b.institution: Reason.PRIVACY_BUDGET, c.institution: Reason.INVALID_FORMAT}
    # only the releases the contract accepts are on chain
    recorded = {(s.member, s.spend) for s in chain.ledger.privacy_spends(1)}
    assert recorded == {(a.institution, a.spend), (d.institution, d.spend)}
    assert chain.ledger.epsilon_spent(b.institution) == 0


def test_an_update_rejected_by_screening_still_counts_as_spent(study):
    coordinator, nodes, initial, chain = study
    task = coordinator.open_round(1, initial)
    updates = [n.train(task) for n in nodes]
    outcome = _round(coordinator, nodes, updates, initial)   # the tiny norm bound rejects every update
    assert {r.code for r in outcome.rejected} == {Reason.NORM_ABOVE_BOUND} and not outcome.accepted
    assert {(s.member, s.spend) for s in chain.ledger.privacy_spends(1)} == {(u.institution, u.spend) for u in updates}
    record = chain.ledger.get_round(1)
    assert record.spends == () and len(record.rejected_spends) == 4


def test_a_spend_travels_with_the_signed_update_and_is_checked_on_arrival(study):
    _, nodes, initial, _ = study
    update = nodes[0].train(study[0].open_round(1, initial))
    assert SignedUpdate.from_dict(update.to_dict()) == update
    assert update.spend != NO_SPEND and update.spend.steps == 5
    for bad in ([1, 2, 3], [1, 2, 3, -4], [1, 2, 3, True], "spend"):
        with pytest.raises(UpdateRejected, match="spend must be four unsigned integers"):
            SignedUpdate.from_dict({**update.to_dict(), "spend": bad})
    assert isinstance(update.spend, PrivacySpend)
