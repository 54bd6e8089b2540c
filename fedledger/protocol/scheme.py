"""How members' updates reach the aggregators: in the clear, masked in pairs, or encrypted.

`UpdateScheme` is the one interface the roles and the audit use ([privacy] secure_aggregation):
`PlainUpdates` (fedledger.protocol.plain), `Masking` (fedledger.protocol.masking) and
`Homomorphic` (fedledger.protocol.homomorphic); fedledger.protocol.schemes picks one. Each member holds its own instance, which keeps that member's
secrets; the aggregator's and the auditor's side read only the chain (the study contract logs
the schemes' messages) and the store.

A round under any scheme, from a member's side: `prepare` (keys, shares; None once ready),
`protect` (the update artifact it commits), then, once the round's senders are known, `conclude`
(reveal shares, decrypt the sum). From an aggregator's side: `screen` the committed updates (the
undrawn ones out, then what `check_updates` can check of the rest), `announce` to the members
what concluding needs (the loose coordinator posts it), and `record` how the sum was had, which
`aggregate_round` aggregates and the manifest keeps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from fedledger.aggregation import Strategy
from fedledger.protocol.context import MemberContext, Step
from fedledger.protocol.messages import RoundTask
from fedledger.store import ArtifactStore
from fedledger.protocol.sampling import ClientDraw
from fedledger.validation import Candidate, Reason, Rejection, ValidationRules


class SitOut(Exception):
    """This member cannot take part in this round (say, restarted after sharing: its round
    secrets are gone); it drops out, which the scheme survives."""


class AggregationRecord(ABC):
    """How a round's sum was had, as its manifest names it ("secure_aggregation")."""

    scheme: ClassVar[str]      # the record's "scheme" field

    @abstractmethod
    def as_manifest(self) -> dict[str, Any]: ...

    @abstractmethod
    def aggregate(self, store: ArtifactStore, strategy: Strategy, global_params: np.ndarray,
                  entries: Sequence[Mapping[str, Any]], state: Mapping[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The round's new model and state from its protected entries (institution, update, num_samples)."""


class UpdateScheme(ABC):
    """One way of sending updates (see the module docstring); `board` is the study's contract,
    or its ledger-off stand-in, where the scheme's messages are logged; `window` how many blocks
    latecomers are waited for at each of its steps ([protocol] commit_window); `draw` who takes
    part in which round ([protocol] sample_fraction)."""

    name: ClassVar[str]        # as [privacy] secure_aggregation names it
    # whether members exchange messages around their updates (prepare, conclude); plain: no
    exchanges: ClassVar[bool] = True
    # windows `prepare` may wait for latecomers, one after the other, before updates can come
    preparation_windows: ClassVar[int] = 0

    def __init__(self, board: Any, window: int, draw: ClientDraw = ClientDraw()) -> None:
        self.board = board
        self.window = window
        self.draw = draw

    # --- a member's side --------------------------------------------------------------------

    def prepare(self, ctx: MemberContext, task: RoundTask, expected: Sequence[str]) -> Step | None:
        """What must happen before this member can protect its update (`expected`: the members
        that may take part); None once it can. Raises SitOut when it cannot this round."""
        return None

    @abstractmethod
    def protect(self, ctx: MemberContext, task: RoundTask, params: np.ndarray, num_samples: int) -> str:
        """Store this member's update as the scheme sends it; its digest."""

    def conclude(self, ctx: MemberContext, task: RoundTask, notice: Mapping[str, Any]) -> Step | None:
        """This member's part once the round's senders are known (`notice`, from `announce`)."""
        return None

    # --- an aggregator's (and the auditor's) side ---------------------------------------------

    def screen(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate], rules: ValidationRules,
               excluded: Mapping[str, Rejection] | None = None) -> tuple[list[Candidate], list[Rejection]]:
        """(accepted, rejected) of the committed updates: those of members not drawn for the
        round rejected (NOT_DRAWN), the others as far as the scheme lets them be checked."""
        drawn, undrawn = [], []
        for c in candidates:
            (drawn if self.draw.drawn(task.round, c.institution) else undrawn).append(c)
        accepted, rejected = self.check_updates(store, task, drawn, rules, excluded)
        why = f"not drawn for round {task.round} (sample_fraction {self.draw.fraction})"
        rejected += [Rejection.of(c, Reason.NOT_DRAWN, why) for c in undrawn]
        return accepted, sorted(rejected, key=lambda x: x.institution.lower())

    @abstractmethod
    def check_updates(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate],
                      rules: ValidationRules, excluded: Mapping[str, Rejection] | None = None
                      ) -> tuple[list[Candidate], list[Rejection]]:
        """(accepted, rejected) of the drawn members' committed updates, as far as the scheme
        lets them be checked."""

    @abstractmethod
    def load(self, store: ArtifactStore, digest: str) -> Any:
        """An update artifact of this scheme, read and checked (StoreError if it cannot be)."""

    def announce(self, store: ArtifactStore, task: RoundTask, accepted: Sequence[Candidate]) -> dict[str, Any]:
        """What the members need to conclude a round whose `accepted` updates are known."""
        return {"senders": sorted(c.institution for c in accepted)}

    def record(self, store: ArtifactStore, task: RoundTask, accepted: Sequence[Candidate]
               ) -> AggregationRecord | Step | None:
        """How the sum of the `accepted` updates can be had: a record, a Step while members
        still owe their part, None for plain updates."""
        return None
