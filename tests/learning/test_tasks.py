"""The four tasks: each loss against a direct computation, each institution's figures against
scikit-learn or a brute-force count, pooled figures against the same over all test sets put
together, the checks on untrusted evaluations, and training that learns."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, mean_squared_error, r2_score, roc_auc_score

from fedledger.errors import ConfigError
from fedledger.learning import ClientData, TrainConfig, build_model, evaluate, make_task, train_local
from fedledger.learning.tasks import AUC_BINS, concordance_counts, cox_loss
from fedledger.report import evaluation_problem, results_table, summarize_evaluations

RNG = np.random.default_rng(7)


def brute_cox(risk, time, event):
    """Breslow's negative partial log-likelihood per event, one event at a time."""
    total = 0.0
    for i in np.nonzero(event)[0]:
        at_risk = time >= time[i]
        total -= risk[i] - math.log(np.exp(risk[at_risk]).sum())
    return total / event.sum()


def brute_pairs(risk, time, event):
    counts = {"concordant": 0, "discordant": 0, "tied": 0}
    for i in range(len(risk)):
        for j in range(len(risk)):
            if event[i] and time[i] < time[j]:
                key = "concordant" if risk[i] > risk[j] else "discordant" if risk[i] < risk[j] else "tied"
                counts[key] += 1
    return counts


def test_cox_loss_is_breslows_partial_likelihood_with_ties():
    time = np.array([5.0, 3.0, 3.0, 8.0, 1.0, 3.0, 9.0, 8.0])
    event = np.array([1, 1, 0, 1, 1, 1, 0, 1], dtype=float)
    risk = RNG.normal(size=8)
    got = cox_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event)).item()
    assert got == pytest.approx(brute_cox(risk, time, event), rel=1e-12)
    assert cox_loss(torch.tensor(risk), torch.tensor(time), torch.zeros(8)).item() == 0.0


def test_concordance_counts_match_a_pair_by_pair_count():
    time = RNG.integers(1, 30, size=120).astype(float)        # ties in time
    event = RNG.random(120) < 0.6
    risk = np.round(RNG.normal(size=120), 1)                  # ties in risk
    assert concordance_counts(risk, time, event) == brute_pairs(risk, time, event)


def test_survival_figures_pool_as_site_stratified_pair_counts():
    task = make_task("survival")
    sites = []
    for n in (40, 70):
        y = np.column_stack([RNG.exponential(10, n), RNG.random(n) < 0.5]).astype(np.float32)
        sites.append(task.evaluate(RNG.normal(size=n), y))
    for figures in sites:
        assert evaluation_problem(figures, task) is None
        pairs = figures["concordant"] + figures["discordant"] + figures["tied"]
        assert figures["c_index"] == (figures["concordant"] + 0.5 * figures["tied"]) / pairs
    pooled = summarize_evaluations({"a": sites[0], "b": sites[1]}, task)["pooled"]
    wins = sum(s["concordant"] + 0.5 * s["tied"] for s in sites)
    assert pooled["c_index"] == pytest.approx(wins / sum(s["concordant"] + s["discordant"] + s["tied"] for s in sites))
    assert pooled["n"] == 110


def test_binary_figures_and_the_pooled_auc_from_histograms():
    task = make_task("binary", threshold=0.3)
    probs = [RNG.random(300).astype(np.float32) for _ in range(2)]
    labels = [(RNG.random(300) < p).astype(np.float32) for p in probs]
    sites = {f"s{i}": task.evaluate(p, y) for i, (p, y) in enumerate(zip(probs, labels))}
    for (p, y), figures in zip(zip(probs, labels), sites.values()):
        assert figures["accuracy"] == accuracy_score(y, p > 0.3)
        assert figures["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p > 0.3))
        assert figures["f1"] == pytest.approx(f1_score(y, p > 0.3))
        assert figures["auc"] == pytest.approx(roc_auc_score(y, p))
        assert sum(figures["hist_pos"]) == y.sum() and len(figures["hist_neg"]) == AUC_BINS
    pooled = summarize_evaluations(sites, task)["pooled"]
    everyone = roc_auc_score(np.concatenate(labels), np.concatenate(probs))
    assert abs(pooled["auc_binned"] - everyone) < 0.005           # 600 scores in 100 bins
    assert pooled["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(np.concatenate(labels),
                                                                                np.concatenate(probs) > 0.3))
    # scores in distinct bins: the binned AUC is the exact one
    spread = (np.arange(100, dtype=np.float32) + 0.5) / 100
    y = (RNG.random(100) < spread).astype(np.float32)
    one = {"a": task.evaluate(spread, y)}
    assert summarize_evaluations(one, task)["pooled"]["auc_binned"] == pytest.approx(roc_auc_score(y, spread))
    assert "pooled AUC: from each institution's histogram" in results_table(summarize_evaluations(sites, task), task)


