"""FedAvg (McMahan et al. 2017) with a server learning rate, and FedProx (Li et al. 2020)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedledger.aggregation.base import Strategy, check_real


@dataclass(frozen=True)
class FedAvg(Strategy):
    """new = global + server_lr * weighted_mean(local - global).

    With server_lr = 1 (the default) the result is exactly the sample-weighted mean of the local
    parameters, rounded to the fixed-point grid.
    """

    name: ClassVar[str] = "fedavg"
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_lr", check_real(self.name, "server_lr", self.server_lr,
                                                         "(0, inf)", lambda x: x > 0))

    def _server_step(self, delta: np.ndarray, state: Mapping[str, np.ndarray]
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.server_lr * delta, {}


@dataclass(frozen=True)
class FedProx(FedAvg):
    """FedAvg on the server; clients add (mu / 2) * ||w - global||^2 to their local loss."""

    name: ClassVar[str] = "fedprox"
    mu: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mu", check_real(self.name, "mu", self.mu, "[0, inf)", lambda x: x >= 0))

    def client_config(self) -> dict[str, float]:
        return {"prox_mu": self.mu}
