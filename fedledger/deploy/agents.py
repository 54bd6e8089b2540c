"""What one deployed node does each time it looks at the chain, by architecture and role.

Every agent is restartable by construction: it keeps no state that the chain and its own store
do not hold. Each `step` reads where the study is, does the one thing its member owes (train and
commit, aggregate, score, vote, anchor), and returns; a node killed between two steps, or in the
middle of one, picks up from the chain when it starts again. Phase changes that anyone may make
(closing a phase, redrawing a committee) are raced for: the first transaction wins, the others
revert harmlessly.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from fedledger.aggregation import Strategy
from fedledger.chain import (
    NO_SPEND,
    Commitment,
    CommitteeStudy,
    ConsensusStudy,
    Consortium,
    Phase,
    PrivacyBudget,
    StudyLedger,
)
from fedledger.config import Config
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.server import get_json
from fedledger.errors import FedLedgerError, TransactionReverted, UpdateRejected
from fedledger.protocol import (
    InstitutionNode,
    Rejection,
    RoundTask,
    SignedUpdate,
    exclusion_rule,
    rewards,
)
from fedledger.protocol.rounds import Aggregate, aggregate_commitments, reason_codes, round_task
from fedledger.protocol.setup import loose_coordinator, validation_rules
from fedledger.report import summarize_evaluations
from fedledger.store.peers import PeerStore
from fedledger.validation import Reason

log = logging.getLogger("fedledger.node")

ZERO_ADDRESS = "0x" + "00" * 20
UPDATE_FETCH_TIMEOUT_S = (2.0, 10.0)
EVALUATION_KEYS = ("tp", "fp", "tn", "fn", "loss", "n")


class Timings:
    """Seconds spent per activity (train, evaluate, aggregate, score, fetch, chain, step), in
    total and per round (the round the agent was working on)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.by_round: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.round = 0

    def add(self, activity: str, seconds: float) -> None:
        self.seconds[activity] += seconds
        self.by_round[self.round][activity] += seconds

    @contextmanager
    def measure(self, activity: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(activity, time.perf_counter() - start)


@dataclass
class NodeContext:
    """What every agent works with."""
    cfg: Config
    account: LocalAccount
    store: PeerStore
    strategy: Strategy
    node: InstitutionNode | None            # None for the loose coordinator, which holds no data
    endpoints: dict[str, str]               # member address -> its node's base URL
    names: dict[str, str]                   # member address -> its name, for logs
    timings: Timings = field(default_factory=Timings)

    @property
    def address(self) -> str:
        return self.account.address

    def chain(self, send: Callable[[], Any]) -> Any:
        with self.timings.measure("chain"):
            return send()


def race(ctx: NodeContext, what: str, send: Callable[[], Any]) -> bool:
    """Send a transaction any member may send; if another member's landed first, ours reverts."""
    try:
        ctx.chain(send)
    except TransactionReverted as exc:
        log.debug("%s: not needed (%s)", what, exc)
        return False
    log.info("%s", what)
    return True


class ChainRoundAgent:
    """An institution in a semi- or fully coupled study: everything goes through the contract."""

    def __init__(self, ctx: NodeContext, study: CommitteeStudy | ConsensusStudy) -> None:
        assert ctx.node is not None
        self.ctx, self.node, self.study = ctx, ctx.node, study
        self.roster = study.roster()
        restore_privacy(self.node, study)
        # (action, round[, attempt]) this process sent, or found done: a transaction the node
        # refused (not a revert) leaves it out, so the next step tries again
        self.done: set[tuple] = set()
        self.states: dict[int, str | None] = {}

    def step(self) -> bool:
        finished = self.study.round_count()
        if finished >= self.ctx.cfg.study.rounds:
            return True
        r = self.ctx.timings.round = finished + 1
        if self.study.suspended(self.ctx.address):
            if ("suspended", r) not in self.done:
                log.warning("round %d: this member is suspended by the reputation policy (reputation %d); "
                            "waiting for governance to reinstate it", r, self.study.reputation(self.ctx.address))
                self.done.add(("suspended", r))
            return False
        phase = self.study.phase()
        if phase == Phase.COMMITTING:
            self._commit(r)
        elif isinstance(self.study, CommitteeStudy):
            self._aggregate_if_drawn(r)
        elif phase == Phase.SCORING:
            self._score(r)
        else:
            self._vote(r)
        return False

    def _deadline_passed(self) -> bool:
        return self.study.backend.block_number() > self.study.phase_deadline()

    def _commit(self, r: int) -> None:
        study, ctx = self.study, self.ctx
        committers = study.committers(r)
        if ctx.address not in committers and ("commit", r) not in self.done:
            parent = study.latest_model()
            task = round_task(study, ctx.strategy, r, parent)
            with ctx.timings.measure("train"):
                update = self.node.train(task)
            if update is None:
                log.warning("round %d: my privacy budget is spent; not taking part", r)
                self.done.add(("commit", r))
                return
            with ctx.timings.measure("evaluate"):
                metrics = ctx.store.put_json(self.node.evaluate(parent))
            c = update.commitment
            ctx.chain(lambda: study.commit_update(ctx.account, r, parent, c.update, c.num_samples, metrics,
                                                  update.spend or NO_SPEND))
            self.done.add(("commit", r))
            log.info("round %d: committed update %s (%d samples)", r, c.update[:12], c.num_samples)
            committers = study.committers(r)
        if len(committers) == len(self.roster) or (committers and self._latecomers_waited_for(r)):
            race(ctx, f"round {r}: closed the commit phase ({len(committers)} of {len(self.roster)} committed)",
                 lambda: study.close_commits(ctx.account, r))

    def _latecomers_waited_for(self, r: int) -> bool:
        """Past the contract's deadline and a whole commit window after the round's first
        commitment. The contract's window runs from the round's opening, which for round 1 is
        the deployment: without the second condition the first node up would close round 1
        alone while the others are still starting."""
        if not self._deadline_passed():
            return False
        first = self.study.events("UpdateCommitted", r)[0]["block"]
        return self.study.backend.block_number() > first + self.ctx.cfg.protocol.commit_window

    def _task(self, r: int) -> tuple[RoundTask, str | None]:
        """The round's task and the server state its aggregation continues from."""
        if r not in self.states:
            previous = self.study.finalized(r - 1) if r > 1 else None
            self.states[r] = self.ctx.store.get_json(previous[1])["state_after"] if previous else None
        return round_task(self.study, self.ctx.strategy, r, self.study.latest_model()), self.states[r]

    def _aggregate(self, r: int, architecture: str, commitments: list[Commitment], **kwargs: Any) -> Aggregate:
        task, state_before = self._task(r)
        with self.ctx.timings.measure("aggregate"):
            return aggregate_commitments(self.ctx.store, self.ctx.strategy, architecture=architecture, task=task,
                                         state_before=state_before, commitments=commitments,
                                         rules=validation_rules(self.ctx.cfg), **kwargs)

    def _aggregate_if_drawn(self, r: int) -> None:
        study, ctx = self.study, self.ctx
        attempt = study.attempt()
        if ctx.address in study.committee(r, attempt) and ("result", r, attempt) not in self.done:
            commitments = study.commitments(r)
            result = self._aggregate(r, "semi", commitments)
            codes = reason_codes(commitments, result.manifest)
            sent = race(ctx, f"round {r}: submitted result {result.model[:12]} as drawn aggregator (draw {attempt})",
                        lambda: study.submit_result(ctx.account, r, attempt, result.model, result.manifest_digest,
                                                    codes))
            self.done.add(("result", r, attempt))
            if sent:
                return
        if self._deadline_passed() and study.finalized(r) is None:
            race(ctx, f"round {r}: draw {attempt} reached no majority in time; drew a new committee",
                 lambda: study.redraw(ctx.account, r))

    def _score(self, r: int) -> None:
        study, ctx = self.study, self.ctx
        if ("scores", r) not in self.done:
            commitments = study.commitments(r)
            with ctx.timings.measure("score"):
                scores = [self.node.score(c.update) for c in commitments]
            race(ctx, f"round {r}: scored {len(scores)} updates", lambda: study.submit_scores(ctx.account, r, scores))
            self.done.add(("scores", r))
        scored = study.score_count(r)
        if scored == len(self.roster) or self._deadline_passed():
            race(ctx, f"round {r}: closed scoring ({scored} of {len(self.roster)} scored)",
                 lambda: study.close_scores(ctx.account, r))

    def _vote(self, r: int) -> None:
        study, ctx = self.study, self.ctx
        if ("vote", r) in self.done:
            return
        commitments = study.commitments(r)
        medians, excluded = exclusion_rule(commitments, study.scores(r), ctx.cfg.protocol.exclusion_margin)
        result = self._aggregate(r, "full", commitments, excluded=excluded, extra={"scores": medians})
        paid = rewards(commitments, medians, [e["institution"] for e in result.manifest["updates"]])
        codes = reason_codes(commitments, result.manifest)
        race(ctx, f"round {r}: voted for {result.model[:12]} ({sum(1 for c in codes if c)} rejected)",
             lambda: study.submit_vote(ctx.account, r, result.model, result.manifest_digest, paid, codes))
        self.done.add(("vote", r))


class LooseInstitutionAgent:
    """An institution in a loosely coupled study: trains each open round and offers its signed
    update at /rounds/N/update for the coordinator to collect; checks it was counted."""

    def __init__(self, ctx: NodeContext, ledger: StudyLedger, journal: Path) -> None:
        assert ctx.node is not None
        self.ctx, self.node, self.ledger = ctx, ctx.node, ledger
        self.journal = journal
        restore_privacy(self.node, ledger)
        self.checked = 0       # last anchored round whose inclusion was checked
        self.told: set[tuple[int, str]] = set()   # warnings already logged

    def update_of(self, round: int) -> dict[str, Any] | None:
        """The signed update this node offers for `round` (served over HTTP), if trained."""
        return read_entry(self.journal, round)

    def step(self) -> bool:
        ledger, ctx = self.ledger, self.ctx
        if ledger.coordinator() == ZERO_ADDRESS:
            return False       # the coordinator has not started the study yet
        finished = ledger.round_count()
        if finished > self.checked:
            self._check_counted(finished)
        if finished >= ctx.cfg.study.rounds:
            return True
        r = ctx.timings.round = finished + 1
        if self.update_of(r) is None:
            parent = ledger.latest_model()
            task = RoundTask(r, parent, ledger.backend.chain_id, ledger.address, ctx.strategy.client_config())
            with ctx.timings.measure("train"):
                update = self.node.train(task)
            if update is None:
                if (r, "budget") not in self.told:
                    log.warning("round %d: my privacy budget is spent; not taking part", r)
                    self.told.add((r, "budget"))
                return False
            with ctx.timings.measure("evaluate"):
                metrics = ctx.store.put_json(self.node.evaluate(parent))
            write_entry(self.journal, r, {**update.to_dict(), "metrics": metrics})
            log.info("round %d: trained update %s; offered to the coordinator", r, update.commitment.update[:12])
        return False

    def _check_counted(self, finished: int) -> None:
        record = self.ledger.get_round(finished)
        self.checked = finished
        if self.update_of(finished) is None:
            return
        if self.ctx.address in record.participants:
            log.info("round %d: my update was aggregated (model %s)", finished, record.model[:12])
            return
        try:
            manifest = self.ctx.store.get_json(record.manifest_digest)
        except FedLedgerError as exc:   # e.g. the coordinator is down: not worth holding up the next round
            log.warning("round %d: my update was not aggregated; the manifest saying why is unavailable (%s)",
                        finished, exc)
            return
        reasons = [r["reason"] for r in manifest["rejected"] if r["institution"] == self.ctx.address]
        log.warning("round %d: my update was not aggregated: %s", finished,
                    reasons[0] if reasons else "the coordinator did not collect it")


def restore_privacy(node: InstitutionNode, study: PrivacyBudget) -> None:
    """A restarted node takes up the privacy spends the chain recorded for it."""
    if node.privacy is not None:
        node.privacy.restore([x.spend for x in study.privacy_spends() if x.member == node.address])


class LooseCoordinatorAgent:
    """The loosely coupled study's coordinator: starts the study, collects the institutions'
    signed updates over HTTP, aggregates and anchors each round."""

    def __init__(self, ctx: NodeContext, ledger: StudyLedger, consortium: Consortium, config_digest: str,
                 initial_model: str, institutions: list[str]) -> None:
        self.ctx, self.ledger = ctx, ledger
        self.config_digest, self.initial_model = config_digest, initial_model
        self.institutions = institutions
        self.coordinator = loose_coordinator(ctx.account, ctx.store, ctx.strategy, consortium, ledger,
                                             validation_rules(ctx.cfg))
        self.round, self.opened = 0, None   # the open round; the block its first update came in
        self.collected: dict[str, tuple[SignedUpdate, str]] = {}    # institution -> (update, metrics digest)
        self.malformed: dict[str, str] = {}
        self.failed: frozenset[str] | None = None   # submissions a failed finalization was tried with

    def step(self) -> bool:
        ledger, ctx = self.ledger, self.ctx
        if ledger.coordinator() == ZERO_ADDRESS:
            ctx.chain(lambda: ledger.start_study(ctx.account, self.config_digest, self.initial_model))
            log.info("started the study (config %s, initial model %s)", self.config_digest[:12],
                     self.initial_model[:12])
        finished = ledger.round_count()
        if finished >= ctx.cfg.study.rounds:
            return True
        r = ctx.timings.round = finished + 1
        if r != self.round:
            self.round, self.opened = r, None
            self.collected, self.malformed, self.failed = {}, {}, None
        self._collect(r)
        if self.collected and self.opened is None:   # latecomers get a whole window from the first update
            self.opened = ledger.backend.block_number()
        waiting = len(self.collected) + len(self.malformed) < len(self.institutions)
        if waiting and (self.opened is None
                        or ledger.backend.block_number() <= self.opened + ctx.cfg.protocol.commit_window):
            return False
        if self.collected and frozenset(self.collected) != self.failed:
            self._finalize(r, finished)
        return False

    def _collect(self, r: int) -> None:
        for address in self.institutions:
            if address in self.collected or address in self.malformed:
                continue
            doc = get_json(f"{self.ctx.endpoints[address]}/rounds/{r}/update", UPDATE_FETCH_TIMEOUT_S)
            if doc is None:
                continue
            try:
                update = SignedUpdate.from_dict(doc)
                metrics = doc.get("metrics")
                if update.institution != address or not isinstance(metrics, str):
                    raise UpdateRejected("it names another institution or no metrics digest")
            except UpdateRejected as exc:
                self.malformed[address] = str(exc)
                log.warning("round %d: %s served a malformed update: %s", r, self.ctx.names[address], exc)
                continue
            self.collected[address] = (update, metrics)
            log.info("round %d: collected the update of %s (%d of %d)", r, self.ctx.names[address], len(self.collected),
                     len(self.institutions))

    def _finalize(self, r: int, finished: int) -> None:
        ctx, ledger = self.ctx, self.ledger
        parent = ledger.latest_model()
        state_before = ctx.store.get_json(ledger.get_round(finished).manifest_digest)["state_after"] \
            if finished else None
        task = self.coordinator.open_round(r, parent)
        with ctx.timings.measure("aggregate"):
            accepted, rejected = self.coordinator.screen(task, [u for u, _ in self.collected.values()])
        rejected += [Rejection(a, Reason.INVALID_FORMAT, reason) for a, reason in self.malformed.items()]
        try:
            with ctx.timings.measure("aggregate"):
                outcome = self.coordinator.finalize(task, accepted, rejected, state_before,
                                                    lambda model: self._metrics(parent, accepted))
        except UpdateRejected as exc:
            self.failed = frozenset(self.collected)
            log.error("round %d: cannot finalize yet: %s", r, exc)
            return
        log.info("round %d: anchored model %s (%d updates aggregated, %d rejected)", r, outcome.model[:12],
                 len(outcome.accepted), len(outcome.rejected))

    def _metrics(self, parent: str, accepted: list[SignedUpdate]) -> dict[str, Any]:
        """The institutions' own evaluations of the round's parent model, as they reported them
        with their updates (a coordinator holds no test data of its own)."""
        reported = {}
        for update in accepted:
            evaluation = _evaluation(self.ctx.store, self.collected[update.institution][1])
            if evaluation is not None:
                reported[update.institution] = evaluation
        return {"evaluated_model": parent, **summarize_evaluations(reported)}


def _evaluation(store: PeerStore, digest: str) -> dict[str, float] | None:
    """A peer's evaluation document, if it is one (untrusted: a malformed one is left out)."""
    try:
        doc = store.get_json(digest)
    except FedLedgerError as exc:   # missing everywhere, corrupt, or not a digest: leave it out
        log.warning("evaluation %s unavailable: %s", digest, exc)
        return None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), int | float) for k in EVALUATION_KEYS):
        log.warning("evaluation %s is not an evaluation document; left out", digest)
        return None
    return doc
