"""Breast Cancer Wisconsin (Diagnostic), split across hospitals with a seeded Dirichlet label skew.

The data ships inside scikit-learn (569 rows, 30 features), so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer as _sklearn_breast_cancer

from fedledger.errors import ConfigError
from fedledger.learning.data import ClientData, mix_shared, split_indices, standardize

MIN_ROWS = 10          # per hospital, so that its test set is not a handful of rows
MIN_PER_CLASS = 3      # per hospital and class: more than 2 lets the split stratify, so both
                       # classes reach the training side


def load_breast_cancer(num_clients: int, alpha: float, seed: int, test_fraction: float = 0.3,
                       shared_fraction: float = 0.0) -> list[ClientData]:
    """num_clients hospitals named hospital_0.., each with its own stratified train/test split.
    Smaller alpha means more skewed label mixes; the same seed always gives the same split.

    With `shared_fraction` > 0, that share of all rows (stratified, drawn from the seed) is a
    dataset every hospital trains on besides its own (`mix_shared`): the hospitals are dealt
    their rows as without it, less the shared ones, so that a study with and one without a
    shared dataset differ in nothing else.

    All hospitals z-score with the statistics of all training rows together. Under label skew a
    hospital's own statistics would centre each site on its majority class and erase the signal;
    consortium-wide means and variances are what a federated standardization step computes from
    each site's count, sum and sum of squares, without any row leaving its site.
    """
    check_split(num_clients, alpha, seed, test_fraction)
    if not 0.0 <= shared_fraction < 0.5:
        raise ConfigError(f"shared_fraction must be at least 0 and below 0.5, got {shared_fraction}")
    bunch = _sklearn_breast_cancer()
    x, y = bunch.data, bunch.target
    names = {"feature_names": tuple(map(str, bunch.feature_names)), "classes": tuple(map(str, bunch.target_names))}
    parts = dirichlet_partition(y, num_clients, alpha, seed)
    shared = np.empty(0, dtype=int)
    if shared_fraction > 0:
        _, shared = split_indices(y, shared_fraction, seed + 1, where="the shared dataset")
        parts = [np.setdiff1d(rows, shared) for rows in parts]
    splits = [split_indices(y[rows], test_fraction, seed, where=f"hospital_{i}") for i, rows in enumerate(parts)]
    mean, std = standardize(np.concatenate([x[rows][train] for rows, (train, _) in zip(parts, splits)]))
    scale = lambda rows: ((x[rows] - mean) / std).astype(np.float32)  # noqa: E731
    clients = [ClientData(f"hospital_{i}", scale(rows[train]), y[rows[train]].astype(np.float32),
                          scale(rows[test]), y[rows[test]].astype(np.float32), mean, std, **names)
               for i, (rows, (train, test)) in enumerate(zip(parts, splits))]
    return [mix_shared(c, x[shared], y[shared]) for c in clients] if len(shared) else clients


def check_split(num_clients: int, alpha: float, seed: int, test_fraction: float) -> None:
    """ConfigError naming the first argument of a seeded Dirichlet split that is out of range."""
    if num_clients < 2:
        raise ConfigError(f"num_clients must be at least 2, got {num_clients}")
    if not alpha > 0:
        raise ConfigError(f"alpha must be positive, got {alpha}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if seed < 0:
        raise ConfigError(f"seed must be zero or positive, got {seed}")


def dirichlet_partition(y: np.ndarray, num_clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Row indices per client: each class is shared out in Dirichlet(alpha) proportions.

    Draws that leave a client below MIN_PER_CLASS rows of a class or MIN_ROWS rows in all are
    repaired, not redrawn: redrawing may never succeed for small alpha. The repair moves single
    rows from the biggest holders to the clients short of rows, so it is deterministic and keeps
    most of the skew.
    """
    classes = np.unique(y)
    if any(np.sum(y == k) < num_clients * MIN_PER_CLASS for k in classes) or len(y) < num_clients * MIN_ROWS:
        raise ConfigError(f"num_clients={num_clients} is too many for {len(y)} rows: each client needs "
                          f"{MIN_ROWS} rows and {MIN_PER_CLASS} of each class")
    rng = np.random.default_rng(seed)
    # held[k][c]: rows of class k that client c holds.
    held = []
    for k in classes:
        rows = rng.permutation(np.flatnonzero(y == k))
        cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(rows)).astype(int)
        held.append([list(part) for part in np.split(rows, cuts)])
    for per_client in held:
        for c in range(num_clients):
            while len(per_client[c]) < MIN_PER_CLASS:
                # The largest holder has more than MIN_PER_CLASS: the class has enough rows for all.
                donor = max((d for d in range(num_clients) if d != c), key=lambda d: len(per_client[d]))
                per_client[c].append(per_client[donor].pop())
    totals = [sum(len(per_client[c]) for per_client in held) for c in range(num_clients)]
    while min(totals) < MIN_ROWS:
        # The largest client then holds more than MIN_ROWS rows and (with two classes, as here) its
        # largest class more than MIN_PER_CLASS, so giving one row away breaks neither minimum.
        needy, donor = int(np.argmin(totals)), int(np.argmax(totals))
        per_client = max(held, key=lambda pc: len(pc[donor]))
        per_client[needy].append(per_client[donor].pop())
        totals[needy] += 1
        totals[donor] -= 1
    return [np.sort(np.concatenate([per_client[c] for per_client in held])).astype(int)
            for c in range(num_clients)]
