"""One institution's preprocessed data, and the split and scaling every loader applies to it."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.model_selection import train_test_split

from fedledger.errors import ConfigError, DataError


@dataclass(frozen=True)
class ClientData:
    """One institution's local data, ready to train on.

    Features are float32 of shape (n, d), already standardized; labels are float32, of shape (n,)
    (binary: 0.0 or 1.0; multiclass: the class index; regression: the value) or, for survival,
    (n, 2): time and event (1.0 observed, 0.0 censored). `feature_mean` and `feature_std`, shape (d,), when given, are what the
    raw features were standardized with (x = (raw - mean) / std): what a site needs to score new
    records, and what the pooled baseline needs to rescale rows as FLamby does.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    # held-out validation rows carved from the training rows (see hold_out_validation); empty
    # unless the study asks for them
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    # what the columns of x are, and the label's classes in index order (binary: the value
    # labelled 0, then 1): what a bundle needs to score new records (empty where unknown)
    feature_names: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Nodes hand these arrays straight to torch; catching a bad shape here names the client
        # instead of failing deep inside a training step.
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.float32 or y.dtype != np.float32:
                raise DataError(f"client {self.name!r}: {part} arrays must be float32, "
                                f"got x {x.dtype} and y {y.dtype}")
            if x.ndim != 2 or not (y.ndim == 1 or y.ndim == 2 and y.shape[1] == 2) or len(x) != len(y):
                raise DataError(f"client {self.name!r}: {part} needs x of shape (n, d) and y of shape (n,) "
                                f"or (n, 2), got {x.shape} and {y.shape}")
        if self.x_test.shape[1] != self.x_train.shape[1]:
            raise DataError(f"client {self.name!r}: test has {self.x_test.shape[1]} features, "
                            f"train has {self.x_train.shape[1]}")
        if self.feature_names and len(self.feature_names) != self.num_features:
            raise DataError(f"client {self.name!r}: {len(self.feature_names)} feature names for "
                            f"{self.num_features} features")
        stats = (self.feature_mean, self.feature_std)
        if any(s is not None for s in stats) and any(s is None or s.shape != (self.num_features,) for s in stats):
            raise DataError(f"client {self.name!r}: feature_mean and feature_std must both be given, "
                            f"each of shape ({self.num_features},)")

    @property
    def num_validation(self) -> int:
        return 0 if self.y_val is None else len(self.y_val)

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]


def whole(value: object) -> bool:
    """Whether `value` is a whole number (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_simulator_arguments(num_clients: int, max_clients: int, seed: int, test_fraction: float) -> None:
    """ConfigError for the arguments every data simulator takes: 2 to `max_clients` clients, a
    seed of 0 or more, a test fraction between 0 and 1."""
    if not whole(num_clients) or not 2 <= num_clients <= max_clients:
        raise ConfigError(f"num_clients must be a whole number from 2 to {max_clients}, got {num_clients!r}")
    if not whole(seed) or seed < 0:
        raise ConfigError(f"seed must be a whole number, zero or positive, got {seed!r}")
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0.0 < test_fraction < 1.0):
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")


def split_indices(y: np.ndarray | None, test_fraction: float, seed: int, *, where: str,
                  n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/test row indices of n rows, stratified on y (when given) when every class
    has more than 2 rows.

    This is FLamby's rule for Fed-Heart-Disease; with 2 rows or fewer in a class a stratified
    split is impossible or leaves that class out of one side anyway. Stratifying also needs a
    row of each class on each side, so tiny sets fall back to a plain shuffle.
    """
    n = len(y) if y is not None else int(n or 0)
    n_test = int(np.ceil(test_fraction * n))   # scikit-learn rounds the test side up
    if n_test < 1 or n - n_test < 2:
        raise DataError(f"{where}: {n} rows are too few to split with test fraction {test_fraction}")
    levels, counts = np.unique(y if y is not None else np.zeros(n), return_counts=True)
    stratifiable = len(levels) > 1 and counts.min() > 2 and min(n_test, n - n_test) >= len(levels)
    stratify = y if stratifiable else None
    # scikit-learn takes 32-bit seeds; study seeds may be wider.
    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed % 2**32,
                                   shuffle=True, stratify=stratify)
    return np.sort(train), np.sort(test)


