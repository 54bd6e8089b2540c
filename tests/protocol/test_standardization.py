"""The consortium's standardization: every institution ends up with the statistics of all
sites' training rows together, computed from signed counts, sums and sums of squares; a
document that is not an institution's signed statistics for this study is refused."""

import numpy as np
import pytest
from eth_account import Account

from fedledger.config import config_from_dict
from fedledger.crypto import StatisticsStatement, sign_commitment
from fedledger.errors import DataError
from fedledger.learning import TrainConfig, make_task
from fedledger.learning.data import ClientData, make_client
from fedledger.protocol.node import InstitutionNode, ModelSpec
from fedledger.protocol.standardization import consortium_scaling, site_statistics, statistics_problem
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore, canonical_json, sha256_hex

LEDGER = "0x" + "ab" * 20


def write_site(path, rng, n, shift):
    x = rng.normal(shift, [1.0, 20.0], size=(n, 2)) + [0.0, 100.0]
    target = 50 + 3 * x[:, 0] + 0.2 * x[:, 1] + rng.normal(0, 1, n)
    path.write_text("a,b,target\n" + "".join(f"{a:.5f},{b:.5f},{t:.5f}\n" for (a, b), t in zip(x, target)))
    return x, target


@pytest.mark.parametrize("secure_aggregation", ["none", "secagg"])
def test_every_institution_standardizes_with_all_sites_training_rows(tmp_path, secure_aggregation):
    rng = np.random.default_rng(11)
    raws = {name: write_site(tmp_path / f"{name}.csv", rng, n, shift)
            for name, n, shift in (("north", 80, 0.0), ("south", 60, 2.0), ("east", 40, -1.0))}
    cfg = config_from_dict({
        "study": {"name": "std", "rounds": 2, "architecture": "semi"},
        "data": {"dataset": "csv", "task": "regression", "label": "target",
                 "clients": {n: f"{n}.csv" for n in raws}, "validation_fraction": 0.1},
        "training": {"optimizer": "adam", "lr": 0.05, "local_steps": 20, "batch_size": 16},
        "privacy": {"secure_aggregation": secure_aggregation},     # secagg: the sums are masked too
    }, base_dir=tmp_path)
    site = config_from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "standardize": "site"}},
                            base_dir=tmp_path)
    from fedledger.protocol.setup import load_clients
    local = load_clients(site)                 # each site's own split, as the study draws it
    train_raw = np.concatenate([np.concatenate([c.x_train, c.x_val]).astype(np.float64) * c.feature_std + c.feature_mean
                                for c in local])
    train_labels = np.concatenate([np.concatenate([c.y_train, c.y_val]) for c in local]).astype(np.float64)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    import json
    record = json.loads((result.run_dir / "preprocessing.json").read_text())
    for name in raws:
        np.testing.assert_allclose(record["scaling"][name]["mean"], train_raw.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(record["scaling"][name]["std"], train_raw.std(axis=0, ddof=1), rtol=1e-6)
    assert record["label_mean"] == pytest.approx(train_labels.mean(), rel=1e-9)
    assert record["label_std"] == pytest.approx(train_labels.std(ddof=1), rel=1e-6)
    assert result.final["pooled"]["r2"] > 0.9      # learnt in the consortium's label units


def signed(account, stats, ledger=LEDGER, chain_id=1):
    statement = StatisticsStatement(chain_id, ledger, sha256_hex(canonical_json(stats)))
    return {"institution": account.address, "chain_id": chain_id, "ledger": ledger, "statistics": stats,
            "signature": sign_commitment(account, statement)}


@pytest.mark.parametrize("change, problem", [
    (lambda a, s: signed(a, {**s, "n": 1}), "n must be a whole number of rows from 2"),
    (lambda a, s: signed(a, {**s, "sum": s["sum"][:1]}), "sum must be 2 finite numbers"),
    (lambda a, s: {**signed(a, s), "statistics": {**s, "sum_sq": [1.0, float("inf")]}},
     "sum_sq must be 2 finite numbers"),
    (lambda a, s: signed(a, {**s, "sum_sq": [0.0, 0.0]}), "smaller than its sum allows"),
    (lambda a, s: signed(a, {**s, "extra": 1}), "exactly the keys"),
    (lambda a, s: signed(a, s, ledger="0x" + "cd" * 20), "another study's"),
    (lambda a, s: {**signed(a, s), "statistics": {**s, "n": s["n"] + 1}}, "the signature is not the institution's"),
    (lambda a, s: signed(Account.create(), s) | {"institution": a.address}, "the signature is not the institution's"),
])
def test_a_document_that_is_not_the_institutions_statistics_is_refused(change, problem):
    account = Account.create()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    stats = site_statistics(make_client("a", x, (x[:, 0] > 0).astype(np.float32), 0.3, 0), with_labels=False)
    assert statistics_problem(signed(account, stats), account.address, 1, LEDGER, 2, False) is None
    assert problem in statistics_problem(change(account, stats), account.address, 1, LEDGER, 2, False)


def test_the_consortium_scaling_is_the_pooled_one():
    rng = np.random.default_rng(2)
    sites = [rng.normal(m, s, size=(n, 3)) for m, s, n in ((0, 1, 50), (5, 3, 20), (-2, 0.5, 70))]
    stats = [{"n": len(x), "sum": x.sum(0).tolist(), "sum_sq": (x ** 2).sum(0).tolist()} for x in sites]
    scaling = consortium_scaling(stats)
    everyone = np.concatenate(sites)
    np.testing.assert_allclose(scaling["mean"], everyone.mean(0), rtol=1e-12)
    np.testing.assert_allclose(scaling["std"], everyone.std(0, ddof=1), rtol=1e-9)


def test_a_node_awaiting_the_consortiums_statistics_neither_trains_nor_evaluates(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2))
    data = make_client("a", x, (x[:, 0] > 0).astype(np.float32), 0.3, 0)
    node = InstitutionNode("a", Account.create(), data, ModelSpec("logreg", 2, task=make_task("binary")),
                           TrainConfig(), ArtifactStore(tmp_path), seed=0)
    digest = node.store.put_params(np.zeros(3, np.float32))
    node.await_standardization()
    with pytest.raises(DataError, match="not standardized with the consortium's statistics yet"):
        node.evaluate(digest)
    node.standardize(np.zeros(2), np.ones(2))
    assert isinstance(node.data, ClientData) and "accuracy" in node.evaluate(digest)
