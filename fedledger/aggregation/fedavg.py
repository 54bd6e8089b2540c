"""FedAvg (McMahan et al. 2017) with a server learning rate, FedProx (Li et al. 2020) and SCAFFOLD
(Karimireddy et al. 2020)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedledger.aggregation.base import Strategy, check_real
from fedledger.errors import ConfigError


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


@dataclass(frozen=True)
class Scaffold(FedAvg):
    """SCAFFOLD: clients correct their local gradients for drift with control variates.

    The global "model" vector holds the model and then the server's control variate c, each of
    the model's size; a client trains with its gradients corrected by c - c_i, updates its own
    c_i (option II of the paper: c_i - c + (x - y_i) / (steps x lr)) and sends its trained
    model followed by c + (its new c_i - its old c_i). The weighted mean of those vectors is
    then the new model followed by the new c, so the aggregation (and its audit) is FedAvg's,
    bit for bit (server_lr 1, every member taking part: the paper's full-participation case,
    its means weighted by samples as FedAvg's are).
    """

    name: ClassVar[str] = "scaffold"
    control_variates: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.server_lr != 1.0:
            raise ConfigError("scaffold: server_lr must be 1 (the control variate travels in the averaged vector)")

    def client_config(self) -> dict[str, float]:
        return {"scaffold": 1.0}


def model_part(params: np.ndarray, control_variates: bool) -> np.ndarray:
    """The model's parameters in a global vector: all of it, or under SCAFFOLD its first half
    (the server's control variate follows)."""
    return params[:params.size // 2] if control_variates else params
