"""What an honest-but-curious aggregator can learn from one member's plain update.

For logistic regression trained with plain SGD on a single record x, every step's gradient is a
multiple of [x, 1]: the weight gradient is (p - y) x and the bias gradient is (p - y). So the
update's weight change divided by its bias change is x itself (up to float rounding), however
many steps were taken. Gradient-inversion attacks on deeper models follow the same idea with an
optimizer instead of a division. This is the attack the privacy tests and benchmark play.
"""

from __future__ import annotations

import numpy as np


def reconstruct_logreg_record(global_params: np.ndarray, update_params: np.ndarray) -> np.ndarray:
    """The training record a single-record logistic-regression update was trained on: the weight
    change over the bias change (the flat layout is the weights, then the bias)."""
    delta = update_params.astype(np.float64) - global_params.astype(np.float64)
    if delta[-1] == 0:
        raise ValueError("the bias did not move: no record can be read from this update")
    return delta[:-1] / delta[-1]


def reconstruction_error(global_params: np.ndarray, update_params: np.ndarray, record: np.ndarray) -> float:
    """How far the attack lands from the true record: ||reconstruction - record|| / ||record||.
    Relative, so records of any scale compare. Guessing the all-zero record scores exactly 1, and
    on standardized features that is the average record, what an attacker who learnt nothing
    would guess: an error above 1 is worse than knowing nothing."""
    x = np.asarray(record, dtype=np.float64).ravel()
    return float(np.linalg.norm(reconstruct_logreg_record(global_params, update_params) - x) / np.linalg.norm(x))
