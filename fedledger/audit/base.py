"""What every architecture's audit shares: artifacts re-hashed on read, the study's anchored
config, the rounds walked in chain order, and the reputation history replayed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedledger.aggregation import Strategy, make_strategy
from fedledger.audit.policy import ReputationReplay
from fedledger.audit.report import AuditReport
from fedledger.audit.secure import study_scheme
from fedledger.chain import ChainBackend, Consortium, LooseStudy, Role, RoundStudy
from fedledger.chain.consortium import held_role_at
from fedledger.errors import FedLedgerError
from fedledger.config import config_from_dict
from fedledger.learning import BINARY, Task
from fedledger.protocol import UpdateScheme
from fedledger.protocol.context import study_over
from fedledger.protocol.evaluation import read_evaluation
from fedledger.protocol.setup import study_task
from fedledger.store import ArtifactStore
from fedledger.validation import ValidationRules

Changes = Counter[tuple[int, str, str]]   # (round, member, reason) -> how many such reputation changes


def artifact(report: AuditReport, subject: str, what: str, digest: str, loader: Callable[[str], Any]) -> Any:
    """Load an artifact, recording whether it is intact; None if it is missing or corrupt."""
    try:
        value = loader(digest)
    except FedLedgerError as exc:
        report.record(subject, f"{what} artifact intact", False, str(exc))
        return None
    report.record(subject, f"{what} artifact intact", True)
    return value


@dataclass(frozen=True)
class Study:
    """What the study's anchored config fixes for every round of its audit."""
    config: Mapping[str, Any] | None   # None where the config artifact cannot be had
    strategy: Strategy | None          # None where the config names none that can be made
    rules: ValidationRules
    scheme: UpdateScheme               # how updates are sent (plain, masked, encrypted)
    roster: tuple[str, ...] = ()       # semi and full: the members the study started with
    task: Task = BINARY                # what the model predicts: how its evaluations read


@dataclass(frozen=True)
class Tally:
    """What the study-wide checks (reputation, privacy) need of the rounds."""
    changes: Changes = field(default_factory=Counter)   # reputation changes the rounds call for
    samples: Mapping[tuple[int, str], int | None] = field(default_factory=dict)   # loose: as the manifests say
    aggregated: Mapping[int, int] = field(default_factory=dict)   # round -> how many updates it aggregated

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.changes + other.changes, {**self.samples, **other.samples},
                     {**self.aggregated, **other.aggregated})


@dataclass(frozen=True)
class RoundResult:
    """What one round's audit hands on to the next round and to the study-wide checks."""
    model: str                        # the round's model on chain: the next round's parent
    state_after: str | None = None    # the server state the next round continues from (None: unknown)
    tally: Tally = field(default_factory=Tally)


