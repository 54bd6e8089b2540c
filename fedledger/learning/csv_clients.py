"""Institutions' own data: one CSV file with a header row per institution (and, for a given
split, its test rows in a file of their own or marked in a column)."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import ClientData, make_client, mix_shared
from fedledger.learning.tasks import TASKS, make_task

SPLIT_VALUES = ("train", "test")
EVENT_VALUES = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0, "no": 0.0, "yes": 1.0}


@dataclass(frozen=True)
class CsvColumns:
    """Which columns hold what. `task` "binary", "multiclass" and "regression" learn the `label`
    column; "survival" the `time` (zero or positive) and `event` (1 observed, 0 censored; also
    true/false, yes/no) columns. Multiclass labels must be among `classes`, whose order gives
    the class indices. `features` defaults to every column but the labels, `split_column` and
    `exclude`; `split_column`, if named, marks each row "train" or "test"."""

    task: str = "binary"
    label: str = ""
    time: str = ""
    event: str = ""
    classes: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    split_column: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name in ("features", "exclude", "classes"):
            if isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a list of column names, got the string {getattr(self, name)!r}")
        if (self.task == "survival") != bool(self.time and self.event) or (self.task != "survival") != bool(self.label):
            raise ConfigError("a survival task needs the time and event columns, any other task the label column")
        for col in self.labels:
            if col in self.features or col in self.exclude or col == self.split_column:
                raise ConfigError(f"label column {col!r} is also listed as a feature, excluded, or the split column")
        if self.task == "multiclass":
            make_task("multiclass", classes=len(self.classes))   # 2 to 32 classes

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.time, self.event) if self.task == "survival" else (self.label,)


def load_csv_clients(paths: Mapping[str, Path], columns: CsvColumns, test_fraction: float, seed: int,
                     test_paths: Mapping[str, Path] | None = None,
                     shared: tuple[Path, str] | None = None) -> list[ClientData]:
    """One client per (name, CSV path), in the mapping's order.

    Feature values must be finite numbers, small enough to standardize; without listed
    features all files must have the same columns. A binary label must take two values across
    all files: 0/1 as is; any other pair maps its smaller value (numerically if both are
    numbers, else as text) to 0 and the larger to 1. Each file is split at random (stratified
    on the label, or the event), unless `columns.split_column` or `test_paths` (name -> the
    institution's test rows) give the split; each institution standardizes with its own
    training rows. `shared` = (path, sha-256 of the file) names a dataset every institution
    adds to its training rows (`mix_shared`), refused unless the file has that digest.
    """
    if not paths:
        raise ConfigError("load_csv_clients needs at least one CSV path")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if seed < 0:
        raise ConfigError(f"seed must be zero or positive, got {seed}")
    if test_paths is not None and (set(test_paths) != set(paths) or columns.split_column):
        raise ConfigError("test_paths must name one test file for each institution, and no split column with them")
    tables = {name: read_table(Path(path)) for name, path in paths.items()}
    tests = {name: read_table(Path(path)) for name, path in (test_paths or {}).items()}
    features = list(columns.features) or _default_features(tables, columns)
    rows = {name: _rows(table, tests.get(name), columns, features) for name, table in tables.items()}
    shared_rows = _rows(_shared_table(*shared), None, columns, features) if shared else None
    labelled = {name: r.labels for name, r in rows.items()} | ({"": shared_rows.labels} if shared_rows else {})
    encode = _label_encoder(columns, labelled, tables)
    task = make_task(columns.task, classes=len(columns.classes))
    y_shared = None if shared_rows is None else np.array([encode(v) for v in shared_rows.labels], np.float32)
    clients = []
    for name, table in tables.items():
        r = rows[name]
        y = np.array([encode(v) for v in r.labels], dtype=np.float32)
        split = _given_split(table, tests.get(name), columns.split_column)
        # an overflow is reported below as a DataError naming the column, not as a RuntimeWarning
        with np.errstate(over="ignore", invalid="ignore"):
            client = make_client(name, r.x, y, test_fraction, seed, task.stratify, split, features, encode.classes)
        _check_standardized(table.path, features, r.x, client)
        if shared_rows is not None:
            client = mix_shared(client, shared_rows.x, y_shared)
        clients.append(client)
    return clients


def _shared_table(path: Path, sha256: str) -> Table:
    """The shared dataset's table, once its file is the one the study names by digest."""
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the shared dataset ({exc.strerror})") from None
    if digest != sha256.lower():
        raise DataError(f"{path} is not the shared dataset the study names: its sha-256 is {digest}, "
                        f"the study's [data].shared_sha256 is {sha256}")
    return read_table(Path(path))


@dataclass(frozen=True)
class _Rows:
    x: np.ndarray                                   # float64 features, train rows then test rows
    labels: list[tuple[str, ...]]                   # the label cells of each row


def _rows(table: Table, test: Table | None, columns: CsvColumns, features: Sequence[str]) -> _Rows:
    parts = [table] if test is None else [table, test]
    needed = [*columns.labels, *features]
    x, labels = [], []
    for part in parts:
        for col in needed:
            if col not in part.header:
                raise DataError(f"{part.path}: no column {col!r} (columns: {', '.join(part.header)})")
        where = [(col, part.header.index(col)) for col in features]
        x += [[number_cell(part.path, line, col, cells[k]) for col, k in where] for line, cells in part.rows]
        labels += _label_texts(part, columns.labels)
    return _Rows(np.array(x, dtype=np.float64).reshape(len(labels), len(features)), labels)


def _given_split(table: Table, test: Table | None, split_column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An institution's given train and test row indices (its rows, then its test file's), if
    it has a split of its own; None for a random one."""
    if test is not None:
        return np.arange(len(table.rows)), np.arange(len(table.rows), len(table.rows) + len(test.rows))
    return _split_of(table, split_column) if split_column else None


def _split_of(table: Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    if column not in table.header:
        raise DataError(f"{table.path}: no column {column!r} (columns: {', '.join(table.header)})")
    k = table.header.index(column)
    sides = []
    for line, cells in table.rows:
        side = cells[k].lower()
        if side not in SPLIT_VALUES:
            raise DataError(f"{table.path}: line {line}, split column {column!r} holds {cells[k]!r}; "
                            "each row must be \"train\" or \"test\"")
        sides.append(side == "test")
    test = np.array(sides)
    if test.all() or (~test).sum() < 2:
        raise DataError(f"{table.path}: split column {column!r} leaves {int((~test).sum())} training rows and "
                        f"{int(test.sum())} test rows; each side needs rows (training at least 2)")
    if not test.any():
        raise DataError(f"{table.path}: split column {column!r} marks no row \"test\"")
    return np.nonzero(~test)[0], np.nonzero(test)[0]


@dataclass(frozen=True)
class Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]     # (line number in the file, stripped cells)


def read_table(path: Path) -> Table:
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
    return Table(path, header, rows)


def _default_features(tables: dict[str, Table], columns: CsvColumns) -> list[str]:
    first = next(iter(tables.values()))
    for table in tables.values():
        if set(table.header) != set(first.header):
            raise DataError(f"{table.path}: columns differ from {first.path} "
                            f"(only here: {sorted(set(table.header) - set(first.header))}, "
                            f"missing: {sorted(set(first.header) - set(table.header))}); list the features to use")
    skipped = {*columns.labels, *columns.exclude, columns.split_column}
    missing = [c for c in columns.exclude if c not in first.header]
    if missing:
        raise DataError(f"{first.path}: no column {missing[0]!r} to exclude (columns: {', '.join(first.header)})")
    return [c for c in first.header if c not in skipped]


def number_cell(path: Path, line: int, column: str, text: str) -> float:
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


def _label_texts(table: Table, labels: Sequence[str]) -> list[tuple[str, ...]]:
    """The label cells of each row, after checking none is missing or a non-finite number."""
    where = [(col, table.header.index(col)) for col in labels]
    texts = []
    for line, cells in table.rows:
        for col, k in where:
            text = cells[k]
            if text == "" or (_is_float(text) and not math.isfinite(float(text))):
                raise DataError(f"{table.path}: line {line}, label column {col!r} has no usable value ({text!r})")
        texts.append(tuple(cells[k] for _, k in where))
    return texts


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Encoder:
    """A row's label cells to its label (a float, or for survival (time, event)), and the
    classes' names in index order (binary and multiclass)."""
    encode: Callable[[tuple[str, ...]], Any]
    classes: tuple[str, ...] = ()

    def __call__(self, cells: tuple[str, ...]) -> Any:
        return self.encode(cells)


def _label_encoder(columns: CsvColumns, labels: dict[str, list[tuple[str, ...]]], tables: dict[str, Table]) -> _Encoder:
    texts = {v[0] for values in labels.values() for v in values}
    files = ", ".join(str(t.path) for t in tables.values())
    if columns.task == "binary":
        return _binary_encoder(columns.label, texts, files)
    if columns.task == "multiclass":
        return _Encoder(_class_encoder(columns, texts, files), columns.classes)
    if columns.task == "regression":
        return _Encoder(lambda v: _value(columns.label, v[0], files))
    return _Encoder(lambda v: (_time(columns.time, v[0], files), _event(columns.event, v[1], files)))


def _binary_encoder(label: str, texts: set[str], files: str) -> _Encoder:
    # Numbers compare as numbers ("1" and "1.0" are one label); otherwise as text.
    keys: dict[str, float | str] = {t: float(t) for t in texts} if all(map(_is_float, texts)) else {t: t for t in texts}
    distinct = sorted(set(keys.values()))
    if len(distinct) != 2:
        shown = ", ".join(map(str, distinct[:5])) + (", ..." if len(distinct) > 5 else "")
        raise DataError(f"label column {label!r} must hold exactly two distinct values across {files}, "
                        f"found {len(distinct)}: {shown}")
    mapping = {t: float(keys[t] == distinct[1]) for t in texts}
    named = [min((t for t in texts if keys[t] == d), key=len) for d in distinct]   # "1" before "1.0"
    return _Encoder(lambda v: mapping[v[0]], tuple(named))


def _class_encoder(columns: CsvColumns, texts: set[str], files: str):
    """Each label text to the index of the class it is ("2" and "2.0" are one class)."""
    def key(text: str) -> float | str:
        return float(text) if _is_float(text) else text
    index = {key(c): i for i, c in enumerate(columns.classes)}
    unknown = sorted(t for t in texts if key(t) not in index)
    if unknown:
        raise DataError(f"label column {columns.label!r} holds {unknown[0]!r} in {files}, which is not among "
                        f"[data].classes ({', '.join(columns.classes)})")
    return lambda v: float(index[key(v[0])])


def _value(column: str, text: str, files: str) -> float:
    if not _is_float(text):
        raise DataError(f"label column {column!r} holds {text!r} in {files}: a regression label must be a number")
    return float(text)


def _time(column: str, text: str, files: str) -> float:
    value = float(text) if _is_float(text) else -1.0
    if not value >= 0:
        raise DataError(f"time column {column!r} holds {text!r} in {files}: times must be numbers, zero or positive")
    return value


def _event(column: str, text: str, files: str) -> float:
    value = EVENT_VALUES.get(text.lower(), float(text) if _is_float(text) else None)
    if value not in (0.0, 1.0):
        raise DataError(f"event column {column!r} holds {text!r} in {files}: an event is 1 (observed) or 0 "
                        "(censored), or true/false, yes/no")
    return value
