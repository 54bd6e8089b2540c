"""[personalization]: each institution fine-tunes the final model on its own rows, choosing how
long on its validation rows only; its figures are its own account, which the audit says."""

import dataclasses
import json

import numpy as np
import pytest
from eth_account import Account

from fedledger.audit import verify_run
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError, DataError
from fedledger.learning import TrainConfig, make_task
from fedledger.learning.data import hold_out_validation, make_client
from fedledger.protocol.node import InstitutionNode, ModelSpec
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore


def node_with_its_own_rule(tmp_path):
    """A site whose labels follow another rule than the global model (all zeros) knows."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] - x[:, 2] > 0.3).astype(np.float32)
    data = hold_out_validation(make_client("site", x, y, 0.3, 0), 0.25, 1)
    node = InstitutionNode("site", Account.create(), data, ModelSpec("logreg", 3, task=make_task("binary")),
                           TrainConfig(optimizer="adam", lr=0.05, batch_size=16), ArtifactStore(tmp_path), seed=0)
    return node, node.store.put_params(np.zeros(4, np.float32))


def test_fine_tuning_is_chosen_on_validation_rows_and_scored_on_test_rows(tmp_path):
    node, model = node_with_its_own_rule(tmp_path)
    assert node.personalize(model, [0], 0.0)["figures"] == node.evaluate(model)     # 0 steps: the model as is
    chosen = node.personalize(model, [0, 5, 50], 0.0)
    assert chosen["steps"] > 0 and chosen["figures"]["accuracy"] > node.evaluate(model)["accuracy"] + 0.2
    # the choice is the best validation score among the candidates
    scores = {}
    for k in (0, 5, 50):
        scores[k] = node.personalize(model, [k], 0.0)["validation_score"]
    assert chosen["steps"] == max(scores, key=lambda k: (scores[k], -k))
    assert chosen["validation_score"] == scores[chosen["steps"]]
    node.data = dataclasses.replace(node.data, x_val=None, y_val=None)
    with pytest.raises(DataError, match="no validation rows"):
        node.personalize(model, [0, 5], 0.0)


def test_a_study_reports_its_sites_personalization_and_the_audit_says_it_is_their_own(tmp_path):
    cfg = config_from_dict({
        "study": {"name": "personal", "rounds": 2, "seed": 4},
        "data": {"dataset": "breast_cancer", "num_clients": 3, "alpha": 0.5, "validation_fraction": 0.2},
        "training": {"lr": 0.05, "local_steps": 20, "batch_size": 8},
        "personalization": {"steps": [0, 20], "lr": 0.01},
    }, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    saved = json.loads((result.run_dir / "results.json").read_text())["personalized"]
    assert saved == result.personalized and set(saved["steps"]) == {"hospital_0", "hospital_1", "hospital_2"}
    assert all(k in (0, 20) for k in saved["steps"].values())
    assert saved["pooled"]["n"] == result.final["pooled"]["n"]
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()
    assert any("personalized figures" in line for line in report.summary().splitlines())


@pytest.mark.parametrize("section, message", [
    ({"steps": [0, 10]}, "chooses each institution's fine-tuning on its validation rows"),
    ({"steps": [-1]}, "[personalization].steps must list"),
    ({"steps": [0], "lr": -1.0}, "[personalization].lr must be 0"),
])
def test_bad_personalization_is_named(section, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"personalization": section})

