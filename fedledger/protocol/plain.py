"""Updates in the clear ([privacy] secure_aggregation = "none"): the aggregators see every
member's parameters, so every rule of `screen_updates` applies to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.protocol.context import MemberContext
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.scheme import UpdateScheme
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Rejection, ValidationRules, screen_updates


class PlainUpdates(UpdateScheme):
    """Updates in the clear: every rule of `screen_updates` applies to them."""

    name = "none"
    exchanges = False

    def protect(self, ctx: MemberContext, task: RoundTask, params: np.ndarray, num_samples: int) -> str:
        return ctx.store.put_params(params)

    def check_updates(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate],
                      rules: ValidationRules, excluded: Mapping[str, Rejection] | None = None
                      ) -> tuple[list[Candidate], list[Rejection]]:
        return screen_updates(store, store.get_params(task.global_model), candidates, rules, excluded)

    def load(self, store: ArtifactStore, digest: str) -> Any:
        return store.get_params(digest)
