"""The round protocol: what institutions, coordinators, committees and validators exchange and check.

The three architectures share the node, the manifest and the aggregation; each runs its rounds
behind the same `run_round(round, parent, state) -> RoundResult` interface.
"""

from fedledger.protocol.committee import CommitteeRounds
from fedledger.protocol.consensus import (
           ConsensusRounds,
           exclusion_rule,
           lower_median,
           rewards,
)
from fedledger.protocol.coordinator import Coordinator, RoundOutcome
from fedledger.protocol.loosely import LooseRounds, run_loosely_round
from fedledger.protocol.manifest import (
           MANIFEST_FORMAT,
           aggregate_round,
           strategy_from_manifest,
           updates_root,
)
from fedledger.protocol.messages import Rejection, RoundTask, SignedUpdate
from fedledger.protocol.node import SCORE_SCALE, InstitutionNode, ModelSpec, derive_seed
from fedledger.protocol.rounds import Faults, RoundResult

__all__ = ["MANIFEST_FORMAT", "SCORE_SCALE", "CommitteeRounds", "ConsensusRounds", "Coordinator", "Faults",
           "InstitutionNode", "LooseRounds", "ModelSpec", "Rejection", "RoundOutcome", "RoundResult", "RoundTask",
           "SignedUpdate", "aggregate_round", "derive_seed", "exclusion_rule", "lower_median", "rewards",
           "run_loosely_round", "strategy_from_manifest", "updates_root"]
