"""Fed-Heart-Disease: the four UCI Heart Disease hospitals, preprocessed exactly as FLamby does.

FLamby (Owkin, NeurIPS 2022 Datasets and Benchmarks) fixes the protocol, and its published
accuracies are our yardstick, so every step below follows it: drop slope, ca and thal (mostly
missing), then any row still holding a '?'; label = num > 0; one-hot cp and restecg without their
first level; per hospital a shuffled 66/34 split with random_state 43, stratified where possible;
z-score each hospital with its own training statistics.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from fedledger.errors import DataError
from fedledger.learning.data import ClientData, make_client

# FLamby's center order (center ids 0..3) and file names.
CENTERS = ("cleveland", "hungarian", "switzerland", "va")
RAW_COLUMNS = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
               "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num")
DROPPED = ("slope", "ca", "thal")
# Column order after pandas.get_dummies in FLamby: plain columns first, then the dummies. Keeping
# it means weight i of a model means the same feature here as there.
PLAIN = ("age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak")
DUMMIES = (("cp", (2, 3, 4)), ("restecg", (1, 2)))
FEATURES = PLAIN + tuple(f"{col}_{level}" for col, levels in DUMMIES for level in levels)
CLASSES = ("num = 0", "num > 0")    # no heart disease, heart disease
TRAIN_FRACTION = 0.66
SPLIT_SEED = 43


def load_fed_heart_disease() -> list[ClientData]:
    """The four hospitals as FLamby defines them, in center order, each with 13 features.

    Train/test sizes: cleveland 199/104, hungarian 172/89, switzerland 30/16, va 85/45.
    """
    return [_load_center(name) for name in CENTERS]


def _load_center(name: str) -> ClientData:
    col = _read_raw(name)
    dummies = [(col[c] == level) for c, levels in DUMMIES for level in levels]
    x = np.column_stack([col[c] for c in PLAIN] + dummies).astype(np.float64)
    y = (col["num"] > 0).astype(np.float32)
    return make_client(name, x, y, 1.0 - TRAIN_FRACTION, SPLIT_SEED, feature_names=FEATURES, classes=CLASSES)


def _read_raw(name: str) -> dict[str, np.ndarray]:
    """The kept columns of processed.<name>.data, by name, without the rows that miss a value."""
    resource = files("fedledger") / "datasets" / "fed_heart_disease" / f"processed.{name}.data"
    kept = [c for c in RAW_COLUMNS if c not in DROPPED]
    try:
        text = resource.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{resource}: bundled data file missing; reinstall fedledger") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != len(RAW_COLUMNS):
            raise DataError(f"{resource}: line {line_no} has {len(parts)} fields, expected {len(RAW_COLUMNS)}")
        fields = dict(zip(RAW_COLUMNS, (p.strip() for p in parts)))
        values = [fields[c] for c in kept]
        if "?" in values:
            continue
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            raise DataError(f"{resource}: line {line_no} holds a value that is not a number") from None
    table = np.asarray(rows, dtype=np.float64)
    return {c: table[:, i] for i, c in enumerate(kept)}