def hold_out_validation(data: ClientData, fraction: float, seed: int,
                        stratify: Callable[[np.ndarray], np.ndarray | None] = lambda y: y) -> ClientData:
    """The same client with `fraction` of its training rows moved to a validation set.

    Split as train/test are (stratified on `stratify(y)` where possible: the task's
    `Task.stratify`), from a seed of its own so that the split does not depend on anything else
    the study draws.
    """
    if fraction == 0.0:
        return data
    keep, held = split_indices(stratify(data.y_train), fraction, seed, where=f"{data.name} (validation split)",
                               n=data.num_train)
    return replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                   x_val=data.x_train[held], y_val=data.y_train[held])


def standardize(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation of each training column, to z-score with.

    A constant training column keeps a scale of 1 (only centred): dividing by zero would turn any
    test value off that constant into inf.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, ddof=1, dtype=np.float64)
    std[std == 0] = 1.0
    return mean, std


def make_client(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
                stratify: Callable[[np.ndarray], np.ndarray | None] = lambda y: y,
                split: tuple[np.ndarray, np.ndarray] | None = None, feature_names: Sequence[str] = (),
                classes: Sequence[str] = ()) -> ClientData:
    """Split one institution's rows (stratified on `stratify(y)`; or as `split` gives: train and
    test row indices), standardize with its own training statistics, wrap them."""
    train, test = split if split is not None else split_indices(stratify(y), test_fraction, seed, where=name,
                                                               n=len(y))
    mean, std = standardize(x[train])
    return ClientData(name, ((x[train] - mean) / std).astype(np.float32), y[train].astype(np.float32),
                      ((x[test] - mean) / std).astype(np.float32), y[test].astype(np.float32), mean, std,
                      feature_names=tuple(feature_names), classes=tuple(classes))


def mix_shared(data: ClientData, x_shared: np.ndarray, y_shared: np.ndarray) -> ClientData:
    """The institution with a shared dataset's rows (raw features) added to its training rows,
    standardized with its own scaling: the two-stage remedy for skewed data (Lian et al., 2022),
    where a small dataset its donors consented to share is mixed into every site's training."""
    if data.feature_mean is None or data.feature_std is None:
        raise DataError(f"client {data.name!r} has no scaling to standardize the shared rows with")
    if x_shared.ndim != 2 or x_shared.shape[1] != data.num_features or len(x_shared) != len(y_shared):
        raise DataError(f"the shared dataset has shape {x_shared.shape} with {len(y_shared)} labels; "
                        f"{data.name} has {data.num_features} features")
    shared = ((x_shared - data.feature_mean) / data.feature_std).astype(np.float32)
    return replace(data, x_train=np.concatenate([data.x_train, shared]),
                   y_train=np.concatenate([data.y_train, y_shared.astype(np.float32)]))


def raw_features(data: ClientData, x: np.ndarray) -> np.ndarray:
    """Rows of `data`'s features as they were before its standardization (float64)."""
    if data.feature_mean is None or data.feature_std is None:
        raise DataError(f"client {data.name!r} keeps no scaling to undo")
    return x.astype(np.float64) * data.feature_std + data.feature_mean


def rescaled(data: ClientData, mean: np.ndarray, std: np.ndarray) -> ClientData:
    """The same institution standardized with (mean, std) instead of its own statistics (the
    consortium's, once they are known)."""
    def scale(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else ((raw_features(data, x) - mean) / std).astype(np.float32)
    return replace(data, x_train=scale(data.x_train), x_test=scale(data.x_test), x_val=scale(data.x_val),
                   feature_mean=np.asarray(mean, np.float64), feature_std=np.asarray(std, np.float64))
