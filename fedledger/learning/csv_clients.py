"""Institutions' own data: one CSV file with a header row per institution."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import ClientData, make_client


def load_csv_clients(paths: Mapping[str, Path], label: str, features: Sequence[str] | None,
                     test_fraction: float, seed: int) -> list[ClientData]:
    """One client per (name, CSV path), in the mapping's order.

    Feature values must be finite numbers, small enough to standardize. `features` defaults to
    every column but the label, and then all files must have the same columns. The label must take
    two values across all files: 0/1 as is; any other pair maps its smaller value (numerically if
    both are numbers, else as text) to 0 and the larger to 1. Each file gets its own split and
    standardization.
    """
    if not paths:
        raise ConfigError("load_csv_clients needs at least one CSV path")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if seed < 0:
        raise ConfigError(f"seed must be zero or positive, got {seed}")
    if isinstance(features, str):
        raise ConfigError(f"features must be a list of column names, got the string {features!r}")
    if features is not None and label in features:
        raise ConfigError(f"label column {label!r} is also listed as a feature")
    tables = {name: _read_csv(Path(path)) for name, path in paths.items()}
    columns = list(features) if features is not None else _default_features(tables, label)
    xs, labels = {}, {}
    for name, table in tables.items():
        for col in (label, *columns):
            if col not in table.header:
                raise DataError(f"{table.path}: no column {col!r} (columns: {', '.join(table.header)})")
        where = [(col, table.header.index(col)) for col in columns]
        xs[name] = np.array([[_number(table.path, line, col, cells[k]) for col, k in where]
                             for line, cells in table.rows], dtype=np.float64)
        labels[name] = _label_texts(table, label)
    encode = _label_encoder(label, labels, tables)
    clients = []
    for name, table in tables.items():
        # an overflow is reported below as a DataError naming the column, not as a RuntimeWarning
        with np.errstate(over="ignore", invalid="ignore"):
            client = make_client(name, xs[name], np.array([encode[v] for v in labels[name]], dtype=np.float32),
                                 test_fraction, seed)
        _check_standardized(table.path, columns, xs[name], client)
        clients.append(client)
    return clients


@dataclass(frozen=True)
class _Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]     # (line number in the file, stripped cells)


def _read_csv(path: Path) -> _Table:
    """Header and rows as stripped text; every row must have one value per header column."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not lines:
        raise DataError(f"{path}: file is empty")
    (_, header), rows = lines[0], lines[1:]
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise DataError(f"{path}: column {duplicates[0]!r} appears more than once in the header")
    if not rows:
        raise DataError(f"{path}: header but no data rows")
    for line, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path}: line {line} has {len(cells)} values, the header has {len(header)} columns")
    return _Table(path, header, rows)


def _default_features(tables: dict[str, _Table], label: str) -> list[str]:
    first = next(iter(tables.values()))
    for table in tables.values():
        if set(table.header) != set(first.header):
            raise DataError(f"{table.path}: columns differ from {first.path} "
                            f"(only here: {sorted(set(table.header) - set(first.header))}, "
                            f"missing: {sorted(set(first.header) - set(table.header))}); list the features to use")
    return [c for c in first.header if c != label]


def _number(path: Path, line: int, column: str, text: str) -> float:
    if text == "":
        raise DataError(f"{path}: line {line}, column {column!r} is empty")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}, column {column!r}: {text!r} is not a finite number")
    return value


def _check_standardized(path: Path, columns: Sequence[str], raw: np.ndarray, client: ClientData) -> None:
    """DataError naming the first column whose finite values still overflowed standardization:
    its float64 mean or deviation, or a z-score beyond float32 (huge magnitudes, e.g. 1e308)."""
    assert client.feature_mean is not None and client.feature_std is not None   # make_client sets both
    finite = (np.isfinite(client.feature_mean) & np.isfinite(client.feature_std)
              & np.isfinite(client.x_train).all(axis=0) & np.isfinite(client.x_test).all(axis=0))
    if not finite.all():
        k = int(np.argmin(finite))
        raise DataError(f"{path}: column {columns[k]!r} has values too large to standardize (largest "
                        f"magnitude {np.abs(raw[:, k]).max():g}); rescale it, e.g. to other units")


def _label_texts(table: _Table, label: str) -> list[str]:
    """The label column as text, after checking no value is missing or a non-finite number."""
    k = table.header.index(label)
    for line, cells in table.rows:
        text = cells[k]
        if text == "" or (_is_float(text) and not math.isfinite(float(text))):
            raise DataError(f"{table.path}: line {line}, label column {label!r} has no usable value ({text!r})")
    return [cells[k] for _, cells in table.rows]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_encoder(label: str, labels: dict[str, list[str]], tables: dict[str, _Table]) -> dict[str, float]:
    """Map each label text to 0.0 or 1.0, consistently across all files."""
    texts = {v for values in labels.values() for v in values}
    # Numbers compare as numbers ("1" and "1.0" are one label); otherwise as text.
    keys: dict[str, float | str] = {t: float(t) for t in texts} if all(map(_is_float, texts)) else {t: t for t in texts}
    distinct = sorted(set(keys.values()))
    if len(distinct) != 2:
        shown = ", ".join(map(str, distinct[:5])) + (", ..." if len(distinct) > 5 else "")
        files = ", ".join(str(t.path) for t in tables.values())
        raise DataError(f"label column {label!r} must hold exactly two distinct values across {files}, "
                        f"found {len(distinct)}: {shown}")
    return {t: float(keys[t] == distinct[1]) for t in texts}
