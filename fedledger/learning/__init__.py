"""Learning: data loaders, models, local training and evaluation.

Everything the federated core needs from a model goes through flat float32 parameter vectors
(get_flat_params / set_flat_params), so aggregation, privacy and verification never see torch.
"""

from fedledger.learning.baselines import average_scores, train_local_baseline, train_pooled
from fedledger.learning.breast_cancer import load_breast_cancer
from fedledger.learning.csv_clients import load_csv_clients
from fedledger.learning.data import ClientData, hold_out_validation
from fedledger.learning.heart import load_fed_heart_disease
from fedledger.learning.models import build_model, get_flat_params, set_flat_params
from fedledger.learning.tasks import BINARY, TASKS, Task, make_task
from fedledger.learning.training import TrainConfig, evaluate, train_local

__all__ = [
    "ClientData", "TrainConfig", "hold_out_validation", "BINARY", "TASKS", "Task", "make_task",
    "load_fed_heart_disease", "load_breast_cancer", "load_csv_clients",
    "build_model", "get_flat_params", "set_flat_params",
    "train_local", "evaluate", "train_pooled", "train_local_baseline", "average_scores",
]
