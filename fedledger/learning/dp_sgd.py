"""Record-level differential privacy inside one institution: DP-SGD (Abadi et al., CCS 2016)
through Opacus: Poisson-sampled minibatches, each record's gradient clipped to `max_grad_norm`,
Gaussian noise of std noise_multiplier x max_grad_norm added to every step's summed gradient.

Only the training loop lives here. What a run costs in (epsilon, delta) is the accountant's
business (`fedledger.privacy.accountant`), from the same three numbers: noise multiplier,
sampling rate and steps.
"""

from __future__ import annotations

import logging
import warnings
from itertools import chain, islice, repeat

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import ClientData
from fedledger.learning.models import get_flat_params
from fedledger.learning.tasks import SurvivalTask
from fedledger.learning.training import TrainConfig, class_weights


class _EmptyBatchNotice(logging.Filter):
    """Drops Opacus's warning that a Poisson sample came out empty: with small hospitals and
    small batches that happens routinely, and the step (noise only) is what DP-SGD prescribes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("First batch is empty")


logging.getLogger("opacus.data_loader").addFilter(_EmptyBatchNotice())


def dp_sample_rate(cfg: TrainConfig, num_rows: int) -> float:
    """The Poisson sampling rate that gives batches of cfg.batch_size records on average."""
    if num_rows < 1:
        raise DataError("DP-SGD needs at least one training row")
    return min(1.0, cfg.batch_size / num_rows)


def train_dp_sgd(model: nn.Module, data: ClientData, cfg: TrainConfig, *, noise_multiplier: float,
                 max_grad_norm: float, sample_rate: float, seed: int) -> np.ndarray:
    """Train the model in place with DP-SGD for cfg.num_steps(rows) steps; return its new flat
    parameters. The batches and the noise come from two torch generators seeded from `seed`, so
    the same inputs give the same parameters (they are no secret from whoever knows the seed: a
    deployment keeps its node's seed to itself).

    `sample_rate` is taken as given, not recomputed, so that training runs exactly the mechanism
    the accountant counts and the chain records.
    """
    if cfg.prox_mu > 0:
        raise ConfigError("DP-SGD clips each record's gradient: FedProx's proximal term is not a "
                          "per-record loss, so it cannot be combined with it")
    if not (noise_multiplier > 0 and max_grad_norm > 0 and 0 < sample_rate <= 1):
        raise ConfigError(f"DP-SGD needs a positive noise multiplier ({noise_multiplier}), clipping norm "
                          f"({max_grad_norm}) and a sampling rate in (0, 1] ({sample_rate})")
    if isinstance(model.task, SurvivalTask):
        raise ConfigError("DP-SGD clips each record's gradient, and Cox's partial likelihood is not a sum of "
                          "per-record losses (each record's term depends on everyone at risk): use "
                          "[privacy].mechanism = \"dp-fedavg\" for a survival study")
    if data.num_train == 0:
        raise DataError(f"client {data.name!r} has no training rows")
    # Imported here: Opacus loads in about a second, which every fedledger command would otherwise
    # pay at start-up, DP or not (fedledger.privacy.accountant does the same).
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    dataset = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    sampling = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed ^ 0x5EED)
    loader = DPDataLoader(dataset, sample_rate=sample_rate, generator=sampling)
    private = GradSampleModule(model, loss_reduction="mean")
    base = (torch.optim.SGD(model.parameters(), lr=cfg.lr) if cfg.optimizer == "sgd"
            else torch.optim.Adam(model.parameters(), lr=cfg.lr))
    optimizer = DPOptimizer(base, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                            expected_batch_size=max(1, round(sample_rate * data.num_train)),
                            loss_reduction="mean", generator=noise)
    task, weights = model.task, class_weights(model.task, data.y_train, cfg)
    private.train()
    batches = chain.from_iterable(repeat(loader))   # a fresh Poisson pass each time one ends
    with warnings.catch_warnings():
        # Opacus warns that a seeded generator is not a cryptographically secure one: known, and
        # wanted here for reproducible studies (secure_mode would make runs unrepeatable).
        warnings.filterwarnings("ignore", message=".*[Ss]ecure.*")
        # Opacus's hooks fire on module outputs because the records themselves need no gradient.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for xb, yb in islice(batches, cfg.num_steps(data.num_train)):
            optimizer.zero_grad(set_to_none=True)
            task.loss(private(xb), yb, weights).backward()
            optimizer.step()
    private._close()
    return get_flat_params(model)
