"""Deterministic aggregation: the same updates give the same bytes in any order, on any machine.

See `fixedpoint` for the arithmetic (2**-24 grid, int64 sums, round half to even) and its bounds.
"""

from fedledger.aggregation.base import ClientUpdate, Strategy, update_problem
from fedledger.aggregation.fedavg import FedAvg, FedProx
from fedledger.aggregation.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from fedledger.aggregation.registry import STRATEGIES, make_strategy
from fedledger.aggregation.robust import FedMedian, FedTrimmedMean

__all__ = ["STRATEGIES", "ClientUpdate", "FedAdagrad", "FedAdam", "FedAvg", "FedMedian", "FedOpt", "FedProx",
           "FedTrimmedMean", "FedYogi", "Strategy", "make_strategy", "update_problem"]
