"""Why an update was not aggregated: one code per reason, the same numbers on chain and off.

The contracts store and emit these codes (uint8) in their rejection records; manifests carry
the code next to a sentence for people. 0 means "aggregated" wherever a code stands per update.
"""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    ACCEPTED = 0
    NOT_MEMBER = 1         # sender is not on the study's roster, not an institution, or was removed
    SUSPENDED = 2          # sender is suspended by the reputation policy until governance re-admits it
    WRONG_ROUND = 3        # replay of an old update, a commitment for a future round, another parent or ledger
    DUPLICATE = 4          # a second submission from the same member in one round
    BAD_SIGNATURE = 5      # the signature does not recover to the claimed member (loose)
    MISSING = 6            # no one can serve the committed blob
    DIGEST_MISMATCH = 7    # the bytes served do not hash to the committed digest
    INVALID_FORMAT = 8     # not canonical safetensors (or a malformed submission)
    WRONG_LAYOUT = 9       # wrong tensor names, shapes or dtypes for the study's model
    NOT_FINITE = 10        # NaN or infinite parameters
    OUT_OF_RANGE = 11      # a parameter beyond the fixed-point bound, or an impossible sample count
    NORM_ABOVE_BOUND = 12  # the change from the global model is longer than [validation].max_update_norm
    OUTLIER = 13           # far from the round's median update ([validation].outlier_factor)
    LOW_SCORE = 14         # the validators scored it far below the median update (full)
    PRIVACY_BUDGET = 15    # releasing it would take the member past the study's privacy budget
    TOO_FEW_FOR_NOISE = 16  # DP-FedAvg: fewer updates passed than the noise is shared among
    COPIED = 17            # the same update digest as another member's in the round
    NOT_DRAWN = 18         # from a member not drawn for the round ([protocol] sample_fraction)

    @property
    def label(self) -> str:
        """The code's name for people and JSON: 'norm_above_bound'."""
        return self.name.lower()


MAX_REASON = max(Reason)


def penalized(code: int) -> bool:
    """Whether a rejection with this code costs the member reputation (reputation_policy.vy
    `_penalized`): only a fault shown by the bytes it committed to, DIGEST_MISMATCH..LOW_SCORE.
    The protocol-level codes below can be caused by anyone in a member's name, and MISSING rests
    on the word of whoever failed to fetch the blob, which no one can check afterwards."""
    return Reason.DIGEST_MISMATCH <= code <= Reason.LOW_SCORE
