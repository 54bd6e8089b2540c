"""Privacy protections for the updates members send: secure aggregation (pairwise masking)."""

from fedledger.privacy.secagg import (
    PublicKeys,
    SecAggError,
    SecAggMember,
    unmask_sum,
)

__all__ = ["PublicKeys", "SecAggError", "SecAggMember", "unmask_sum"]
