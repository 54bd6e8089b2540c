"""Strategies by name, for configs, manifests and auditors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from fedledger.aggregation.base import Strategy
from fedledger.aggregation.clipping import NormClip
from fedledger.aggregation.fedavg import FedAvg, FedProx, Scaffold
from fedledger.aggregation.fedopt import FedAdagrad, FedAdam, FedYogi
from fedledger.aggregation.krum import Krum, MultiKrum
from fedledger.aggregation.robust import FedMedian, FedTrimmedMean
from fedledger.errors import ConfigError

STRATEGIES: Mapping[str, type[Strategy]] = MappingProxyType(
    {cls.name: cls for cls in (FedAvg, FedProx, Scaffold, FedAdam, FedAdagrad, FedYogi, FedMedian, FedTrimmedMean,
                               Krum, MultiKrum, NormClip)})


def make_strategy(name: str, **params: object) -> Strategy:
    """The strategy called `name` with the given hyperparameters (the others keep their defaults).

    Raises ConfigError naming an unknown strategy or hyperparameter, or an out-of-range value,
    and listing what is allowed.
    """
    cls = STRATEGIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown aggregation strategy {name!r}; allowed: {', '.join(sorted(STRATEGIES))}")
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(f"{name}: unknown hyperparameter{plural} {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(allowed)}")
    return cls(**params)
