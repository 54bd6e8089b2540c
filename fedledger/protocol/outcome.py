"""What a finalized round ended with, read back from the chain and the store by anyone: the
runtimes report it, the simulation writes it to metrics.jsonl."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedledger.store import ArtifactStore
from fedledger.validation import Rejection


@dataclass(frozen=True)
class RoundOutcome:
    """A finalized round, whichever architecture ran it."""
    round: int
    model: str
    state: str | None                 # server-optimizer state after the round
    manifest: str
    accepted: tuple[str, ...]         # institutions whose updates were aggregated
    rejected: tuple[Rejection, ...]
    details: Mapping[str, Any] = field(default_factory=dict)   # committees, scores, rewards, outvoted


def round_outcome(architecture: str, study: Any, store: ArtifactStore, round: int) -> RoundOutcome:
    """Round `round` of `study` as finalized (anchored, for loose)."""
    digest = study.round_manifest(round)
    manifest = store.get_json(digest)
    details: dict[str, Any] = {}
    if architecture == "semi":
        final = study.final_attempt(round)
        details["committees"] = [study.committee(round, a) for a in range(1, final + 1)]
        details["outvoted"] = sorted(v.member for v in study.results(round)
                                     if v.attempt == final and v.manifest_digest != digest)
    elif architecture == "full":
        deciding = study.vote_epoch(round)
        votes = [v for v in study.votes(round) if v.attempt == deciding]
        final = next(v for v in votes if v.manifest_digest == digest)
        details["scores"] = manifest["scores"]
        details["rewards"] = dict(zip(study.committers(round), final.rewards or []))
        details["outvoted"] = sorted(v.member for v in votes if v.manifest_digest != digest)
    return RoundOutcome(round, manifest["model"], manifest["state_after"], digest,
                        tuple(e["institution"] for e in manifest["updates"]),
                        tuple(Rejection.from_record(r) for r in manifest["rejected"]), details)
