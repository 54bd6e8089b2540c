"""Deterministic aggregation: the same updates give the same bytes in any order, on any machine.

See `fixedpoint` for the arithmetic (2**-24 grid, int64 sums, round half to even) and its bounds,
and `screening` for the exact norm and outlier checks run before aggregating.
"""

from fedledger.aggregation.base import ClientUpdate, Strategy, update_problem
from fedledger.aggregation.clipping import NormClip
from fedledger.aggregation.fedavg import FedAvg, FedProx, Scaffold, model_part
from fedledger.aggregation.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from fedledger.aggregation.krum import Krum, MultiKrum
from fedledger.aggregation.registry import STRATEGIES, make_strategy
from fedledger.aggregation.robust import FedMedian, FedTrimmedMean
from fedledger.aggregation.screening import exceeds_norm, find_outliers, update_norm

__all__ = ["STRATEGIES", "ClientUpdate", "FedAdagrad", "FedAdam", "FedAvg", "FedMedian", "FedOpt", "FedProx", "Scaffold", "model_part",
           "FedTrimmedMean", "FedYogi", "Krum", "MultiKrum", "NormClip", "Strategy", "exceeds_norm",
           "find_outliers", "make_strategy", "update_norm", "update_problem"]
