"""The round protocol: what institutions and coordinators exchange and check each round."""

from fedledger.protocol.coordinator import Coordinator, RoundOutcome
from fedledger.protocol.loosely import run_loosely_round
from fedledger.protocol.manifest import MANIFEST_FORMAT, aggregate_round, strategy_from_manifest, updates_root
from fedledger.protocol.messages import Rejection, RoundTask, SignedUpdate
from fedledger.protocol.node import InstitutionNode, ModelSpec, derive_seed

__all__ = ["MANIFEST_FORMAT", "Coordinator", "InstitutionNode", "ModelSpec", "Rejection", "RoundOutcome",
           "RoundTask", "SignedUpdate", "aggregate_round", "derive_seed", "run_loosely_round",
           "strategy_from_manifest", "updates_root"]
