"""What a study's model predicts, how it learns it and how it is scored: one `Task` per kind.

binary: P(y = 1) from a sigmoid, binary cross-entropy; multiclass: one logit per class,
cross-entropy; regression: a number, squared error; survival: a log relative risk (Cox
proportional hazards), the negative partial log-likelihood of the batch (Breslow's ties).

An institution's evaluation is a flat JSON object of figures that carries, besides its own
scores, the sums from which the consortium's pooled figures follow without moving any test
record (a confusion matrix, sums of errors, concordant pairs, a histogram of scores). Other
institutions' evaluations are untrusted input: `problem` says why one is not what this task's
`evaluate` makes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from fedledger.errors import ConfigError

TASKS = ("binary", "multiclass", "regression", "survival")
MAX_CLASSES = 32                # a confusion matrix of 32 x 32 counts keeps an evaluation small
MAX_RECORDS = 10**9             # far beyond any site's test set; keeps sums exact in float64
MAX_LOSS = 100.0                # torch's binary cross-entropy clamps log(p) at -100
AUC_BINS = 100                  # pooled AUC: histograms of P(y = 1) in bins of 0.01
Figures = dict[str, Any]


class Task(ABC):
    """A kind of prediction. Subclasses are frozen dataclasses: equal tasks compare equal."""

    kind: ClassVar[str]
    headline: ClassVar[str]             # the figure that sums a model up in tables and plots

    @property
    def outputs(self) -> int:
        """Units of the network's last layer."""
        return 1

    def link(self, raw: torch.Tensor) -> torch.Tensor:
        """The model's output from its last layer's: (n,) for one unit, (n, k) for k."""
        return raw.squeeze(-1)

    @abstractmethod
    def loss(self, pred: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """The mean training loss of a batch."""

    @abstractmethod
    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> Figures:
        """One institution's figures for predictions `pred` (the model's output) of labels `y`."""

    @abstractmethod
    def problem(self, doc: Mapping[str, Any]) -> str | None:
        """Why `doc` is not figures this task's `evaluate` makes (None if it is). Called on a
        JSON object whose values have already been checked to be finite numbers or lists."""

    @abstractmethod
    def pool(self, per: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """The consortium's figures, as one model over all the institutions' test sets."""

    def score(self, figures: Mapping[str, Any]) -> float:
        """An update's validation score in [0, 1], higher better (the full architecture's votes)."""
        return float(figures[self.headline])

    def stratify(self, y: np.ndarray) -> np.ndarray | None:
        """What to stratify a train/test split on (None: a plain shuffle)."""
        return y

    def aggregation_weight(self, y: np.ndarray) -> int:
        """How much an institution's update with training labels `y` weighs in a weighted
        average (FedAvg): the number of records its loss sums over."""
        return len(y)

    def average_keys(self) -> tuple[str, ...]:
        """The figures that the client average (each institution counting once) is taken of."""
        return (self.headline, "loss")


def weights_for(y: np.ndarray, classes: int) -> np.ndarray:
    """scikit-learn's "balanced" class weights, n / (classes x count), from these labels; a class
    absent here weighs 1."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=classes)[:classes].astype(np.float64)
    weights = np.ones(classes)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _whole(value: Any) -> bool:
    """A count: a whole number from 0 to MAX_RECORDS."""
    return isinstance(value, int | float) and 0 <= value <= MAX_RECORDS and value == int(value)


def _counts_problem(doc: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        if not _whole(doc[key]):
            return f"{key} must be a whole number from 0 to {MAX_RECORDS:,}"
    return None


def _keys_problem(doc: Mapping[str, Any], required: set[str], optional: set[str] = frozenset()) -> str | None:
    unknown, missing = set(doc) - required - optional, required - set(doc)
    if unknown:
        return f"unexpected keys {sorted(unknown)[:3]}"
    if missing:
        return f"missing keys {sorted(missing)}"
    for key in doc:
        is_list = isinstance(doc[key], list)
        if is_list != (key in _LIST_KEYS):
            return f"{key} must be {'a list' if key in _LIST_KEYS else 'a number'}"
    return None


_LIST_KEYS = {"hist_pos", "hist_neg", "confusion"}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


@dataclass(frozen=True)
class BinaryTask(Task):
    """P(y = 1); class 1 is predicted when it is above `threshold`."""

    threshold: float = 0.5
    kind: ClassVar[str] = "binary"
    headline: ClassVar[str] = "accuracy"

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"the decision threshold must be between 0 and 1, got {self.threshold}")

    def link(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw).squeeze(-1)

    def loss(self, pred: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        weight = None if class_weights is None else class_weights[y.long()]
        return F.binary_cross_entropy(pred, y, weight=weight)

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> Figures:
        """accuracy, balanced_accuracy, f1, loss (mean binary cross-entropy), auc (when y holds
        both classes), the confusion counts n, tp, fp, tn, fn, and histograms of P(y = 1) over
        AUC_BINS bins for each class (hist_pos, hist_neg), from which a pooled AUC follows."""
        prob = np.asarray(pred, dtype=np.float32)
        truth = np.asarray(y) > 0.5
        with torch.no_grad():
            loss = F.binary_cross_entropy(torch.from_numpy(prob), torch.from_numpy(truth.astype(np.float32))).item()
        predicted = prob > self.threshold
        tp, fp = int(np.sum(predicted & truth)), int(np.sum(predicted & ~truth))
        tn, fn = int(np.sum(~predicted & ~truth)), int(np.sum(~predicted & truth))
        bins = _bin_of(prob)
        figures: Figures = {
            **_binary_rates(tp, fp, tn, fn), "loss": loss,
            "n": float(len(truth)), "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn),
            "hist_pos": np.bincount(bins[truth], minlength=AUC_BINS).tolist(),
            "hist_neg": np.bincount(bins[~truth], minlength=AUC_BINS).tolist(),
        }
        if truth.any() and not truth.all():
            figures["auc"] = float(roc_auc_score(truth, prob))
        return figures

    def problem(self, doc: Mapping[str, Any]) -> str | None:
        counts = ("n", "tp", "fp", "tn", "fn")
        problem = (_keys_problem(doc, {*counts, "accuracy", "balanced_accuracy", "f1", "loss", "hist_pos", "hist_neg"},
                                 {"auc"}) or _counts_problem(doc, counts))
        if problem:
            return problem
        n, tp, fp, tn, fn = (int(doc[k]) for k in counts)
        if n == 0 or tp + fp + tn + fn != n:
            return f"the confusion matrix adds up to {tp + fp + tn + fn}, not n = {n} (at least 1)"
        if not 0 <= doc["loss"] <= MAX_LOSS or ("auc" in doc and not 0 <= doc["auc"] <= 1):
            return f"an auc outside [0, 1] or a loss outside [0, {MAX_LOSS:g}]"
        if not all(_close(doc[k], v) for k, v in _binary_rates(tp, fp, tn, fn).items()):
            return "accuracy, balanced_accuracy or f1 does not follow from the counts"
        for key, total in (("hist_pos", tp + fn), ("hist_neg", tn + fp)):
            hist = doc[key]
            if len(hist) != AUC_BINS or not all(map(_whole, hist)) or sum(hist) != total:
                return f"{key} must be {AUC_BINS} whole counts adding up to {total}"
        return None

    def pool(self, per: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        total = {k: sum(m[k] for m in per.values()) for k in ("tp", "fp", "tn", "fn")}
        n = sum(total.values())
        pooled = {**_binary_rates(total["tp"], total["fp"], total["tn"], total["fn"]),
                  "loss": sum(m["loss"] * m["n"] for m in per.values()) / n, "n": n}
        positives = np.sum([m["hist_pos"] for m in per.values()], axis=0)
        negatives = np.sum([m["hist_neg"] for m in per.values()], axis=0)
        if positives.sum() and negatives.sum():
            pooled["auc_binned"] = _binned_auc(positives, negatives)
        return pooled

    def average_keys(self) -> tuple[str, ...]:
        return ("accuracy", "balanced_accuracy", "f1", "loss", "auc")


def _bin_of(prob: np.ndarray) -> np.ndarray:
    return np.clip((prob * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)


def _binary_rates(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    """accuracy, balanced_accuracy (the mean recall of the classes present, as scikit-learn's
    balanced_accuracy_score) and f1 (of class 1) of a confusion matrix's counts."""
    recalls = [hit / (hit + miss) for hit, miss in ((tp, fn), (tn, fp)) if hit + miss]
    return {"accuracy": (tp + tn) / (tp + fp + tn + fn), "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}


def _binned_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The AUC of scores known only by bin: a positive in a higher bin than a negative counts 1,
    in the same bin 1/2 (exact when no two records of different classes share a bin)."""
    below = np.concatenate([[0], np.cumsum(negatives)[:-1]])
    wins = np.sum(positives * (below + 0.5 * negatives))
    return float(wins / (positives.sum() * negatives.sum()))


@dataclass(frozen=True)
class MulticlassTask(Task):
    """One logit per class; the most likely class is predicted."""

    classes: int = 3
    kind: ClassVar[str] = "multiclass"
    headline: ClassVar[str] = "accuracy"

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= MAX_CLASSES:
            raise ConfigError(f"a multiclass task needs 2 to {MAX_CLASSES} classes, got {self.classes}")

    @property
    def outputs(self) -> int:
        return self.classes

    def link(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def loss(self, pred: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(pred, y.long(), weight=class_weights)

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> Figures:
        """accuracy, balanced_accuracy, macro_f1, loss (mean cross-entropy) and the confusion
        matrix (confusion[true][predicted] counts)."""
        logits = torch.from_numpy(np.asarray(pred, dtype=np.float32))
        truth = np.asarray(y).astype(np.int64)
        with torch.no_grad():
            loss = F.cross_entropy(logits, torch.from_numpy(truth)).item()
        predicted = logits.argmax(dim=1).numpy()
        confusion = np.zeros((self.classes, self.classes), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        return {**_confusion_rates(confusion), "loss": min(loss, MAX_LOSS), "n": float(len(truth)),
                "confusion": confusion.tolist()}

    def problem(self, doc: Mapping[str, Any]) -> str | None:
        problem = _keys_problem(doc, {"accuracy", "balanced_accuracy", "macro_f1", "loss", "n", "confusion"})
        if problem:
            return problem
        rows = doc["confusion"]
        if len(rows) != self.classes or any(not isinstance(r, list) or len(r) != self.classes for r in rows):
            return f"confusion must be {self.classes} rows of {self.classes} counts"
        if not all(_whole(c) for r in rows for c in r) or _counts_problem(doc, ("n",)):
            return f"confusion and n must hold whole counts from 0 to {MAX_RECORDS:,}"
        confusion = np.array(rows, dtype=np.int64)
        if doc["n"] < 1 or confusion.sum() != doc["n"]:
            return f"the confusion matrix adds up to {confusion.sum()}, not n = {doc['n']:g} (at least 1)"
        if not 0 <= doc["loss"] <= MAX_LOSS:
            return f"a loss outside [0, {MAX_LOSS:g}]"
        rates = _confusion_rates(confusion)
        if not all(_close(doc[k], v) for k, v in rates.items()):
            return "accuracy, balanced_accuracy or macro_f1 does not follow from the confusion matrix"
        return None

    def pool(self, per: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        confusion = np.sum([np.array(m["confusion"], dtype=np.int64) for m in per.values()], axis=0)
        n = float(confusion.sum())
        return {**_confusion_rates(confusion), "loss": sum(m["loss"] * m["n"] for m in per.values()) / n, "n": n}

    def average_keys(self) -> tuple[str, ...]:
        return ("accuracy", "balanced_accuracy", "macro_f1", "loss")


def _confusion_rates(confusion: np.ndarray) -> dict[str, float]:
    """accuracy, balanced_accuracy (mean recall of the classes present) and macro_f1 (mean F1
    over the classes present or predicted) of a confusion[true][predicted] matrix."""
    hits = np.diag(confusion).astype(np.float64)
    actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = actual > 0
    seen = present | (predicted > 0)
    f1 = np.divide(2 * hits, actual + predicted, out=np.zeros_like(hits), where=(actual + predicted) > 0)
    return {"accuracy": float(hits.sum() / confusion.sum()),
            "balanced_accuracy": float(np.mean(hits[present] / actual[present])),
            "macro_f1": float(np.mean(f1[seen]))}


@dataclass(frozen=True)
class RegressionTask(Task):
    """A number, learnt in the units the label was standardised to: a prediction of
    `label_mean + label_std * output` in the label's own units, which every figure is in."""

    label_mean: float = 0.0
    label_std: float = 1.0
    kind: ClassVar[str] = "regression"
    headline: ClassVar[str] = "rmse"

    def loss(self, pred: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return F.mse_loss(pred, (y - self.label_mean) / self.label_std)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return self.label_mean + self.label_std * np.asarray(pred, dtype=np.float64)

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> Figures:
        """rmse, mae and loss (the mean squared error) in the label's units, r2, and the sums
        n, sse, sae, sum_y, sum_y2 that pooled figures follow from."""
        truth = np.asarray(y, dtype=np.float64)
        error = self.predictions(pred) - truth
        sums = {"n": float(len(truth)), "sse": float(np.sum(error ** 2)), "sae": float(np.sum(np.abs(error))),
                "sum_y": float(truth.sum()), "sum_y2": float(np.sum(truth ** 2))}
        return {**_regression_rates(sums), **sums}

    def problem(self, doc: Mapping[str, Any]) -> str | None:
        sums = ("n", "sse", "sae", "sum_y", "sum_y2")
        problem = _keys_problem(doc, {*sums, "rmse", "mae", "loss", "r2"}) or _counts_problem(doc, ("n",))
        if problem:
            return problem
        if doc["n"] < 1 or min(doc["sse"], doc["sae"], doc["sum_y2"]) < 0:
            return "n must be at least 1, and sse, sae and sum_y2 zero or positive"
        expected = _regression_rates({k: doc[k] for k in sums})
        if not all(_close(doc[k], v) for k, v in expected.items()):
            return "rmse, mae, loss or r2 does not follow from the sums"
        return None

    def pool(self, per: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        sums = {k: sum(m[k] for m in per.values()) for k in ("n", "sse", "sae", "sum_y", "sum_y2")}
        return {**_regression_rates(sums), "n": sums["n"]}

    def score(self, figures: Mapping[str, Any]) -> float:
        return min(1.0, max(0.0, float(figures["r2"])))

    def stratify(self, y: np.ndarray) -> np.ndarray | None:
        return None

    def average_keys(self) -> tuple[str, ...]:
        return ("rmse", "mae", "r2", "loss")


def _regression_rates(sums: Mapping[str, float]) -> dict[str, float]:
    n = sums["n"]
    spread = sums["sum_y2"] - sums["sum_y"] ** 2 / n
    return {"rmse": math.sqrt(sums["sse"] / n), "mae": sums["sae"] / n, "loss": sums["sse"] / n,
            "r2": 1.0 - sums["sse"] / spread if spread > 1e-12 * max(1.0, sums["sum_y2"]) else 0.0}


@dataclass(frozen=True)
class SurvivalTask(Task):
    """A log relative risk under Cox's proportional hazards; y holds (time, event) per record,
    event 1 for an observed event and 0 for a censored time."""

    kind: ClassVar[str] = "survival"
    headline: ClassVar[str] = "c_index"

    def loss(self, pred: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return cox_loss(pred, y[:, 0], y[:, 1])

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> Figures:
        """c_index (Harrell's, when some pair is comparable), loss (the negative partial
        log-likelihood per event, 0 without events), and the counts n, events, concordant,
        discordant and tied (pairs of equal risk) that a pooled C-index follows from."""
        risk = np.asarray(pred, dtype=np.float64)
        time, event = np.asarray(y[:, 0], dtype=np.float64), np.asarray(y[:, 1]) > 0.5
        with torch.no_grad():
            loss = cox_loss(torch.from_numpy(risk), torch.from_numpy(time), torch.from_numpy(event.astype(np.float64)))
        counts = concordance_counts(risk, time, event)
        figures: Figures = {"loss": float(loss), "n": float(len(risk)), "events": float(event.sum()), **counts}
        figures.update(_c_index(counts))
        return figures

    def problem(self, doc: Mapping[str, Any]) -> str | None:
        counts = ("n", "events", "concordant", "discordant", "tied")
        problem = _keys_problem(doc, {*counts, "loss"}, {"c_index"}) or _counts_problem(doc, counts)
        if problem:
            return problem
        if doc["n"] < 1 or doc["events"] > doc["n"] or not 0 <= doc["loss"] <= 1e6:
            return "n must be at least 1, events at most n, and the loss zero or positive"
        pairs = doc["concordant"] + doc["discordant"] + doc["tied"]
        if pairs > doc["events"] * (doc["n"] - 1):
            return "more comparable pairs than events times other records"
        expected = _c_index({k: doc[k] for k in counts[2:]})
        if set(expected) != {k for k in doc if k == "c_index"} or not all(_close(doc[k], v) for k, v in expected.items()):
            return "c_index does not follow from the pair counts"
        return None

    def pool(self, per: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        counts = {k: sum(m[k] for m in per.values()) for k in ("concordant", "discordant", "tied")}
        n, events = sum(m["n"] for m in per.values()), sum(m["events"] for m in per.values())
        loss = sum(m["loss"] * m["events"] for m in per.values()) / events if events else 0.0
        return {**_c_index(counts), "loss": loss, "n": n, "events": events}

    def score(self, figures: Mapping[str, Any]) -> float:
        return float(figures.get("c_index", 0.5))

    def aggregation_weight(self, y: np.ndarray) -> int:
        """The events: the partial likelihood sums over them, so a hospital with many censored
        records and few events knows little (at least 1, so that every update counts)."""
        return max(1, int(np.sum(y[:, 1] > 0.5)))

    def stratify(self, y: np.ndarray) -> np.ndarray | None:
        return y[:, 1]


def _c_index(counts: Mapping[str, float]) -> dict[str, float]:
    pairs = counts["concordant"] + counts["discordant"] + counts["tied"]
    return {"c_index": (counts["concordant"] + 0.5 * counts["tied"]) / pairs} if pairs else {}


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Cox's negative partial log-likelihood per event, Breslow's approximation for tied times:
    each event at time t is set against every record still at risk at t (time >= t). 0 when the
    batch holds no event."""
    order = torch.argsort(time, descending=True, stable=True)
    risk, time, event = risk[order], time[order], event[order]
    at_risk = torch.logcumsumexp(risk, dim=0)
    # records tied with one at index i come after it in this order: all are at risk at time[i],
    # so each takes the sum up to the last of its ties
    last_tie = torch.searchsorted(-time, -time, right=True) - 1
    log_risk_set = at_risk[last_tie]
    events = event.sum()
    if events == 0:
        return (risk * 0.0).sum()
    return -((risk - log_risk_set) * event).sum() / events


def concordance_counts(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> dict[str, float]:
    """Harrell's pair counts: a pair is comparable when the earlier time is an event; it is
    concordant when that record has the higher risk, tied when the risks are equal."""
    risk, time, event = np.asarray(risk, np.float64), np.asarray(time, np.float64), np.asarray(event, bool)
    concordant = discordant = tied = 0
    later_time, later_risk = time[None, :], risk[None, :]
    for start in range(0, len(risk), 1024):       # 1024 x n at a time: bounded memory
        idx = np.nonzero(event[start:start + 1024])[0] + start
        if not len(idx):
            continue
        comparable = time[idx, None] < later_time
        mine = risk[idx, None]
        concordant += int(np.sum(comparable & (mine > later_risk)))
        discordant += int(np.sum(comparable & (mine < later_risk)))
        tied += int(np.sum(comparable & (mine == later_risk)))
    return {"concordant": float(concordant), "discordant": float(discordant), "tied": float(tied)}


BINARY = BinaryTask()


def make_task(kind: str, *, classes: int = 0, threshold: float = 0.5, label_mean: float = 0.0,
              label_std: float = 1.0) -> Task:
    """The task of a kind, with the parameters that kind takes."""
    if kind == "binary":
        return BinaryTask(threshold)
    if kind == "multiclass":
        return MulticlassTask(classes)
    if kind == "regression":
        if not (math.isfinite(label_mean) and label_std > 0 and math.isfinite(label_std)):
            raise ConfigError(f"a regression task needs a finite label mean and a positive label scale, got "
                              f"{label_mean} and {label_std}")
        return RegressionTask(label_mean, label_std)
    if kind == "survival":
        return SurvivalTask()
    raise ConfigError(f"the task must be one of {', '.join(TASKS)}, got {kind!r}")
