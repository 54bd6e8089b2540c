"""The round protocol, once for both runtimes: what institutions, the loose coordinator,
committee members and validators do, each as a role that acts in steps on the chain and the
store (fedledger.protocol.context). The simulation steps every member's roles in one process;
a deployed node steps its own member's (docs/design.md).
"""

from fedledger.protocol.aggregate import Aggregate, aggregate_result, reason_codes, round_task
from fedledger.protocol.committing import CommittingInstitution
from fedledger.protocol.context import ACTED, DONE, MemberContext, Noticeboard, Step, Timings, combine, waiting
from fedledger.protocol.full import Validator, exclusion_rule, lower_median, rewards
from fedledger.protocol.loose import Coordinator, LooseInstitution
from fedledger.protocol.manifest import MANIFEST_FORMAT, aggregate_round, strategy_from_manifest, updates_root
from fedledger.protocol.messages import Rejection, RoundTask, SignedUpdate
from fedledger.protocol.node import SCORE_SCALE, InstitutionNode, ModelSpec, derive_seed
from fedledger.protocol.outcome import RoundOutcome, round_outcome
from fedledger.protocol.roles import Role, coordinator_roles, institution_roles
from fedledger.protocol.scheme import AggregationRecord, SitOut, UpdateScheme
from fedledger.protocol.schemes import make_scheme, record_from_manifest
from fedledger.protocol.semi import CommitteeMember

__all__ = ["ACTED", "DONE", "MANIFEST_FORMAT", "SCORE_SCALE", "Aggregate", "AggregationRecord", "CommitteeMember",
           "CommittingInstitution", "Coordinator", "InstitutionNode", "LooseInstitution", "MemberContext",
           "ModelSpec", "Noticeboard", "Rejection", "Role", "RoundOutcome", "RoundTask", "SignedUpdate", "SitOut",
           "Step", "Timings", "UpdateScheme", "Validator", "aggregate_result", "aggregate_round", "combine",
           "coordinator_roles", "derive_seed", "exclusion_rule", "institution_roles", "lower_median",
           "make_scheme", "reason_codes", "record_from_manifest", "rewards", "round_outcome", "round_task",
           "strategy_from_manifest", "updates_root", "waiting"]
