"""Privacy protections for the updates members send: secure aggregation (pairwise masking, SecAgg and SecAgg+)."""

from fedledger.privacy.secagg import (
    MaskGraph,
    PublicKeys,
    SecAggError,
    SecAggMember,
    secagg_plus_parameters,
    unmask_sum,
)

__all__ = ["MaskGraph", "PublicKeys", "SecAggError", "SecAggMember", "secagg_plus_parameters", "unmask_sum"]