class Auditor(ABC):
    """One architecture's audit of one study (see audit/verify.py for how one is picked)."""

    def __init__(self, report: AuditReport, backend: ChainBackend, info: Mapping[str, Any],
                 store: ArtifactStore) -> None:
        self.report = report
        self.backend = backend
        self.store = store
        self.consortium = Consortium(backend, info["contracts"]["consortium"])
        self.membership = self.consortium.membership_events()   # fetched once: log queries are slow
        self.names = {e["member"]: e["name"] for e in self.membership if e.get("name")}   # address -> latest name
        self.contract: LooseStudy | RoundStudy
        self.study: Study | None = None       # what the anchored config fixes, once verify() read it

    @abstractmethod
    def roster(self, info: Mapping[str, Any]) -> list[str]:
        """The members whose privacy budgets decide whether the study goes on (`study_over`)."""

    @abstractmethod
    def model_of(self, round: int) -> str:
        """The model of finalized (anchored) round `round`, as the chain holds it."""

    def member_named(self, name: str) -> str | None:
        """The address the consortium admitted under `name` (the latest, if several)."""
        named = [e["member"] for e in self.membership if e.get("name") == name]
        return named[-1] if named else None

    def verify_complete(self, roster: Sequence[str]) -> None:
        """The chain holds every round the anchored config plans, unless the chain itself shows
        why the study stopped sooner (too few members' privacy budgets cover another round, the
        rule every member applies): fewer rounds and no such reason is a truncated chain, or a
        study still running (audit it again when it ends)."""
        finished = self.contract.round_count()
        try:
            if self.study is None or self.study.config is None:
                raise FedLedgerError("the anchored config artifact is unavailable")
            cfg = config_from_dict(dict(self.study.config))
        except FedLedgerError as exc:
            self.report.record("study", "every planned round is on chain", False,
                               f"the planned rounds are unknown: {exc}")
            return
        stopped = finished < cfg.study.rounds and study_over(cfg, self.contract, roster, finished)
        self.report.record("study", "every planned round is on chain", finished >= cfg.study.rounds or stopped,
                           f"the chain holds {finished} of the {cfg.study.rounds} rounds the config plans and shows "
                           "no reason the study stopped: a truncated chain, or a study still running")
        if stopped:
            self.report.not_verified(f"rounds {finished + 1} to {cfg.study.rounds}: the study stopped after round "
                                     f"{finished}, as too few members' privacy budgets covered another round")

    def signed_figures(self, subject: str, evaluations: Any, model: str, where: str = "") -> dict[str, dict] | None:
        """name -> figures of the signed evaluations of `model` that `evaluations` (member name ->
        digest) names; None, with the failure recorded, if one of them is not a member's intact
        signed evaluation of `model`."""
        if not isinstance(evaluations, dict):
            self.report.record(subject, f"evaluations{where} name members' signed evaluations", False,
                               "no name -> digest table of evaluations")
            return None
        figures = {}
        for name, digest in evaluations.items():
            member = self.member_named(name) if isinstance(name, str) else None
            if member is None or not isinstance(digest, str):
                self.report.record(subject, f"evaluations{where} name members' signed evaluations", False,
                                   f"{name!r} is no member of the consortium, or names no digest")
                return None
            found = self.verify_evaluation(subject, f"evaluation by {name}{where}", digest, member, model)
            if found is None:
                return None
            figures[name] = found
        return figures

    def verify_evaluation(self, subject: str, what: str, digest: str, member: str, model: str, *,
                          theirs: bool = False) -> dict[str, float] | None:
        """The figures of `member`'s signed evaluation of `model` stored under `digest`; None if
        there are none to use. A missing or altered document fails the audit. `theirs`: the member
        itself named the digest on chain, so a document it got wrong is its own doing and is
        listed as not verified rather than failed."""
        figures = read_evaluation(self.store, digest, member, model, self.backend.chain_id, self.contract.address,
                                  self.task)
        if isinstance(figures, str) and theirs and not figures.startswith("unavailable"):
            self.report.not_verified(f"{subject}: {what}: {figures}")
            return None
        self.report.record(subject, f"{what} intact and signed by its institution", not isinstance(figures, str),
                           str(figures))
        return None if isinstance(figures, str) else figures

    def verify_names(self, claimed: Mapping[str, str]) -> None:
        """run.json's institutions (name -> address) are members of the consortium under those
        names: reports and comparisons show these names, so they must be the chain's."""
        on_chain = {e["member"].lower(): e["name"] for e in self.membership if "name" in e}
        wrong = [f"{name} ({address})" for name, address in claimed.items()
                 if not isinstance(address, str) or on_chain.get(address.lower()) != name]
        self.report.record("study", "run.json's institution names are the consortium's", not wrong,
                           f"not members under these names on chain: {', '.join(wrong[:3])}")

    @abstractmethod
    def verify(self) -> None:
        """Check the whole study, recording every check in the report."""

    @abstractmethod
    def _verify_round(self, study: Study, round: Any, parent: str, state_before: str | None) -> RoundResult:
        """Check one round as the chain holds it, continuing from `parent` and `state_before`."""

    def _held_role(self, address: str, block: int, role: Role = Role.INSTITUTION) -> bool:
        return held_role_at(self.membership, address, block, role)

    def _study(self, contract: LooseStudy | RoundStudy, roster: Sequence[str] = ()) -> Study:
        """The study's anchored config and what it fixes; records whether they can be had."""
        config = artifact(self.report, "study", "config", contract.config_digest(), self.store.get_json)
        artifact(self.report, "study", "initial model", contract.initial_model(), self.store.get_params)
        self.study = Study(config, self._strategy(config), ValidationRules.from_config(config),
                           study_scheme(config, contract, self.names), tuple(roster), self._task(config))
        return self.study

    def _task(self, config: Mapping[str, Any] | None) -> Task:
        if config is None:
            return BINARY     # the missing config is recorded; evaluations then read as binary ones
        try:
            return study_task(config_from_dict(dict(config)))
        except FedLedgerError as exc:
            self.report.record("study", "task from config", False, str(exc))
            return BINARY

    @property
    def task(self) -> Task:
        return self.study.task if self.study is not None else BINARY

    def _strategy(self, config: Mapping[str, Any] | None) -> Strategy | None:
        if config is None:
            return None
        try:
            agg = config["aggregation"]
            return make_strategy(agg["strategy"], **agg["params"])
        except (FedLedgerError, KeyError, TypeError) as exc:
            self.report.record("study", "strategy from config", False, str(exc))
            return None

    def _verify_rounds(self, study: Study, rounds: Iterable[Any], initial_model: str) -> Tally:
        """Check `rounds` in chain order, each continuing from the one before."""
        tally, parent, state = Tally(), initial_model, None
        for round in rounds:
            result = self._verify_round(study, round, parent, state)
            tally, parent, state = tally + result.tally, result.model, result.state_after
        return tally

    def _verify_reputation(self, contract: LooseStudy | RoundStudy, events: Sequence[Mapping[str, Any]],
                           expected: Changes, roster: Sequence[str] | None = None) -> None:
        """Replay the contract's reputation events: they must follow the rules, be the changes
        the rounds call for (`expected`), and end at the contract's values for the `roster`'s
        members (a loose study has no roster: for the members its events name)."""
        replay = ReputationReplay(contract.suspension_threshold(), roster or ())
        admin = self.consortium.admin()
        seen = replay.replay(events, lambda block: admin)
        members = roster if roster is not None else {e["member"] for e in events if e["event"] == "ReputationChanged"}
        replay.verify(self.report, seen, expected, {m: contract.reputation(m) for m in members},
                      {m for m in members if contract.suspended(m)})
