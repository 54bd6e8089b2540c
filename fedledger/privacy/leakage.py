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
