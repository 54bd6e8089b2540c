"""`fedledger predict BUNDLE CSV`: score new records with an exported model.

The bundle's model file is checked against the model digest it names (the digest on chain)
before anything is scored, so a prediction traces to the ledger: bundle.json says which study,
run and round made the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.aggregation import model_part
from fedledger.bundle.export import BUNDLE_FILE, BUNDLE_FORMAT, MODEL_FILE
from fedledger.errors import DataError, FedLedgerError, UpdateRejected
from fedledger.learning import Task, build_model, make_task, set_flat_params
from fedledger.learning.csv_clients import number_cell, read_table
from fedledger.learning.tasks import RegressionTask
from fedledger.store import sha256_hex
from fedledger.store.codec import decode_params

MAX_BUNDLE_JSON = 10 * 2**20      # bundle.json: features and scalings, far below this


@dataclass(frozen=True)
class Bundle:
    path: Path
    doc: dict[str, Any]
    model: torch.nn.Module
    task: Task

    @property
    def features(self) -> list[str]:
        return list(self.doc["features"])

    def describe(self) -> str:
        d = self.doc
        return (f"model {d['model_digest'][:16]}... of round {d['round']} of study {d['study']!r} "
                f"(run {d['run']}, ledger {(d.get('contracts') or {}).get('ledger', '?')})")


def load_bundle(path: str | Path) -> Bundle:
    """The bundle at `path`, its model rebuilt from model.safetensors once that file is checked
    to be the model the bundle names (DataError otherwise)."""
    path = Path(path)
    doc_path = path / BUNDLE_FILE
    if not doc_path.is_file():
        raise DataError(f"{path} is not a bundle: no {BUNDLE_FILE}")
    if doc_path.stat().st_size > MAX_BUNDLE_JSON:
        raise DataError(f"{doc_path} is larger than {MAX_BUNDLE_JSON} bytes")
    try:
        doc = json.loads(doc_path.read_text())
        if doc["format"] != BUNDLE_FORMAT:
            raise DataError(f"{doc_path} is not a {BUNDLE_FORMAT} bundle")
        spec, task_doc = doc["model"], doc["task"]
        data = (path / MODEL_FILE).read_bytes()
        if sha256_hex(data) != doc["model_digest"]:
            raise DataError(f"{path / MODEL_FILE} is not the model {doc['model_digest']} the bundle names")
        task = make_task(task_doc["kind"], classes=len(task_doc["classes"]), threshold=task_doc["threshold"],
                         label_mean=task_doc.get("label_mean", 0.0), label_std=task_doc.get("label_std", 1.0))
        model = build_model(spec["name"], spec["num_features"], hidden=spec["hidden"], seed=0, task=task,
                            shape=spec.get("shape", ()))
        set_flat_params(model, model_part(decode_params(data), bool(spec.get("control_variates"))))
    except (OSError, ValueError, KeyError, TypeError, UpdateRejected, FedLedgerError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path} is not a usable bundle: {type(exc).__name__}: {str(exc)[:200]}") from None
    model.eval()
    return Bundle(path, doc, model, task)


def predict_csv(bundle: Bundle, csv_path: str | Path, institution: str | None = None,
                keep: Sequence[str] = ()) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the predictions for every row of `csv_path`: the `keep` columns
    as they are, then the task's outputs. Features are read by name and standardized with
    `institution`'s scaling (the one there is when the bundle has one, or all are the same)."""
    if len(bundle.doc["model"].get("shape", ())) == 3:
        raise DataError("this bundle's model reads images, and `predict` scores the rows of a CSV file: score "
                        "images with model.onnx (input: grey levels in [0, 1], one row per image)")
    table = read_table(Path(csv_path))
    for col in [*bundle.features, *keep]:
        if col not in table.header:
            raise DataError(f"{table.path}: no column {col!r}, which the model needs (columns: "
                            f"{', '.join(table.header)})")
    where = [(col, table.header.index(col)) for col in bundle.features]
    raw = np.array([[number_cell(table.path, line, col, cells[k]) for col, k in where]
                    for line, cells in table.rows], dtype=np.float64)
    header, columns = _outputs(bundle, score(bundle, raw, institution))
    kept = [table.header.index(col) for col in keep]
    rows = [[cells[k] for k in kept] + [c[i] for c in columns] for i, (_, cells) in enumerate(table.rows)]
    return [*keep, *header], rows


def score(bundle: Bundle, raw: np.ndarray, institution: str | None = None) -> np.ndarray:
    """The model's outputs for rows of raw features (n, features), standardized with
    `institution`'s scaling (the one there is when the bundle has one, or all are the same)."""
    mean, std = _scaling(bundle, institution)
    with torch.no_grad():
        return bundle.model(torch.from_numpy(((raw - mean) / std).astype(np.float32))).numpy()


def _scaling(bundle: Bundle, institution: str | None) -> tuple[np.ndarray, np.ndarray]:
    scaling = bundle.doc["scaling"]
    if not scaling:
        return np.zeros(len(bundle.features)), np.ones(len(bundle.features))
    if institution is None:
        distinct = {json.dumps(s, sort_keys=True) for s in scaling.values()}
        if len(distinct) > 1:
            raise DataError(f"each institution standardized its features with its own statistics: name the one "
                            f"whose scaling to use with --institution ({', '.join(sorted(scaling))})")
        institution = next(iter(scaling))
    if institution not in scaling:
        raise DataError(f"the bundle has no scaling of {institution!r} (it has {', '.join(sorted(scaling))})")
    s = scaling[institution]
    return np.asarray(s["mean"], dtype=np.float64), np.asarray(s["std"], dtype=np.float64)


def _outputs(bundle: Bundle, output: np.ndarray) -> tuple[list[str], list[list[Any]]]:
    """Column names and values of the task's predictions."""
    task, classes = bundle.task, bundle.doc["task"]["classes"]
    if task.kind == "binary":
        names = classes or ["0", "1"]
        threshold = bundle.doc["task"]["threshold"]
        return ([f"p_{names[1]}", "predicted"],
                [[round(float(p), 6) for p in output], [names[int(p > threshold)] for p in output]])
    if task.kind == "multiclass":
        probs = torch.softmax(torch.from_numpy(output), dim=1).numpy()
        return ([*(f"p_{c}" for c in classes), "predicted"],
                [*([round(float(p), 6) for p in probs[:, k]] for k in range(len(classes))),
                 [classes[k] for k in probs.argmax(axis=1)]])
    if isinstance(task, RegressionTask):
        return ["predicted"], [[round(float(v), 6) for v in task.predictions(output)]]
    return ["log_relative_risk"], [[round(float(v), 6) for v in output]]
