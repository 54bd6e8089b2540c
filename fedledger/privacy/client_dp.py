"""Client-level differential privacy (DP-FedAvg, McMahan et al., ICLR 2018) with the noise added
by the members themselves, in shares.

Each member clips its update's change from the global model to L2 norm `clip_norm` and adds
Gaussian noise of std noise_multiplier x clip_norm / sqrt(noise_shares). The sum of any
`noise_shares` or more such updates then carries noise of at least noise_multiplier x clip_norm,
what DP-FedAvg's aggregator would add, while the aggregation itself stays the deterministic,
noise-free sum every aggregator and auditor recomputes bit for bit. No aggregator has to be
trusted to add (or keep secret) the noise; under secure aggregation no one sees a single
member's smaller share either.
"""

from __future__ import annotations

import math

import numpy as np


def clip_update(params: np.ndarray, global_params: np.ndarray, clip_norm: float) -> np.ndarray:
    """`params` moved toward `global_params` so that its change has L2 norm at most `clip_norm`."""
    change = np.asarray(params, dtype=np.float64) - np.asarray(global_params, dtype=np.float64)
    norm = float(np.linalg.norm(change))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return np.asarray(global_params, dtype=np.float64) + change * scale


def privatize_update(params: np.ndarray, global_params: np.ndarray, *, clip_norm: float, noise_multiplier: float,
                     noise_shares: int, seed: int) -> np.ndarray:
    """The float32 parameters a member sends under DP-FedAvg: its change clipped, plus its share
    of the Gaussian noise (drawn from `seed`; a deployed node keeps its seed to itself)."""
    if not (clip_norm > 0 and noise_multiplier > 0 and noise_shares >= 1):
        raise ValueError(f"DP-FedAvg needs a positive clipping norm ({clip_norm}) and noise multiplier "
                         f"({noise_multiplier}) and at least one noise share ({noise_shares})")
    clipped = clip_update(params, global_params, clip_norm)
    std = noise_multiplier * clip_norm / math.sqrt(noise_shares)
    noise = np.random.default_rng(seed).normal(0.0, std, size=clipped.shape)
    return (clipped + noise).astype(np.float32)
