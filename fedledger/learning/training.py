"""Local training and evaluation of one model on one institution's data (CPU, float32)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch import nn

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import ClientData
from fedledger.learning.models import get_flat_params
from fedledger.learning.tasks import BinaryTask, MulticlassTask, Task, weights_for

OPTIMIZERS = ("sgd", "adam")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class TrainConfig:
    """How one institution trains locally.

    The length of training is `epochs` passes over the data when set, otherwise `local_steps`
    minibatch steps; either way the data is reshuffled at each pass and the last batch of a pass
    may be short, as with a PyTorch DataLoader (shuffle=True) that is restarted when exhausted.
    `prox_mu` > 0 adds FedProx's mu/2 * ||w - w_global||^2 to the loss. `class_weight` =
    "balanced" weighs each class of a binary or multiclass task by n / (classes x its count)
    in the institution's own training rows, so that a rare class counts as much as a common one.
    """

    optimizer: str = "sgd"
    lr: float = 1e-3
    batch_size: int = 4
    local_steps: int | None = 100
    epochs: int | None = None
    prox_mu: float = 0.0
    class_weight: str = "none"

    def __post_init__(self) -> None:
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weight!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.epochs is None and self.local_steps is None:
            raise ConfigError("set local_steps or epochs: both are None")
        for name in ("local_steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if not self.prox_mu >= 0:
            raise ConfigError(f"prox_mu must be zero or positive, got {self.prox_mu}")

    def num_steps(self, num_rows: int) -> int:
        """Minibatch steps this config takes on num_rows training rows."""
        if self.epochs is not None:
            return self.epochs * math.ceil(num_rows / self.batch_size)
        return self.local_steps


def train_local(model: nn.Module, data: ClientData, cfg: TrainConfig, *, seed: int,
                global_params: np.ndarray | None = None, correction: np.ndarray | None = None) -> np.ndarray:
    """Train the model in place on data's training set, with its task's loss; return its new
    flat parameters.

    The minibatch order comes from a torch.Generator seeded with `seed`, so the same model, data,
    config and seed give the same parameters. With cfg.prox_mu > 0 the proximal term anchors to
    `global_params`, or to the starting parameters when none are given (in a federated round the
    starting point is the global model). `correction` (a flat vector like the parameters) is
    added to every step's gradient: SCAFFOLD's c - c_i.
    """
    if data.num_train == 0:
        raise DataError(f"client {data.name!r} has no training rows")
    # Converted once: per-step conversion would cost more than the step itself on these models.
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    params = list(model.parameters())
    anchor = _anchor(params, global_params) if cfg.prox_mu > 0 else None
    shift = _anchor(params, correction) if correction is not None else None
    optimizer = (torch.optim.SGD(params, lr=cfg.lr) if cfg.optimizer == "sgd"
                 else torch.optim.Adam(params, lr=cfg.lr))
    generator = torch.Generator().manual_seed(seed)
    task, weights = model.task, class_weights(model.task, data.y_train, cfg)
    model.train()
    for xb, yb in islice(_batches(x, y, cfg.batch_size, generator), cfg.num_steps(data.num_train)):
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model(xb), yb, weights)
        if anchor is not None:
            loss = loss + 0.5 * cfg.prox_mu * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
        if shift is not None:     # its gradient is the correction itself
            loss = loss + sum((p * d).sum() for p, d in zip(params, shift))
        loss.backward()
        optimizer.step()
    return get_flat_params(model)


def class_weights(task: Task, y: np.ndarray, cfg: TrainConfig) -> torch.Tensor | None:
    """The loss's class weights under cfg.class_weight (None: every record weighs 1)."""
    if cfg.class_weight == "none":
        return None
    if not isinstance(task, BinaryTask | MulticlassTask):
        raise ConfigError(f"class_weight = \"balanced\" weighs classes: a {task.kind} task has none")
    return torch.from_numpy(weights_for(y, task.outputs if isinstance(task, MulticlassTask) else 2))


def _anchor(params: list[torch.Tensor], global_params: np.ndarray | None) -> list[torch.Tensor]:
    """A flat vector (FedProx's reference point, SCAFFOLD's correction) shaped like params;
    the parameters themselves, detached, when none is given."""
    if global_params is None:
        return [p.detach().clone() for p in params]
    sizes = [p.numel() for p in params]
    flat = torch.from_numpy(np.asarray(global_params, dtype=np.float32))
    if flat.ndim != 1 or flat.numel() != sum(sizes):
        raise ValueError(f"global_params has shape {tuple(flat.shape)}, the model needs ({sum(sizes)},)")
    return [chunk.view_as(p) for chunk, p in zip(torch.split(flat, sizes), params)]


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
             generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless minibatches: one fresh permutation per pass over the rows."""
    n = len(y)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The figures of the model on (x, y), as its task scores them (`Task.evaluate`): for a
    binary task accuracy, f1, auc and the confusion counts, from which pooled figures over
    institutions are computed without moving any test record."""
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"evaluate needs a non-empty test set with one label per row, "
                        f"got {len(x)} rows and {len(y)} labels")
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
    return model.task.evaluate(pred, y)
