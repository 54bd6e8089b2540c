"""Screening a round's updates before aggregation: every one is aggregated or rejected with a code.

All aggregators of a round call `screen_updates` on the same commitments, the same store content
and the same rules, so they reject the same updates for the same reasons, whatever order the
updates arrived in: the result is a function of the set of candidates, never of their order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.aggregation import ClientUpdate, exceeds_norm, find_outliers, update_norm, update_problem
from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import ArtifactCorrupt, ArtifactMissing, StoreError
from fedledger.store import ArtifactStore
from fedledger.validation.reasons import Reason

_CORRUPT = {"digest": Reason.DIGEST_MISMATCH, "format": Reason.INVALID_FORMAT, "layout": Reason.WRONG_LAYOUT,
            "values": Reason.NOT_FINITE}
MAX_REASON_CHARS = 300    # a rejection's sentence, as manifests and logs keep it


@dataclass(frozen=True)
class Rejection:
    """An update that was not aggregated: whose, why in a word (the code on chain), why in a
    sentence, and the digest and sample count it was committed with (None where there were none
    to name), so that an auditor can screen it again."""
    institution: str
    code: Reason
    reason: str
    update: str | None = None
    num_samples: int | None = None

    def __post_init__(self) -> None:
        # reasons quote untrusted input (tensor names, sizes): they go into manifests and logs
        if len(self.reason) > MAX_REASON_CHARS:
            object.__setattr__(self, "reason", self.reason[:MAX_REASON_CHARS - 3] + "...")

    def as_record(self) -> dict[str, Any]:
        """The manifest's form of it."""
        return {"institution": self.institution, "code": int(self.code), "reason": self.reason,
                "update": self.update, "num_samples": self.num_samples}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Rejection:
        return cls(record["institution"], Reason(record["code"]), record["reason"], record.get("update"),
                   record.get("num_samples"))

    @classmethod
    def of(cls, c: Candidate, code: Reason, reason: str) -> Rejection:
        """The rejection of candidate `c`."""
        return cls(c.institution, code, reason, c.update, c.num_samples)


@dataclass(frozen=True)
class Candidate:
    """A committed update: who, the digest of its parameters, and the sample count it claims."""
    institution: str
    update: str
    num_samples: int


@dataclass(frozen=True)
class ValidationRules:
    """The study's validation settings ([validation] in the config); 0 switches a rule off."""
    max_update_norm: float = 0.0
    outlier_factor: float = 0.0
    # DP-FedAvg: the number of updates whose noise shares add up to the full noise; with fewer
    # passing, none is aggregated (TOO_FEW_FOR_NOISE) and the round keeps its parent model
    min_aggregated: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ValidationRules:
        """The rules of a study config given as plain data (Config.to_dict(), or the anchored
        config an auditor reads), so that aggregators and auditors apply the same ones."""
        config = config or {}
        section = config.get("validation", {})
        dp_fedavg = config.get("privacy", {}).get("mechanism") == "dp-fedavg"
        return cls(float(section.get("max_update_norm", 0.0)), float(section.get("outlier_factor", 0.0)),
                   int(config["protocol"]["min_participants"]) if dp_fedavg else 0)


def screen_updates(store: ArtifactStore, global_params: np.ndarray, candidates: Sequence[Candidate],
                   rules: ValidationRules = ValidationRules(),
                   excluded: Mapping[str, Rejection] | None = None) -> tuple[list[Candidate], list[Rejection]]:
    """(accepted candidates, rejections sorted by institution) for one round.

    In order: two different submissions from one member reject both (DUPLICATE; resending the
    same one is harmless); members in `excluded` are rejected as given (e.g. LOW_SCORE); an
    update several members submitted is rejected for each of them (COPIED: which one copied
    cannot be told from the updates alone; semi and full contracts refuse a copy's commitment); each
    blob must load from the store and fit the model (MISSING, DIGEST_MISMATCH, INVALID_FORMAT,
    WRONG_LAYOUT, NOT_FINITE, OUT_OF_RANGE) and stay within the norm bound (NORM_ABOVE_BOUND);
    if the claimed sample counts together overflow the fixed-point sums, the largest claims are
    rejected until they fit; then updates far from the rest are rejected as OUTLIER; last, if
    fewer than `rules.min_aggregated` remain, they are rejected as TOO_FEW_FOR_NOISE.
    """
    excluded = excluded or {}
    rejected: list[Rejection] = []
    loaded: list[tuple[Candidate, np.ndarray]] = []
    copied = _copied(candidates)
    for institution, offers in _by_institution(candidates).items():
        if len(offers) > 1:
            rejected.append(Rejection.of(offers[0], Reason.DUPLICATE,
                                         f"{len(offers)} different updates in one round; none is aggregated"))
        elif institution in excluded:
            rejected.append(excluded[institution])
        elif offers[0].update in copied:
            rejected.append(copied[offers[0].update](offers[0]))
        else:
            params_or_rejection = _load(store, offers[0], global_params, rules)
            if isinstance(params_or_rejection, Rejection):
                rejected.append(params_or_rejection)
            else:
                loaded.append((offers[0], params_or_rejection))
    loaded, too_heavy = _fit_sample_total(loaded)
    rejected += too_heavy
    if rules.outlier_factor > 0 and loaded:
        updates = [ClientUpdate(c.institution, params, c.num_samples) for c, params in loaded]
        outliers = find_outliers(global_params, updates, rules.outlier_factor)
        rejected += [Rejection.of(c, Reason.OUTLIER, outliers[c.institution])
                     for c, _ in loaded if c.institution in outliers]
        loaded = [(c, p) for c, p in loaded if c.institution not in outliers]
    accepted, too_few = _enough_for_noise([c for c, _ in loaded], rules.min_aggregated)
    return sorted(accepted, key=lambda c: c.institution.lower()), sorted(rejected + too_few, key=_by_member)


