"""What the chain-coordinated rounds (semi and full) share: committing updates, aggregating a
round's commitments into a deterministic result, and the faults the simulations can inject.

Every honest aggregator computes its result from the same inputs (the commitments on chain, the
artifacts in the store, the strategy in the config) with the same order-independent code, so
honest results are byte-identical and their digests agree; a disagreeing digest means a fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedledger.aggregation import Strategy
from fedledger.chain import NO_SPEND, Commitment, RoundStudy
from fedledger.protocol.manifest import aggregate_round, build_manifest
from fedledger.protocol.messages import Rejection, RoundTask, SignedUpdate
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.secure import screen_round
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, ValidationRules

NO_CONTRACT = "0x" + "00" * 20   # what updates are bound to when the ledger is off


@dataclass(frozen=True)
class Faults:
    """Which institutions misbehave, by position in the roster (for fault experiments).

    The last `wrong_result` institutions submit wrong result digests whenever they aggregate,
    the `silent` ones before them never answer as aggregators, and the first `no_update` ones
    never commit an update. The loosely-coupled coordinator lies or stays silent instead.
    """
    wrong_result: int = 0
    silent: int = 0
    no_update: int = 0

    def behaviour(self, index: int, count: int) -> str:
        """'wrong_result', 'silent' or 'honest': how institution `index` of `count` aggregates."""
        from_end = count - index
        if from_end <= self.wrong_result:
            return "wrong_result"
        if from_end <= self.wrong_result + self.silent:
            return "silent"
        return "honest"

    def commits(self, index: int) -> bool:
        return index >= self.no_update


@dataclass(frozen=True)
class RoundResult:
    """A finalized round, whichever architecture ran it."""
    round: int
    model: str
    state: str | None                 # server-optimizer state after the round
    manifest: str
    accepted: tuple[str, ...]         # institutions whose updates were aggregated
    rejected: tuple[Rejection, ...]
    details: Mapping[str, Any] = field(default_factory=dict)   # committees, scores, rewards...
    metrics: Mapping[str, Any] | None = None   # evaluation of the new model, where the round produced one


def round_task(study: RoundStudy | None, strategy: Strategy, round: int, parent: str) -> RoundTask:
    """The task of a chain-coordinated round: updates are bound to the study contract."""
    return RoundTask(round=round, global_model=parent, chain_id=study.backend.chain_id if study else 0,
                     ledger=study.address if study else NO_CONTRACT, client_config=strategy.client_config())


def pass_deadline(study: RoundStudy) -> None:
    """Let the open phase's deadline pass (in a deployment, time does this; here blocks are mined)."""
    study.backend.advance_blocks(study.phase_deadline() + 1 - study.backend.block_number())


@dataclass(frozen=True)
class Aggregate:
    """One aggregator's result for a round."""
    model: str
    state: str | None
    manifest_digest: str
    manifest: dict[str, Any]


def commit_phase(nodes: Sequence[InstitutionNode], task: RoundTask, study: RoundStudy | None,
                 faults: Faults, updates: Mapping[str, SignedUpdate] | None = None) -> list[Commitment]:
    """Every committing institution trains, publishes its update and commits it (on chain,
    from its own account, with the digest of its evaluation of the round's parent model); then
    the commit phase is closed, after its deadline if someone did not commit. `updates`: the
    updates already made, by member (secure aggregation masks them first).

    Returns the round's commitments in commit order: read back from the chain when there is one.
    """
    local = []
    with study.batch() if study is not None else nullcontext():
        for index, node in enumerate(nodes):
            if not faults.commits(index):
                continue
            update = node.train(task) if updates is None else updates.get(node.address)
            if update is None:   # its privacy budget is spent
                continue
            metrics = node.store.put_json(node.evaluate(task.global_model))
            if study is not None:
                study.commit_update(node.account, task.round, task.global_model, update.commitment.update,
                                    update.commitment.num_samples, metrics, update.spend or NO_SPEND)
            local.append(Commitment(node.address, update.commitment.update, update.commitment.num_samples))
    if study is None:
        return local
    if len(study.committers(task.round)) < len(nodes):   # someone did not commit, or was refused
        pass_deadline(study)
    study.close_commits(nodes[0].account, task.round)
    return study.commitments(task.round)


