"""The loose coordinator accepts only signed, member, this-round, well-formed updates, each
refusal with its reason; what it anchors is what the institutions can check."""

import dataclasses

import numpy as np
from eth_account import Account

from fedledger.crypto import sign_commitment, verify_proof
from fedledger.protocol import SignedUpdate, round_outcome
from fedledger.protocol.evaluation import sign_evaluation
from fedledger.protocol.manifest import update_leaves
from fedledger.validation import Reason


def _resigned(original, account, **changes):
    commitment = dataclasses.replace(original.commitment, **changes)
    return SignedUpdate(account.address, commitment, sign_commitment(account, commitment))


def test_each_bad_submission_is_refused_with_its_reason(loose_round):
    study = loose_round()
    coordinator, nodes = study.coordinator, study.nodes
    task = study.task()
    good = [n.train(task) for n in nodes]
    a, b = nodes[0], nodes[1]
    outsider = Account.create()
    bad = [
        SignedUpdate(b.address, good[0].commitment, good[0].signature),                  # a's update claimed by b
        _resigned(good[0], outsider),                                                     # not a member
        _resigned(good[0], a.account, round=0),                                           # replay of another round
        _resigned(good[0], a.account, ledger=study.chain.consortium.address),             # another ledger
    ]
    accepted, rejected = coordinator.screen(task, bad + good + [good[1]])   # good[1] sent twice: harmless
    assert [u.institution for u in accepted] == sorted((n.address for n in nodes), key=str.lower)
    assert [(r.institution, r.code) for r in rejected] == [
        (b.address, Reason.BAD_SIGNATURE), (outsider.address, Reason.NOT_MEMBER),
        (a.address, Reason.WRONG_ROUND), (a.address, Reason.WRONG_ROUND)]
    assert "another round" in rejected[2].reason


def test_bad_content_is_refused_with_its_code_and_anchored(loose_round):
    study = loose_round()
    store, nodes = study.store, study.nodes
    task = study.task()
    good = [n.train(task) for n in nodes]
    size = store.get_params(study.initial).size
    huge = store.put_params(np.full(size, 1e6, dtype=np.float32))
    short = store.put_params(np.zeros(3, dtype=np.float32))
    a, b, c, d = nodes
    study.offer(_resigned(good[0], a.account, update="ab" * 32))                  # artifact not in the store
    study.offer(_resigned(good[1], b.account, update=huge))                       # magnitude overflow
    study.offer(_resigned(good[2], c.account, update=short))                      # wrong size
    study.post(d.address, {"institution": d.address, "commitment": "?"})          # not a signed update at all
    record = study.anchor()
    expected = {a.address: Reason.MISSING, b.address: Reason.OUT_OF_RANGE, c.address: Reason.WRONG_LAYOUT,
                d.address: Reason.BAD_SIGNATURE}
    # Nothing passed: the round keeps its model, and every rejection is anchored with its code.
    assert record.model == study.initial and record.participants == ()
    assert {(r.member, r.reason) for r in study.chain.study.rejections(1)} == set(expected.items())
    outcome = round_outcome("loose", study.chain.study, store, 1)
    assert {r.institution: r.code for r in outcome.rejected} == expected
    # content faults of signed updates cost reputation; a blob no one could fetch and a document
    # that is no signed update do not: nothing the member signed shows them
    assert [study.chain.study.reputation(n.address) for n in nodes] == [100, 80, 80, 100]


def test_a_late_institution_is_waited_for_a_window_then_left_out(loose_round):
    study = loose_round()
    task = study.task()
    for node in study.nodes[:3]:
        study.offer(node.train(task))
    before = study.chain.backend.block_number()
    record = study.anchor()
    assert study.chain.backend.block_number() > before + study.coordinator.ctx.cfg.protocol.commit_window
    assert set(record.participants) == {n.address for n in study.nodes[:3]}