def test_multiclass_figures_match_scikit_learn_and_pool_from_the_confusion_matrices():
    task = make_task("multiclass", classes=3)
    logits = [RNG.normal(size=(n, 3)) for n in (50, 80)]
    labels = [RNG.integers(0, 3, size=len(z)).astype(np.float32) for z in logits]
    sites = {f"s{i}": task.evaluate(z, y) for i, (z, y) in enumerate(zip(logits, labels))}
    for z, y, figures in zip(logits, labels, sites.values()):
        assert evaluation_problem(figures, task) is None
        assert figures["accuracy"] == accuracy_score(y, z.argmax(1))
        assert figures["macro_f1"] == pytest.approx(f1_score(y, z.argmax(1), average="macro"))
        assert figures["loss"] == pytest.approx(torch.nn.functional.cross_entropy(
            torch.tensor(z, dtype=torch.float32), torch.tensor(y).long()).item(), rel=1e-6)
    pooled = summarize_evaluations(sites, task)["pooled"]
    y_all, pred_all = np.concatenate(labels), np.concatenate([z.argmax(1) for z in logits])
    assert pooled["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_all, pred_all))
    assert pooled["macro_f1"] == pytest.approx(f1_score(y_all, pred_all, average="macro"))
    tampered = {**sites["s0"], "confusion": [[1, 0, 0], [0, 1, 0]]}
    assert "confusion must be 3 rows of 3 counts" in evaluation_problem(tampered, task)
    assert "does not follow" in evaluation_problem({**sites["s0"], "macro_f1": 0.99}, task)


def test_regression_figures_are_in_the_labels_units_and_pool_from_sums():
    task = make_task("regression", label_mean=100.0, label_std=15.0)
    outputs = [RNG.normal(size=n) for n in (30, 60)]
    labels = [(100 + 15 * o + RNG.normal(0, 5, size=len(o))).astype(np.float32) for o in outputs]
    sites = {f"s{i}": task.evaluate(o, y) for i, (o, y) in enumerate(zip(outputs, labels))}
    for o, y, figures in zip(outputs, labels, sites.values()):
        assert evaluation_problem(figures, task) is None
        assert figures["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, 100 + 15 * o)))
    pooled = summarize_evaluations(sites, task)["pooled"]
    y_all, pred_all = np.concatenate(labels), np.concatenate([100 + 15 * o for o in outputs])
    assert pooled["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y_all, pred_all)))
    assert pooled["r2"] == pytest.approx(r2_score(y_all, pred_all))
    assert "does not follow" in evaluation_problem({**sites["s0"], "rmse": 0.1}, task)
    assert "sse, sae and sum_y2 zero or positive" in evaluation_problem({**sites["s0"], "sse": -1.0}, task)


@pytest.mark.parametrize("kind, change, problem", [
    ("survival", lambda d: {**d, "c_index": 0.99}, "c_index does not follow"),
    ("survival", lambda d: {**d, "events": d["n"] + 1}, "events at most n"),
    ("survival", lambda d: {**d, "concordant": 1e9}, "more comparable pairs"),
    ("survival", lambda d: {k: v for k, v in d.items() if k != "tied"}, "missing keys ['tied']"),
    ("regression", lambda d: {**d, "n": 0.5}, "n must be a whole number"),
    ("multiclass", lambda d: {**d, "confusion": [[1e308] * 3] * 3}, "whole counts"),
])
def test_tampered_evaluations_are_named(kind, change, problem):
    task = make_task(kind, classes=3)
    n = 30
    y = {"survival": np.column_stack([RNG.exponential(5, n), RNG.random(n) < 0.7]),
         "regression": RNG.normal(size=n), "multiclass": RNG.integers(0, 3, n)}[kind].astype(np.float32)
    figures = task.evaluate(RNG.normal(size=(n, 3)) if kind == "multiclass" else RNG.normal(size=n), y)
    assert evaluation_problem(figures, task) is None
    assert problem in evaluation_problem(change(dict(figures)), task)


def client(x, y, name="site"):
    return ClientData(name, x.astype(np.float32), y.astype(np.float32), x.astype(np.float32), y.astype(np.float32))


def test_each_task_learns_what_it_predicts():
    x = RNG.normal(size=(400, 3))
    cfg = TrainConfig(optimizer="adam", lr=0.05, batch_size=64, local_steps=300)
    # survival: hazard exp(2 x0 - x1); the learnt risk orders records as the true one does
    true_risk = 2 * x[:, 0] - x[:, 1]
    time = RNG.exponential(1 / np.exp(true_risk))
    censor = RNG.exponential(2.0, size=400)
    y = np.column_stack([np.minimum(time, censor), time <= censor])
    model = build_model("logreg", 3, seed=0, task=make_task("survival"))
    train_local(model, client(x, y), cfg, seed=1)
    weights = model.net.weight.detach().numpy().ravel()
    assert weights[0] > 1.0 and weights[1] < -0.4 and abs(weights[2]) < 0.3
    assert evaluate(model, x.astype(np.float32), y.astype(np.float32))["c_index"] > 0.75
    # multiclass: three classes by the sign pattern of two features
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    model = build_model("mlp", 3, seed=0, hidden=(16,), task=make_task("multiclass", classes=3))
    train_local(model, client(x, labels), cfg, seed=1)
    assert evaluate(model, x.astype(np.float32), labels.astype(np.float32))["accuracy"] > 0.9
    # regression, learnt standardised and reported in the label's units
    target = 120 + 15 * x[:, 0] - 5 * x[:, 2] + RNG.normal(0, 1, 400)
    task = make_task("regression", label_mean=120.0, label_std=16.0)
    model = build_model("logreg", 3, seed=0, task=task)
    train_local(model, client(x, target), cfg, seed=1)
    assert evaluate(model, x.astype(np.float32), target.astype(np.float32))["rmse"] < 1.5


def test_balanced_class_weights_raise_the_rare_class_recall():
    x = RNG.normal(size=(600, 2))
    y = (x[:, 0] + 0.5 * RNG.normal(size=600) > 1.6).astype(np.float32)     # about 7% positive
    data = client(x, y)
    recall = {}
    for weighting in ("none", "balanced"):
        model = build_model("logreg", 2, seed=0)
        train_local(model, data, TrainConfig(lr=0.05, batch_size=32, local_steps=400, class_weight=weighting), seed=3)
        figures = evaluate(model, x.astype(np.float32), y)
        recall[weighting] = figures["tp"] / (figures["tp"] + figures["fn"])
    assert recall["balanced"] > recall["none"] + 0.2
    with pytest.raises(ConfigError, match="a regression task has none"):
        train_local(build_model("logreg", 2, seed=0, task=make_task("regression")), client(x, y),
                    TrainConfig(class_weight="balanced"), seed=0)


def test_a_survival_study_refuses_dp_sgd():
    from fedledger.learning.dp_sgd import train_dp_sgd

    y = np.column_stack([RNG.exponential(1, 20), np.ones(20)])
    with pytest.raises(ConfigError, match="not a sum of per-record losses"):
        train_dp_sgd(build_model("logreg", 2, seed=0, task=make_task("survival")), client(RNG.normal(size=(20, 2)), y),
                     TrainConfig(), noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, seed=0)


def test_a_survival_update_weighs_its_events():
    y = np.column_stack([np.arange(10.0), [1, 0, 0, 1, 0, 0, 0, 1, 0, 0]])
    assert make_task("survival").aggregation_weight(y) == 3
    assert make_task("survival").aggregation_weight(np.column_stack([np.arange(4.0), np.zeros(4)])) == 1
    assert make_task("binary").aggregation_weight(np.zeros(7)) == 7