def screen_commitments(store: ArtifactStore, task: RoundTask, commitments: Sequence[Commitment],
                       rules: ValidationRules, excluded: Mapping[str, Rejection] | None = None,
                       scheme: Any | None = None) -> tuple[list[Candidate], list[Rejection]]:
    """Validate the committed updates (`screen_updates`; under secure aggregation, `scheme`, as
    far as they can be). Every member and aggregator gets the same verdicts from the same chain
    and store."""
    candidates = [Candidate(c.member, c.update, c.num_samples) for c in commitments]
    return screen_round(store, task, candidates, rules, excluded, scheme)


def aggregate_commitments(store: ArtifactStore, strategy: Strategy, *, architecture: str, task: RoundTask,
                          state_before: str | None, commitments: Sequence[Commitment],
                          rules: ValidationRules = ValidationRules(),
                          excluded: Mapping[str, Rejection] | None = None, extra: Mapping[str, Any] | None = None,
                          scheme: Any | None = None) -> Aggregate:
    """Screen and aggregate the committed updates; store the model, state and manifest.

    Every update is validated (`screen_commitments`) and rejected with its reason code if it
    fails, as is one in `excluded`; all honest aggregators see the same store and apply the same
    rules, so they reject the same ones. If none passes, the round keeps its parent model. Under
    secure aggregation (`scheme`) only the sum of the updates is had, and aggregated.
    """
    accepted, rejected = screen_commitments(store, task, commitments, rules, excluded, scheme)
    entries = [{"institution": c.institution, "update": c.update, "num_samples": c.num_samples} for c in accepted]
    secure = (scheme.record(store, task, [c.institution for c in accepted])
              if scheme is not None and entries else None)
    params, state = aggregate_round(store, strategy, task.global_model, entries, state_before, secure)
    if secure is not None:
        extra = {**(extra or {}), "secure_aggregation": secure.as_manifest()}
    return _store_result(store, params, state, architecture, strategy, task, state_before, entries,
                         [r.as_record() for r in rejected], extra)


def reason_codes(commitments: Sequence[Commitment], manifest: Mapping[str, Any]) -> list[int]:
    """Each committer's reason code in commit order (0: aggregated), as results and votes carry them."""
    codes = {r["institution"]: r["code"] for r in manifest["rejected"]}
    return [codes.get(c.member, 0) for c in commitments]


def falsify(store: ArtifactStore, strategy: Strategy, honest: Aggregate, architecture: str, task: RoundTask,
            state_before: str | None) -> Aggregate:
    """A faulty aggregator's result: the honest model nudged, stored with a manifest claiming it."""
    m = honest.manifest
    params = store.get_params(honest.model) + np.float32(0.01)
    state = store.get_arrays(m["state_after"]) if m["state_after"] else {}
    extra = {k: v for k, v in m.items() if k == "scores"}
    return _store_result(store, params, state, architecture, strategy, task, state_before, m["updates"],
                         m["rejected"], extra)


def _store_result(store: ArtifactStore, params: np.ndarray, state: Mapping[str, np.ndarray], architecture: str,
                  strategy: Strategy, task: RoundTask, state_before: str | None, entries: list[dict[str, Any]],
                  rejected: list[dict[str, str]], extra: Mapping[str, Any] | None) -> Aggregate:
    model = store.put_params(params)
    state_after = store.put_arrays(state) if state else None
    manifest = build_manifest(round=task.round, architecture=architecture, strategy=strategy,
                              parent_model=task.global_model, model=model, state_before=state_before,
                              state_after=state_after, entries=entries,
                              rejected=rejected, metrics=None)
    manifest.update(extra or {})
    return Aggregate(model, state_after, store.put_json(manifest), manifest)
