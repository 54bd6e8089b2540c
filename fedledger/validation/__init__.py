"""Validation of every update before aggregation, with a reason code for each rejection.

`Reason` numbers are shared with the contracts' rejection records; `screen_updates` is what
every aggregator runs on a round's committed updates.
"""

from fedledger.validation.reasons import MAX_REASON, Reason, penalized
from fedledger.validation.screen import Candidate, Rejection, ValidationRules, screen_updates

__all__ = ["MAX_REASON", "Candidate", "Reason", "Rejection", "ValidationRules", "penalized", "screen_updates"]
