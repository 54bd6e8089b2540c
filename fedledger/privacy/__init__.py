"""Privacy protections for the updates members send: differential-privacy accounting and client-level
DP, secure aggregation (pairwise masking, SecAgg and SecAgg+), CKKS aggregation (`ckks`)."""

from fedledger.privacy import shamir
from fedledger.privacy.secagg import (
    MaskGraph,
    PublicKeys,
    SecAggError,
    SecAggMember,
    secagg_plus_parameters,
    unmask_sum,
)

__all__ = ["MaskGraph", "PublicKeys", "SecAggError", "SecAggMember", "secagg_plus_parameters", "shamir",
           "unmask_sum"]
