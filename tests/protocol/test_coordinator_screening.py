"""The coordinator accepts only signed, member, this-round, well-formed updates, each refusal with its reason."""

import dataclasses

import numpy as np
import pytest
from eth_account import Account

from fedledger.aggregation import make_strategy
from fedledger.chain import EmbeddedChain, Role
from fedledger.crypto import sign_commitment
from fedledger.learning import (
    TrainConfig,
    build_model,
    get_flat_params,
    load_fed_heart_disease,
)
from fedledger.protocol import Coordinator, InstitutionNode, ModelSpec, SignedUpdate
from fedledger.protocol.setup import set_up_chain
from fedledger.report import summarize_evaluations
from fedledger.store import ArtifactStore
from fedledger.validation import Reason


@pytest.fixture
def consortium(tmp_path):
    clients = load_fed_heart_disease()
    store = ArtifactStore(tmp_path / "store")
    spec = ModelSpec("logreg", clients[0].num_features)
    nodes = [InstitutionNode(c.name, Account.create(), c, spec, TrainConfig(local_steps=5), store, seed=1)
             for c in clients]
    initial = store.put_params(get_flat_params(build_model("logreg", spec.num_features, seed=1)))
    admin, coordinator_key = Account.create(), Account.create()
    backend = EmbeddedChain.create(None)
    chain = set_up_chain(backend, admin, coordinator_key, [(n.name, n.account) for n in nodes],
                         store.put_json({}), initial)
    coordinator = Coordinator(coordinator_key, store, make_strategy("fedavg"),
                              lambda addrs: chain.consortium.holders_of(addrs, Role.INSTITUTION), chain.ledger,
                              backend.chain_id, chain.ledger.address)
    yield coordinator, nodes, initial, chain, admin
    backend.close()


def _resigned(original, account, **changes):
    commitment = dataclasses.replace(original.commitment, **changes)
    return SignedUpdate(account.address, commitment, sign_commitment(account, commitment))


def test_each_bad_submission_is_refused_with_its_reason(consortium):
    coordinator, nodes, initial, chain, _ = consortium
    task = coordinator.open_round(1, initial)
    good = [n.train(task) for n in nodes]
    a, b = nodes[0], nodes[1]
    outsider = Account.create()
    bad = [
        SignedUpdate(b.address, good[0].commitment, good[0].signature),                  # a's update claimed by b
        _resigned(good[0], outsider),                                                     # not a member
        _resigned(good[0], a.account, round=0),                                           # replay of another round
        _resigned(good[0], a.account, ledger=chain.consortium.address),                   # another ledger
    ]
    accepted, rejected = coordinator.screen(task, bad + good + [good[1]])   # good[1] sent twice: harmless
    assert [u.institution for u in accepted] == sorted((n.address for n in nodes), key=str.lower)
    assert [(r.institution, r.code) for r in rejected] == [
        (b.address, Reason.BAD_SIGNATURE), (outsider.address, Reason.NOT_MEMBER),
        (a.address, Reason.WRONG_ROUND), (a.address, Reason.WRONG_ROUND)]
    assert "another round" in rejected[2].reason


def test_bad_content_is_refused_with_its_code_and_anchored(consortium):
    coordinator, nodes, initial, chain, _ = consortium
    store = coordinator.store
    task = coordinator.open_round(1, initial)
    good = [n.train(task) for n in nodes]
    size = store.get_params(initial).size
    huge = store.put_params(np.full(size, 1e6, dtype=np.float32))
    short = store.put_params(np.zeros(3, dtype=np.float32))
    a, b, c, d = nodes
    submissions = [
        _resigned(good[0], a.account, update="ab" * 32),                                  # artifact not in the store
        _resigned(good[1], b.account, update=huge),                                       # magnitude overflow
        _resigned(good[2], c.account, update=short),                                      # wrong size
        good[3], _resigned(good[3], d.account, num_samples=7),                            # two different updates
    ]
    accepted, rejected = coordinator.screen(task, submissions)
    assert accepted == []
    expected = {a.address: Reason.MISSING, b.address: Reason.OUT_OF_RANGE, c.address: Reason.WRONG_LAYOUT,
                d.address: Reason.DUPLICATE}
    assert {r.institution: r.code for r in rejected} == expected
    # Nothing passed: the round keeps its model, and every rejection is anchored with its code.
    outcome = coordinator.finalize(task, accepted, rejected, None,
                                   lambda model: summarize_evaluations({n.name: n.evaluate(model) for n in nodes}))
    assert outcome.model == initial and chain.ledger.get_round(1).participants == ()
    assert {(r.member, r.reason) for r in chain.ledger.rejections(1)} == set(expected.items())
    # only content faults cost reputation (a duplicate could be anyone replaying)
    assert [chain.ledger.reputation(n.address) for n in nodes] == [80, 80, 80, 100]


def test_removed_member_is_refused_and_round_anchors_the_rest(consortium):
    coordinator, nodes, initial, chain, admin = consortium
    task = coordinator.open_round(1, initial)
    submissions = [n.train(task) for n in nodes]
    chain.consortium.remove_member(admin, nodes[2].address)
    accepted, rejected = coordinator.screen(task, submissions)
    assert [r.institution for r in rejected] == [nodes[2].address]
    outcome = coordinator.finalize(task, accepted, rejected, None,
                                   lambda model: summarize_evaluations({n.name: n.evaluate(model) for n in nodes}))
    on_chain = chain.ledger.get_round(1)
    assert on_chain == outcome.record
    assert nodes[2].address not in on_chain.participants and len(on_chain.participants) == 3
    for update in accepted:
        node = next(n for n in nodes if n.address == update.institution)
        assert node.check_inclusion(update, outcome.proofs[node.address], on_chain.updates_root)
    assert not nodes[2].check_inclusion(submissions[2], outcome.proofs[nodes[0].address], on_chain.updates_root)