def screen_protected(candidates: Sequence[Candidate], problem: Callable[[Candidate], Rejection | None],
                     min_aggregated: int = 0) -> tuple[list[Candidate], list[Rejection]]:
    """Screening of masked or encrypted updates, whose values cannot be seen: `problem` checks
    what can be (the artifact, its layout), after the sample count; DP-FedAvg's `min_aggregated`
    applies as to plain ones."""
    accepted, rejected = [], []
    copied = _copied(candidates)
    for c in sorted(candidates, key=_by_member):
        if c.update in copied:
            rejected.append(copied[c.update](c))
            continue
        found = (problem(c) if 0 < c.num_samples <= fx.MAX_TOTAL_SAMPLES else Rejection.of(
            c, Reason.OUT_OF_RANGE, f"num_samples is {c.num_samples}, expected 1 to {fx.MAX_TOTAL_SAMPLES}"))
        if found is None:
            accepted.append(c)
        else:
            rejected.append(found)
    accepted, too_few = _enough_for_noise(accepted, min_aggregated)
    return accepted, sorted(rejected + too_few, key=_by_member)


def _enough_for_noise(accepted: list[Candidate], min_aggregated: int) -> tuple[list[Candidate], list[Rejection]]:
    """With fewer than `min_aggregated` updates passing, none is aggregated (TOO_FEW_FOR_NOISE)."""
    if not 0 < len(accepted) < min_aggregated:
        return accepted, []
    return [], [Rejection.of(c, Reason.TOO_FEW_FOR_NOISE, f"only {len(accepted)} updates passed; DP-FedAvg's "
                             f"noise is shared among {min_aggregated}") for c in accepted]


def _by_member(item: Candidate | Rejection) -> str:
    return item.institution.lower()


def _copied(candidates: Sequence[Candidate]) -> dict[str, Callable[[Candidate], Rejection]]:
    """The update digests that more than one member submitted, each with its rejection."""
    owners: defaultdict[str, set[str]] = defaultdict(set)
    for c in candidates:
        owners[c.update].add(c.institution)

    def rejection(count: int) -> Callable[[Candidate], Rejection]:
        return lambda c: Rejection.of(c, Reason.COPIED, f"{count} members submitted this same update; "
                                                        f"none of theirs is aggregated")
    return {update: rejection(len(who)) for update, who in owners.items() if len(who) > 1}


def _by_institution(candidates: Sequence[Candidate]) -> dict[str, list[Candidate]]:
    """Each institution's distinct submissions (identical resubmissions collapse into one)."""
    offers: defaultdict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c not in offers[c.institution]:
            offers[c.institution].append(c)
    return dict(sorted(offers.items(), key=lambda item: item[0].lower()))


def _load(store: ArtifactStore, c: Candidate, global_params: np.ndarray, rules: ValidationRules
          ) -> np.ndarray | Rejection:
    """The update's parameters, or why it cannot be aggregated."""
    try:
        params = store.get_params(c.update, global_params.size)   # a longer blob is refused unread
    except StoreError as exc:
        return unloadable(c, exc)
    if params.size != global_params.size:
        return Rejection.of(c, Reason.WRONG_LAYOUT,
                            f"update has {params.size} parameters, the model has {global_params.size}")
    problem = update_problem(ClientUpdate(c.institution, params, c.num_samples), global_params.size)
    if problem:          # what is left: magnitude beyond the fixed-point bound, impossible sample count
        return Rejection.of(c, Reason.OUT_OF_RANGE, problem)
    if rules.max_update_norm > 0 and exceeds_norm(global_params, params, rules.max_update_norm):
        return Rejection.of(c, Reason.NORM_ABOVE_BOUND,
                            f"update changes the model by norm {update_norm(global_params, params):.6g}, "
                            f"above the study's bound {rules.max_update_norm:g}")
    return params


def unloadable(c: Candidate, exc: StoreError) -> Rejection:
    """The rejection of an update the store cannot give: missing, corrupt, or not a digest."""
    if isinstance(exc, ArtifactMissing):
        return Rejection.of(c, Reason.MISSING, str(exc))
    if isinstance(exc, ArtifactCorrupt):
        return Rejection.of(c, _CORRUPT.get(exc.kind, Reason.INVALID_FORMAT), str(exc))
    return Rejection(c.institution, Reason.INVALID_FORMAT, str(exc))   # not a digest: nothing to name


def _fit_sample_total(loaded: list[tuple[Candidate, np.ndarray]]
                      ) -> tuple[list[tuple[Candidate, np.ndarray]], list[Rejection]]:
    """Drop the largest sample claims (ties: by institution) until the total fits the fixed-point
    sums; honest counts never come near the limit, so this only ever removes inflated claims."""
    kept = sorted(loaded, key=lambda item: (item[0].num_samples, item[0].institution.lower()))
    total = sum(c.num_samples for c, _ in kept)
    rejected = []
    while total > fx.MAX_TOTAL_SAMPLES:
        c, _ = kept.pop()
        total -= c.num_samples
        rejected.append(Rejection.of(c, Reason.OUT_OF_RANGE,
                                     f"claims {c.num_samples} samples: the round's claims together exceed "
                                     f"the limit of {fx.MAX_TOTAL_SAMPLES}"))
    return kept, rejected
