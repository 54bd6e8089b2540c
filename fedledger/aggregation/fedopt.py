"""Adaptive server optimizers of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021).

On the pseudo-gradient delta = weighted_mean(local - global):
    m = beta1 * m + (1 - beta1) * delta
    v = FedAdam:    beta2 * v + (1 - beta2) * delta^2
        FedAdagrad: v + delta^2
        FedYogi:    v - (1 - beta2) * delta^2 * sign(v - delta^2)
    new = global + server_lr * m / (sqrt(v) + tau)
As in FLamby's FedOpt (the yardstick we reproduce), m and v start at zero (not tau^2) and there is
no bias correction; tau defaults to FLamby's 1e-8. The state {"m", "v"} is float64: v holds
squares far below the 2**-24 parameter grid, so it is not quantized, and elementwise float64
arithmetic is reproducible bit for bit anyway.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedledger.aggregation.base import Strategy, check_real
from fedledger.errors import UpdateRejected

_STATE_KEYS = ["m", "v"]


def _unit(strategy: str, name: str, value: object) -> float:
    return check_real(strategy, name, value, "[0, 1)", lambda x: 0 <= x < 1)


@dataclass(frozen=True)
class FedOpt(Strategy):
    """Shared momentum and update rule; subclasses define how the second moment v evolves."""

    server_lr: float = 1e-2
    beta1: float = 0.9
    tau: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_lr", check_real(self.name, "server_lr", self.server_lr,
                                                         "(0, inf)", lambda x: x > 0))
        object.__setattr__(self, "beta1", _unit(self.name, "beta1", self.beta1))
        object.__setattr__(self, "tau", check_real(self.name, "tau", self.tau, "(0, inf)", lambda x: x > 0))

    def initial_state(self, global_params: np.ndarray) -> dict[str, np.ndarray]:
        return {key: np.zeros(np.shape(global_params)[0], dtype=np.float64) for key in _STATE_KEYS}

    def _check_state(self, state: Mapping[str, np.ndarray], size: int) -> None:
        if sorted(state) != _STATE_KEYS:
            raise UpdateRejected(f"server state rejected: {self.name} expects arrays {_STATE_KEYS}, "
                                 f"got {sorted(state)}")
        for key in _STATE_KEYS:
            arr = state[key]
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (size,):
                raise UpdateRejected(f"server state rejected: {key!r} must be float64 of shape ({size},)")
            if not np.isfinite(arr).all():
                raise UpdateRejected(f"server state rejected: {key!r} contains NaN or infinite values")
        if (state["v"] < 0).any():  # sqrt(v) below; the update rules never make v negative
            raise UpdateRejected("server state rejected: 'v' has negative entries")

    def _server_step(self, delta: np.ndarray, state: Mapping[str, np.ndarray]
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        m = self.beta1 * state["m"] + (1.0 - self.beta1) * delta
        v = self._second_moment(state["v"], delta * delta)
        return self.server_lr * m / (np.sqrt(v) + self.tau), {"m": m, "v": v}

    @abstractmethod
    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        """The new v from the old one and the squared pseudo-gradient."""


@dataclass(frozen=True)
class _DecayingFedOpt(FedOpt):
    """The rules whose second moment decays at rate beta2 (Adam, Yogi)."""

    beta2: float = 0.999

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "beta2", _unit(self.name, "beta2", self.beta2))


@dataclass(frozen=True)
class FedAdam(_DecayingFedOpt):
    name: ClassVar[str] = "fedadam"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return self.beta2 * v + (1.0 - self.beta2) * delta_sq


@dataclass(frozen=True)
class FedAdagrad(FedOpt):
    name: ClassVar[str] = "fedadagrad"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v + delta_sq


@dataclass(frozen=True)
class FedYogi(_DecayingFedOpt):
    name: ClassVar[str] = "fedyogi"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v - (1.0 - self.beta2) * delta_sq * np.sign(v - delta_sq)
