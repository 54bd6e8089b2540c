"""Three public right-censored survival datasets, split across hospitals with a seeded Dirichlet
skew of the event mix.

The files ship inside the package (fedledger/datasets/survival/, see SOURCE.md there), so
nothing is downloaded. Labels are (n, 2): time, then event (1.0 observed, 0.0 censored).

- gbsg2: German Breast Cancer Study Group 2, 686 patients, recurrence-free survival (days).
- whas500: Worcester Heart Attack Study, 500 patients, survival after admission (days).
- flchain: serum free light chain study (Olmsted County), 7874 subjects, survival (days).
  `chapter` (cause of death) exists only for those who died, so it would leak the outcome;
  `creatinine` is missing for 1350 subjects (17%): dropping the column keeps every row, where
  dropping those rows would shrink and possibly bias the cohort. Neither is a feature.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from fedledger.errors import ConfigError, DataError
from fedledger.learning.breast_cancer import check_split, dirichlet_partition
from fedledger.learning.data import ClientData, split_indices, standardize


@dataclass(frozen=True)
class _Spec:
    """How to read one file: its feature columns in file order, each numeric (levels None) or
    categorical (one-hot without its first level, so the dummies are not collinear with the
    intercept), and which raw values of the event column mean an observed event."""

    features: tuple[tuple[str, tuple[str, ...] | None], ...]
    time: str
    event: str
    observed: dict[str, str]  # event column value -> "1" (observed) or "0" (censored)


_BINARY = {"0": "0", "1": "1"}
_SPECS: dict[str, _Spec] = {
    "gbsg2": _Spec(
        features=(("horTh", ("no", "yes")), ("age", None), ("menostat", ("Pre", "Post")), ("tsize", None),
                  ("tgrade", ("I", "II", "III")), ("pnodes", None), ("progrec", None), ("estrec", None)),
        time="time", event="cens", observed=_BINARY),
    "whas500": _Spec(
        features=tuple((c, None) for c in ("age", "gender", "hr", "sysbp", "diasbp", "bmi", "cvd", "afb",
                                           "sho", "chf", "av3", "miord", "mitype", "los")),
        time="lenfol", event="fstat", observed=_BINARY),
    # sample.yr (calendar year) and flc.grp (FLC decile) are ordered, so they stay numeric.
    "flchain": _Spec(
        features=(("age", None), ("sex", ("F", "M")), ("sample.yr", None), ("kappa", None), ("lambda", None),
                  ("flc.grp", None), ("mgus", ("no", "yes"))),
        time="futime", event="death", observed={"alive": "0", "dead": "1"}),
}
SURVIVAL_DATASETS = tuple(_SPECS)


def survival_feature_names(name: str) -> list[str]:
    """Feature names in column order of the loaded x; a dummy is named column_level."""
    spec = _spec(name)
    return [col if levels is None else f"{col}_{level}"
            for col, levels in spec.features for level in (levels[1:] if levels else (None,))]


def load_survival_dataset(name: str, num_clients: int, alpha: float, seed: int,
                          test_fraction: float = 0.3) -> list[ClientData]:
    """num_clients hospitals named hospital_0.., each with its own train/test split stratified on
    the event. Smaller alpha means more skewed event mixes; the same seed always gives the same
    split.

    All hospitals z-score with the statistics of all training rows together, as
    load_breast_cancer does and for the same reason: under skew a hospital's own statistics would
    centre each site on its own case mix, and the consortium-wide means and variances are what a
    federated standardization step computes from each site's count, sum and sum of squares.
    """
    spec = _spec(name)
    check_split(num_clients, alpha, seed, test_fraction)
    x, y = _read(name, spec)
    event = y[:, 1]
    parts = dirichlet_partition(event, num_clients, alpha, seed)
    splits = [split_indices(event[rows], test_fraction, seed, where=f"{name} hospital_{i}", n=len(rows))
              for i, rows in enumerate(parts)]
    mean, std = standardize(np.concatenate([x[rows][train] for rows, (train, _) in zip(parts, splits)]))
    scale = lambda rows: ((x[rows] - mean) / std).astype(np.float32)  # noqa: E731
    names = tuple(survival_feature_names(name))
    return [ClientData(f"hospital_{i}", scale(rows[train]), y[rows[train]], scale(rows[test]), y[rows[test]],
                       mean, std, feature_names=names)
            for i, (rows, (train, test)) in enumerate(zip(parts, splits))]


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ConfigError(f"unknown survival dataset {name!r}; choose one of {', '.join(SURVIVAL_DATASETS)}")
    return _SPECS[name]


def _read(name: str, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Raw features (float64, (n, d)) and labels (float32, (n, 2): time, event) of the bundled file."""
    resource = files("fedledger") / "datasets" / "survival" / f"{name}.csv"
    try:
        text = resource.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{resource}: bundled data file missing; reinstall fedledger") from None
    reader = csv.DictReader(io.StringIO(text))
    needed = [col for col, _ in spec.features] + [spec.time, spec.event]
    missing = [col for col in needed if col not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{resource}: header lacks column(s) {', '.join(missing)}")
    x_rows, y_rows = [], []
    for line_no, row in enumerate(reader, start=2):
        try:
            x_rows.append([v for col, levels in spec.features for v in _encode(row[col], levels)])
            y_rows.append([float(row[spec.time]), float(spec.observed[row[spec.event]])])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{resource}: line {line_no} holds a missing or unexpected value") from None
    x = np.asarray(x_rows, dtype=np.float64)
    y = np.asarray(y_rows, dtype=np.float32)
    if len(y) == 0 or not np.all(np.isfinite(x)) or not np.all(y[:, 0] >= 0):
        raise DataError(f"{resource}: no rows, a non-finite feature or a negative time")
    return x, y


def _encode(value: str, levels: tuple[str, ...] | None) -> list[float]:
    """A numeric value, or the one-hot dummies of a categorical one (ValueError if unknown)."""
    if levels is None:
        return [float(value)]
    hot = levels.index(value)
    return [float(hot == k) for k in range(1, len(levels))]
