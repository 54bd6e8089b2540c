"""Flat parameter vectors: the one form in which models cross the federated core.

Store, aggregation and protocol all accept exactly this (1-D, float32, non-empty, finite), so a
model of any architecture is handled the same way. This is the single definition of "valid".
"""

from __future__ import annotations

import numpy as np


def vector_problem(params: object) -> str | None:
    """Why `params` is not a valid parameter vector, or None if it is."""
    if not isinstance(params, np.ndarray):
        return f"parameters are a {type(params).__name__}, expected a numpy array"
    if params.dtype.kind != "f" or params.dtype.itemsize != 4:
        return f"parameters have dtype {params.dtype}, expected float32"
    if params.ndim != 1:
        return f"parameters have shape {params.shape}, expected a 1-D vector"
    if params.size == 0:
        return "parameter vector is empty"
    if not np.isfinite(params).all():
        return "parameters contain NaN or infinite values"
    return None
