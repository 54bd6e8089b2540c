"""Checking an institution's evaluation document before it is summarized (untrusted input)."""

import math

import numpy as np
import pytest

from fedledger.learning import build_model, evaluate
from fedledger.report import evaluation_problem, summarize_evaluations


@pytest.fixture(scope="module")
def honest():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), (rng.random(40) > 0.5).astype(np.float32)
    return evaluate(build_model("logreg", 5, seed=0), x, y)


def test_what_evaluate_makes_passes_and_summarizes(honest):
    assert evaluation_problem(honest) is None
    assert evaluation_problem({k: v for k, v in honest.items() if k != "auc"}) is None   # one class only
    assert summarize_evaluations({"a": honest, "b": honest})["pooled"]["n"] == 2 * honest["n"]


@pytest.mark.parametrize("change, problem", [
    (lambda d: [1, 2], "not a JSON object"),
    (lambda d: {**d, "extra": 1}, "unexpected keys ['extra']"),
    (lambda d: {k: v for k, v in d.items() if k != "tp"}, "missing keys ['tp']"),
    (lambda d: {**d, "loss": math.inf}, "loss is not a finite number"),
    (lambda d: {**d, "loss": "0.5"}, "loss is not a finite number"),
    (lambda d: {**d, "n": True}, "n is not a finite number"),
    (lambda d: {**d, "tp": 1e308}, "tp must be a whole number"),
    (lambda d: {**d, "tp": 1.5}, "tp must be a whole number"),
    (lambda d: {**d, "fn": -1.0}, "fn must be a whole number"),
    (lambda d: {**d, "n": d["n"] + 1}, "the confusion matrix adds up to"),
    (lambda d: {**d, "auc": 1.5}, "an auc outside [0, 1]"),
    (lambda d: {**d, "loss": 101.0}, "a loss outside [0, 100]"),
    (lambda d: {**d, "accuracy": 1.0 - d["accuracy"] / 2}, "accuracy, balanced_accuracy or f1 does not follow"),
    (lambda d: {**d, "hist_pos": d["hist_pos"][:-1]}, "hist_pos must be 100 whole counts"),
    (lambda d: {**d, "hist_neg": [d["hist_neg"][0] + 1, *d["hist_neg"][1:]]}, "hist_neg must be 100 whole counts"),
    (lambda d: {**d, "hist_pos": 3}, "hist_pos must be a list"),
    (lambda d: {**d, "tp": [1]}, "tp must be a number"),
    (lambda d: {**d, "hist_pos": [0.0] * 2000}, "hist_pos is not a finite number or a list of at most 1024"),
])
def test_each_malformed_evaluation_is_named(honest, change, problem):
    assert problem in evaluation_problem(change(dict(honest)))
