"""`fedledger export RUN`: a run's model with what it takes to use it, as a directory.

    model.safetensors  the model's parameters: the very artifact the ledger names (its sha-256
                       is the model digest on chain), one float32 vector "params" (under
                       SCAFFOLD its first half; the server's control variate follows)
    model.onnx         the same model as ONNX (input "x": standardized features), where torch
                       exports it
    bundle.json        the study, run, round and model digest; the model's architecture and
                       task (the classes, the decision threshold); the features by name and each
                       institution's scaling; what model.onnx takes and gives
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedledger.aggregation import model_part
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError, FedLedgerError
from fedledger.learning import build_model, make_task, set_flat_params
from fedledger.learning.preprocessing import PREPROCESSING_FORMAT
from fedledger.learning.tasks import RegressionTask
from fedledger.protocol.setup import model_spec
from fedledger.rundir import RunDir
from fedledger.store import ArtifactStore, canonical_json, sha256_hex

BUNDLE_FORMAT = "fedledger.bundle/1"
MODEL_FILE, ONNX_FILE, BUNDLE_FILE = "model.safetensors", "model.onnx", "bundle.json"
# what each task's model gives, for bundle.json and the ONNX output's description
OUTPUTS = {"binary": "P(class 1), shape (n,)", "multiclass": "one logit per class, shape (n, classes)",
           "regression": "the prediction as label_mean + label_std x output, shape (n,)",
           "survival": "the log relative risk (Cox), shape (n,)"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    path: Path
    round: int
    model: str          # the model digest
    onnx: bool          # whether model.onnx was written


def export_bundle(run_dir: str | Path, out_dir: str | Path | None = None, round: int | None = None) -> Exported:
    """Write the bundle of round `round`'s model (default: the last round) of the run at `run_dir`
    to `out_dir` (default RUN/bundle-round-N; it must be new or empty)."""
    run = RunDir(Path(run_dir))
    info = run.read_run_info()
    config = _object(run, "config.json", "the run's config")
    cfg = config_from_dict(config)
    preprocessing = _object(run, "preprocessing.json", "the run's preprocessing record (runs made before FedLedger "
                                                       "wrote one cannot be exported: run the study again)")
    if preprocessing.get("format") != PREPROCESSING_FORMAT:
        raise FedLedgerError(f"{run.path / 'preprocessing.json'} is not a {PREPROCESSING_FORMAT} record")
    rounds = _models(run)
    n = round if round is not None else max(rounds, default=0)
    if n not in rounds:
        raise ConfigError(f"{run.path} has no model of round {n} (its rounds: 1 to {max(rounds, default=0)})")
    model_bytes = ArtifactStore(run.store).get(rounds[n])     # re-hashed on read
    params = ArtifactStore(run.store).get_params(rounds[n])
    spec = model_spec(cfg, len(preprocessing["features"]))
    if spec.task.kind == "regression":     # learnt in the label's scaling the run recorded
        spec = dataclasses.replace(spec, task=make_task("regression", label_mean=preprocessing.get("label_mean", 0.0),
                                                        label_std=preprocessing.get("label_std", 1.0)))
    model = build_model(spec.name, spec.num_features, hidden=spec.hidden, seed=0, task=spec.task, shape=spec.shape)
    # ValueError if the vector does not fit the architecture; SCAFFOLD's holds the server's control variate after it
    set_flat_params(model, model_part(params, spec.control_variates))
    out = Path(out_dir) if out_dir is not None else run.path / f"bundle-round-{n}"
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; give a new directory for the bundle")
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(model_bytes)
    onnx = _write_onnx(model, spec.num_features, out / ONNX_FILE)
    bundle = {
        "format": BUNDLE_FORMAT,
        "study": cfg.study.name, "run": run.path.name, "round": n, "model_digest": rounds[n],
        "config_digest": sha256_hex(canonical_json(config)),
        "chain": info.get("chain"), "contracts": info.get("contracts"),
        "model": {"name": spec.name, "hidden": list(spec.hidden), "num_features": spec.num_features,
                  "shape": list(spec.shape), "control_variates": spec.control_variates,
                  "file": MODEL_FILE, "sha256": sha256_hex(model_bytes)},
        "task": {"kind": spec.task.kind, "classes": preprocessing["classes"], "threshold": cfg.model.threshold,
                 "output": OUTPUTS[spec.task.kind],
                 **({"label_mean": spec.task.label_mean, "label_std": spec.task.label_std}
                    if isinstance(spec.task, RegressionTask) else {})},
        "features": preprocessing["features"], "scaling": preprocessing["scaling"],
        "onnx": {"file": ONNX_FILE, "input": "x: float32 (n, features), each feature standardized with an "
                 "institution's scaling", "output": OUTPUTS[spec.task.kind]} if onnx else None,
    }
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n")
    return Exported(out, n, rounds[n], onnx)


def _object(run: RunDir, name: str, what: str) -> dict[str, Any]:
    doc = run.read_json(name, f"{run.path / name} is missing: {what}")
    if not isinstance(doc, dict):
        raise FedLedgerError(f"{run.path / name} is not a JSON object")
    return doc


def _models(run: RunDir) -> dict[int, str]:
    """Round -> model digest, from metrics.jsonl."""
    rounds = {}
    try:
        lines = run.metrics.read_text().splitlines()
    except FileNotFoundError:
        raise FedLedgerError(f"{run.metrics} is missing: the run has no rounds to export") from None
    for line in lines:
        try:
            entry = json.loads(line)
            rounds[int(entry["round"])] = str(entry["model"])
        except (ValueError, KeyError, TypeError):
            raise FedLedgerError(f"{run.metrics} holds a line that is not a round's record") from None
    return rounds


def _write_onnx(model: torch.nn.Module, num_features: int, path: Path) -> bool:
    """model.onnx, with a variable number of rows; False (and why, logged) where torch cannot."""
    try:
        model.eval()
        with warnings.catch_warnings():
            # the TorchScript exporter, deprecated for torch.export's, which needs onnxscript on top
            # of onnx; these models (linear layers, ReLU, sigmoid) are well within what it exports
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(model, (torch.zeros(1, num_features),), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    except Exception as exc:   # an exporter limit is no reason to lose the rest of the bundle
        log.warning("no model.onnx: torch could not export the model (%s)", str(exc).splitlines()[0][:200])
        path.unlink(missing_ok=True)
        return False
    return True
