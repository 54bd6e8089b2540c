"""What every architecture's audit shares: artifacts re-hashed on read, the study's anchored
config, and aggregation recomputed from the stored updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedledger.aggregation import Strategy, make_strategy
from fedledger.audit.report import AuditReport
from fedledger.chain import ChainBackend, Consortium, Role
from fedledger.chain.consortium import held_role_at
from fedledger.errors import FedLedgerError
from fedledger.protocol import aggregate_round
from fedledger.protocol import AggregationRecord
from fedledger.store import ArtifactStore, encode_arrays, encode_params, sha256_hex


class Auditor:
    """What every architecture's audit shares: artifacts, the study's config, recomputation."""

    def __init__(self, report: AuditReport, backend: ChainBackend, info: dict[str, Any], store: ArtifactStore) -> None:
        self.report = report
        self.backend = backend
        self.store = store
        self.consortium = Consortium(backend, info["contracts"]["consortium"])
        self.membership = self.consortium.membership_events()   # fetched once: log queries are slow

    def _held_role(self, address: str, block: int, role: Role = Role.INSTITUTION) -> bool:
        return held_role_at(self.membership, address, block, role)

    def _artifact(self, subject: str, what: str, digest: str, loader: Callable[[str], Any]) -> Any:
        """Load an artifact, recording a failure (and returning None) if missing or corrupt."""
        try:
            value = loader(digest)
        except FedLedgerError as exc:
            self.report.record(subject, f"{what} artifact intact", False, str(exc))
            return None
        self.report.record(subject, f"{what} artifact intact", True)
        return value

    def _study_config(self, config_digest: str, initial_model: str) -> tuple[dict[str, Any] | None, Strategy | None]:
        """The anchored config and the strategy it names (None where they cannot be had)."""
        config = self._artifact("study", "config", config_digest, self.store.get_json)
        self._artifact("study", "initial model", initial_model, self.store.get_params)
        if config is None:
            return None, None
        try:
            agg = config["aggregation"]
            return config, make_strategy(agg["strategy"], **agg["params"])
        except (FedLedgerError, KeyError, TypeError) as exc:
            self.report.record("study", "strategy from config", False, str(exc))
            return config, None

    def _recompute(self, subject: str, parent: str, model: str, manifest: dict[str, Any],
                   entries: list[dict[str, Any]], strategy: Strategy, record: AggregationRecord | None = None) -> None:
        """Aggregate the entries again (under secure aggregation: unmask their sum with the
        revealed shares); the result must hash to `model` and the manifest's state."""
        try:
            params, state = aggregate_round(self.store, strategy, parent, entries, manifest["state_before"], record)
        except FedLedgerError as exc:
            self.report.record(subject, "aggregation recomputed", False, str(exc))
            return
        recomputed = sha256_hex(encode_params(params))
        self.report.record(subject, "aggregation recomputed", recomputed == model,
                           f"recomputing {strategy.name} from the stored updates gives {recomputed}, "
                           f"the chain says {model}")
        state_after = sha256_hex(encode_arrays(state)) if state else None
        self.report.record(subject, "server state recomputed", state_after == manifest["state_after"],
                           f"recomputed state {state_after}, the manifest says {manifest['state_after']}")
