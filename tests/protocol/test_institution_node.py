"""An institution's node: its signed evaluations of a model are made once and reused."""

from eth_account import Account

from fedledger.learning import TrainConfig, build_model, get_flat_params, load_fed_heart_disease
from fedledger.protocol import InstitutionNode, ModelSpec
from fedledger.protocol.evaluation import signed_evaluation_problem
from fedledger.store import ArtifactStore

LEDGER = "0x" + "ab" * 20


def test_a_models_signed_evaluation_is_made_once_and_remade_if_its_blob_is_lost(tmp_path):
    client = load_fed_heart_disease()[0]
    spec = ModelSpec("logreg", client.num_features)
    store = ArtifactStore(tmp_path / "store")
    node = InstitutionNode(client.name, Account.create(), client, spec, TrainConfig(local_steps=5), store, 1)
    model = store.put_params(get_flat_params(build_model("logreg", spec.num_features, seed=1)))
    scored = []
    evaluate = node.evaluate
    node.evaluate = lambda digest: scored.append(digest) or evaluate(digest)

    first = node.signed_evaluation(model, 7, LEDGER)
    assert node.signed_evaluation(model, 7, LEDGER) == first and scored == [model]   # the round's metrics, then the next update
    assert signed_evaluation_problem(store.get_json(first), node.address, model, 7, LEDGER) is None

    store._path(first).unlink()                                   # lost (a restarted node, a pruned store)
    assert node.signed_evaluation(model, 7, LEDGER) == first and store.has(first) and len(scored) == 2
    other = node.signed_evaluation(model, 8, LEDGER)             # another chain: another statement
    assert other != first and len(scored) == 3
