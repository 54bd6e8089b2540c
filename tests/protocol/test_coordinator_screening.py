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
    store = coordinator.store
    task = coordinator.open_round(1, initial)
    good = [n.train(task) for n in nodes]
    a, b = nodes[0], nodes[1]
    outsider = Account.create()
    huge = store.put_params(np.full(store.get_params(initial).size, 1e6, dtype=np.float32))
    short = store.put_params(np.zeros(3, dtype=np.float32))
    bad = [
        SignedUpdate(b.address, good[0].commitment, good[0].signature),                  # a's update claimed by b
        _resigned(good[0], outsider),                                                     # not a member
        _resigned(good[0], a.account, round=0),                                           # replay of another round
        _resigned(good[0], a.account, ledger=chain.consortium.address),                   # another ledger
        _resigned(good[0], a.account, update="ab" * 32),                                  # artifact not in the store
        _resigned(good[0], a.account, update=huge),                                       # magnitude overflow
        _resigned(good[0], a.account, update=short),                                      # wrong size
        _resigned(good[0], a.account, num_samples=0),                                     # no weight
    ]
    accepted, rejected = coordinator.screen(task, bad + good + [good[1]])
    assert [u.institution for u in accepted] == [n.address for n in nodes]
    reasons = [r.reason for r in rejected]
    expected = ["signature does not match", "not an active member", "another round", "another round",
                "not in the store", "fixed-point bound", "the global model has", "num_samples is 0",
                "second update in the same round"]
    assert len(reasons) == len(expected)
    for reason, fragment in zip(reasons, expected):
        assert fragment in reason


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