def test_removed_member_is_refused_and_the_round_anchors_the_rest(loose_round):
    study = loose_round()
    task = study.task()
    submissions = [n.train(task) for n in study.nodes]
    for update in submissions:
        study.offer(update)
    study.chain.consortium.remove_member(study.admin, study.nodes[2].address)
    record = study.anchor()
    assert study.nodes[2].address not in record.participants and len(record.participants) == 3
    assert [(r.member, r.reason) for r in study.chain.study.rejections(1)] == [(study.nodes[2].address,
                                                                                 Reason.NOT_MEMBER)]
    # every participant gets its Merkle proof, which checks out against the anchored root
    proofs = study.notices.of(study.nodes[0].address).read(study.coordinator.ctx.address, 1, "proofs")
    for update in submissions[:2] + submissions[3:]:
        leaf = update_leaves([update.as_entry()])[0]
        assert verify_proof(leaf, proofs[update.institution], record.updates_root)
    removed = update_leaves([submissions[2].as_entry()])[0]
    assert not verify_proof(removed, proofs[study.nodes[0].address], record.updates_root)


def test_a_hostile_evaluation_is_left_out_with_its_reason_and_the_round_goes_on(loose_round):
    """A signed update whose evaluation holds 1e308 values made the coordinator retry for ever,
    anchoring nothing (issue 14, finding 3): now the evaluation is left out, with its reason in
    the anchored metrics, and the update itself is aggregated."""
    study = loose_round()
    nodes = study.nodes
    good = [n.train(study.task()) for n in nodes]
    for update in good[1:]:
        study.offer(update)
    hostile = {**nodes[0].evaluate(study.initial), **{k: 1e308 for k in ("accuracy", "f1", "loss", "n", "tp", "fp",
                                                                         "tn", "fn")}}
    chain = study.chain.study
    signed = sign_evaluation(nodes[0].account, chain.chain_id, chain.address, study.initial, hostile)
    study.post(nodes[0].address, {**good[0].to_dict(), "metrics": study.store.put_json(signed)})
    record = study.anchor()
    assert len(record.participants) == 4
    metrics = study.store.get_json(record.metrics_digest)
    name = study.coordinator.ctx.name
    assert sorted(metrics["per_institution"]) == sorted(name(n.address) for n in nodes[1:])
    assert metrics["left_out"] == {name(nodes[0].address): "not a signed evaluation: n must be a whole number "
                                                           "from 0 to 1,000,000,000"}


def test_an_evaluation_not_signed_by_its_institution_is_left_out(loose_round):
    """Evaluations are signed by the institution that made them: unsigned figures, figures
    changed after signing, or another member's evaluation do not count (issue 14, finding 3)."""
    study = loose_round()
    nodes, store, chain = study.nodes, study.store, study.chain.study
    good = [n.train(study.task()) for n in nodes]
    study.offer(good[3])
    mine = sign_evaluation(nodes[1].account, chain.chain_id, chain.address, study.initial,
                           nodes[1].evaluate(study.initial))
    altered = {**mine, "figures": {**mine["figures"], "loss": mine["figures"]["loss"] / 2}}   # a better loss
    theirs = sign_evaluation(nodes[3].account, chain.chain_id, chain.address, study.initial,
                             nodes[3].evaluate(study.initial))
    posts = {0: nodes[0].evaluate(study.initial), 1: altered, 2: theirs}
    for i, doc in posts.items():
        study.post(nodes[i].address, {**good[i].to_dict(), "metrics": store.put_json(doc)})
    record = study.anchor()
    assert len(record.participants) == 4
    metrics = store.get_json(record.metrics_digest)
    name = study.coordinator.ctx.name
    assert list(metrics["per_institution"]) == [name(nodes[3].address)]
    left = metrics["left_out"]
    assert left[name(nodes[0].address)].startswith("not a signed evaluation: not a signed evaluation (it needs")
    assert left[name(nodes[1].address)] == "not a signed evaluation: the signature is not the institution's"
    assert left[name(nodes[2].address)] == ("not a signed evaluation: it is another institution's, of another model, "
                                            "or of another study")
