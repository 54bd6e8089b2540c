"""Run a study from a validated config: set up the consortium on chain, run the rounds, write the run.

Every member's roles are the protocol's own (fedledger.protocol), stepped by the scheduler in one
process; simulated members share nothing but the chain, the store and their noticeboards, as
separate processes would.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from tqdm import tqdm

from fedledger.aggregation import Strategy, make_strategy
from fedledger.chain import ChainBackend, EmbeddedChain
from fedledger.chain.embedded import resolve_engine
from fedledger.config import Config
from fedledger.errors import ConfigError
from fedledger.protocol import (
    InstitutionNode,
    MemberContext,
    Role,
    RoundOutcome,
    coordinator_roles,
    institution_roles,
    round_outcome,
)
from fedledger.protocol.context import study_over
from fedledger.protocol.privacy import MemberPrivacy, needed_per_round
from fedledger.protocol.sampling import draw_problem
from fedledger.protocol.setup import (
    connect_rpc,
    initial_params,
    load_clients,
    local_study,
    model_spec,
    ChainSetup,
    set_up_chain,
    train_config,
    update_scheme,
)
from fedledger.learning.preprocessing import preprocessing_record
from fedledger.report import metrics_title, plot_metrics, results_table, summarize_evaluations
from fedledger.simulation.attacks import build_nodes
from fedledger.simulation.faults import Faults, coordinator_with_faults, with_faults
from fedledger.simulation.noticeboard import MemoryNotices
from fedledger.rundir import RUN_FORMAT, RunDir
from fedledger.simulation.scheduler import Clock, Scheduler
from fedledger.store import ArtifactStore

# Roles log what they do as a deployed node's would; a simulated study keeps it to itself.
log = logging.getLogger("fedledger.simulation")
log.addHandler(logging.NullHandler())
log.propagate = False


@dataclass
class StudyResult:
    run_dir: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)   # one entry per round, as in metrics.jsonl
    setup_chain: dict[str, int] = field(default_factory=dict)    # transactions and gas before round 1
    final_evaluations: dict[str, int] = field(default_factory=dict)   # the institutions' evaluations of the last model
    wall_seconds: float = 0.0
    # hash of the chain's latest block when the study ended: kept outside the run directory, it
    # lets an auditor tell this chain from a rebuilt one (`audit verify --head`)
    chain_head: str | None = None
    # institutions that ran a simulated attack ([attack]), in roster order
    attackers: list[str] = field(default_factory=list)
    # institutions the reputation policy suspended -> the round it happened in (from the chain)
    suspended: dict[str, int] = field(default_factory=dict)
    # under differential privacy: institution -> its spend (epsilon, delta, releases, noise multiplier)
    privacy: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped: str | None = None   # why the study ended before [study].rounds, if it did
    # [personalization]: each institution's fine-tuned final model, scored at its site (its own account)
    personalized: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.rounds[-1]["metrics"]


def _connect(cfg: Config, run: RunDir) -> ChainBackend:
    if not cfg.chain.rpc_url:
        engine = resolve_engine(cfg.chain.engine)
        if engine == "revm" and cfg.study.architecture == "semi":
            # pyrevm 0.3.7 cannot be given block hashes: the committee would be drawn from hashes
            # no auditor can read off the chain, and the audit would fail every draw.
            raise ConfigError("[chain].engine = \"revm\" cannot run architecture \"semi\" (its committee "
                              "draw reads blockhash, which the revm engine cannot supply): use engine = \"py-evm\"")
        return EmbeddedChain.create(run.chain, engine)
    return connect_rpc(cfg.chain.rpc_url, cfg.chain.funder_key_env)


def faults_of(cfg: Config) -> Faults:
    """The injected faults the config asks for."""
    f = cfg.faults
    return Faults(wrong_result=f.wrong_result, silent=f.silent, no_update=f.no_update, dropout=f.dropout,
                  straggler=f.straggler, seed=cfg.study.seed)


def schedule(cfg: Config, study: Any, store: ArtifactStore, strategy: Strategy, nodes: list[InstitutionNode],
             coordinator: LocalAccount, config_digest: str, initial: str, clock: Clock) -> Scheduler:
    """Every member's roles (with the configured faults swapped in), ready to be stepped."""
    notices = MemoryNotices()
    roster = [n.address for n in nodes]
    names = {n.address: n.name for n in nodes} | {coordinator.address: "coordinator"}

    def context(account: LocalAccount) -> MemberContext:
        return MemberContext(cfg, account, study, store, strategy, roster, notices.of(account.address), log, names)

    faults = faults_of(cfg)
    members: list[tuple[str, list[Role]]] = []
    if cfg.study.architecture == "loose":
        (role,) = coordinator_roles(context(coordinator), update_scheme(cfg, study, names), config_digest, initial)
        members.append(("coordinator", coordinator_with_faults(faults, role)))
    for index, node in enumerate(nodes):
        roles = institution_roles(context(node.account), node, update_scheme(cfg, study, names))
        members.append((node.name, with_faults(faults, index, len(nodes), roles)))
    return Scheduler(members, clock)


def privacy_summary(member: MemberPrivacy) -> dict[str, float]:
    """What one member spent: epsilon at the study's delta, releases, its mechanism."""
    m = member.mechanism
    return {"epsilon": member.epsilon, "delta": member.plan.delta, "releases": len(member.history),
            "noise_multiplier": m.noise_multiplier, "sample_rate": m.sample_rate, "steps": m.steps}


def _evaluate(nodes: list[InstitutionNode], study: Any, store: ArtifactStore, model: str) -> dict[str, Any]:
    """Every institution scores `model` on its own test set and signs its evaluation; the
    summary of them is the round's metrics, their digests let `audit verify` re-derive it."""
    digests = {node.name: node.signed_evaluation(model, study.chain_id, study.address) for node in nodes}
    figures = {name: store.get_json(digest)["figures"] for name, digest in digests.items()}
    return {"metrics": summarize_evaluations(figures, nodes[0].model_spec.task), "evaluations": digests}


def personalized(nodes: Sequence[InstitutionNode], model: str, cfg: Config) -> dict[str, Any]:
    """Each institution's personalization of the final model ([personalization]): the steps it
    chose on its validation rows, and the summary of its fine-tuned models' test figures."""
    chosen = {n.name: n.personalize(model, cfg.personalization.steps, cfg.personalization.lr) for n in nodes}
    return {"steps": {name: c["steps"] for name, c in chosen.items()},
            **summarize_evaluations({name: c["figures"] for name, c in chosen.items()}, nodes[0].model_spec.task)}


def run_study(cfg: Config, *, run_dir: str | Path | None = None, progress: bool = True) -> StudyResult:
    """Run the configured study and write its run directory (created under [study].output_dir)."""
    started = time.perf_counter()
    clients = load_clients(cfg)
    run = RunDir(Path(run_dir)) if run_dir else RunDir.create(cfg.resolve_path(cfg.study.output_dir), cfg.study.name)
    run.path.mkdir(parents=True, exist_ok=True)
    store = ArtifactStore(run.store)
    strategy = make_strategy(cfg.aggregation.strategy, **cfg.aggregation.params)
    spec = model_spec(cfg, clients[0].num_features)
    training = train_config(cfg)

    admin, coordinator_key = Account.create(), Account.create()
    nodes, attackers = build_nodes(cfg, clients, spec, training, store, [Account.create() for _ in clients])

    problem = draw_problem(cfg, len(nodes))
    if problem:
        raise ConfigError(problem)
    if not _budget_covers_round(cfg, nodes):
        raise ConfigError("the privacy budget does not cover one round: raise [privacy].epsilon or "
                          "[privacy].noise_multiplier (or set it to 0 to calibrate it to the budget)")
    initial = store.put_params(initial_params(cfg, spec))
    config_digest = store.put_json(cfg.to_dict())
    run.write_json("config.json", cfg.to_dict())

    chain = None
    if cfg.chain.enabled:
        backend = _connect(cfg, run)
        chain = set_up_chain(backend, admin, coordinator_key, [(n.name, n.account) for n in nodes],
                             config_digest, initial, cfg)
        study, clock = chain.study, chain.backend
    else:
        study = local_study(cfg, [n.address for n in nodes], config_digest, initial)
        clock = study.clock
    try:
        result = StudyResult(run.path, attackers=attackers)
        scheduler = schedule(cfg, study, store, strategy, nodes, coordinator_key, config_digest, initial, clock)
        scheduler.run_until(study.started, 1)     # loose: the coordinator starts the study
        if chain:
            result.setup_chain = _stats(chain.backend)
        run.write_json("run.json", _run_info(cfg, chain, nodes, coordinator_key))
        _run_rounds(cfg, run, scheduler, study, store, nodes, chain, result, progress)
        names = {n.address: n.name for n in nodes}
        result.suspended = {names[m]: r for m, r in study.suspensions().items()}
        if chain:
            result.chain_head = chain.backend.w3.eth.get_block("latest")["hash"].to_0x_hex()
            result.final_evaluations = _final_evaluations(chain.backend)
    finally:
        if chain:
            chain.backend.close()
    if cfg.personalization.steps and result.rounds:
        result.personalized = personalized(nodes, result.rounds[-1]["model"], cfg)
        if progress:
            steps = ", ".join(f"{name} {k}" for name, k in result.personalized["steps"].items())
            print(f"\npersonalized (each site fine-tunes the final model; steps chosen on its validation rows: "
                  f"{steps}):\n{results_table(result.personalized, nodes[0].model_spec.task)}")
    # the institutions' scaling as they trained with it (the consortium's, once standardized)
    run.write_json("preprocessing.json", preprocessing_record([n.data for n in nodes], nodes[0].model_spec.task,
                                                              cfg.data.classes))
    result.privacy = {n.name: privacy_summary(n.privacy) for n in nodes if n.privacy is not None}
    result.wall_seconds = time.perf_counter() - started
    plot_metrics(result.rounds, run.path / "metrics.png", metrics_title(cfg.study.name, strategy), spec.task.headline)
    run.write_json("results.json", {"final": result.final, "setup_chain": result.setup_chain,
                                    "final_evaluations": result.final_evaluations,
                                    "chain_head": result.chain_head, "attackers": result.attackers,
                                    "suspended": result.suspended, "privacy": result.privacy,
                                    "personalized": result.personalized,
                                    "stopped": result.stopped,
                                    "rounds": [{k: v for k, v in r.items() if k != "metrics"} for r in result.rounds],
                                    "wall_seconds": result.wall_seconds})
    return result


def _run_rounds(cfg: Config, run: RunDir, scheduler: Scheduler, study: Any, store: ArtifactStore,
                nodes: list[InstitutionNode], chain: ChainSetup | None, result: StudyResult, progress: bool) -> None:
    bar = tqdm(range(1, cfg.study.rounds + 1), desc=cfg.study.name, unit="round", disable=not progress)
    with run.metrics.open("w") as metrics_file:
        for rnd in bar:
            if study_over(cfg, study, [n.address for n in nodes], rnd - 1) or not _budget_covers_round(cfg, nodes, rnd):
                result.stopped = f"ended after round {rnd - 1}: too few members' privacy budgets cover another round"
                break
            before, t0 = (_stats(chain.backend) if chain else {}), time.perf_counter()
            scheduler.run_until(lambda: study.round_count() >= rnd, rnd)
            outcome = round_outcome(cfg.study.architecture, study, store, rnd)
            after = _stats(chain.backend) if chain else {}
            entry = {
                "round": rnd, "model": outcome.model, "manifest": outcome.manifest,
                "accepted": list(outcome.accepted),
                "rejected": [r.as_record() for r in outcome.rejected],
                "seconds": time.perf_counter() - t0,
                "transactions": after.get("transactions", 0) - before.get("transactions", 0),
                "gas": after.get("gas_used", 0) - before.get("gas_used", 0),
                "calldata_bytes": after.get("calldata_bytes", 0) - before.get("calldata_bytes", 0),
                **_details(outcome),
                **_evaluate(nodes, study, store, outcome.model),
            }
            result.rounds.append(entry)
            metrics_file.write(json.dumps(entry, sort_keys=True) + "\n")
            metrics_file.flush()
            headline = nodes[0].model_spec.task.headline
            bar.set_postfix({headline: f"{entry['metrics']['pooled'].get(headline, float('nan')):.3f}"})
    # the members' last steps: loose institutions check their inclusion in the last round
    if result.stopped is None:
        scheduler.run_until(scheduler.all_done, len(result.rounds))
    else:
        scheduler.sweep()
    if progress:
        print(results_table(result.final, nodes[0].model_spec.task))


def _budget_covers_round(cfg: Config, nodes: list[InstitutionNode], round: int = 1) -> bool:
    """Whether enough members can afford a release in `round` (semi and full need
    [protocol].min_participants commitments to close one): the simulation knows what each
    member knows of its own budget, which the chain does not always tell (`study_over`)."""
    able = sum(1 for n in nodes if n.privacy is None or n.privacy.can_release(round))
    return able >= needed_per_round(cfg.study.architecture, cfg.protocol.min_participants, len(nodes))


def _details(outcome: RoundOutcome) -> dict[str, Any]:
    """What the architecture adds to a metrics.jsonl line (committees, scores, rewards, outvoted)."""
    return {k: v for k, v in outcome.details.items() if k in ("committees", "scores", "rewards", "outvoted")}


def _stats(backend: ChainBackend) -> dict[str, int]:
    """The backend's transaction totals, less the institutions' evaluations of the final model:
    those end the study, not its last round (on a node that mines each transaction at once they
    land while the last round is being measured)."""
    s, ends = backend.stats, _final_evaluations(backend)
    return {"transactions": s.transactions - ends["transactions"], "gas_used": s.gas_used - ends["gas_used"],
            "calldata_bytes": s.calldata_bytes - ends["calldata_bytes"]}


def _final_evaluations(backend: ChainBackend) -> dict[str, int]:
    sent = [s for label, s in backend.stats_by_function.items() if label.endswith(".submit_evaluation")]
    return {"transactions": sum(s.transactions for s in sent), "gas_used": sum(s.gas_used for s in sent),
            "calldata_bytes": sum(s.calldata_bytes for s in sent)}


def _run_info(cfg: Config, chain: ChainSetup | None, nodes: list[InstitutionNode], coordinator: LocalAccount) -> dict:
    return {
        "format": RUN_FORMAT,
        "study": cfg.study.name,
        "architecture": cfg.study.architecture,
        "chain": chain.backend.describe() if chain else None,
        "contracts": {"consortium": chain.consortium.address, "ledger": chain.study.address} if chain else None,
        "coordinator": coordinator.address,
        "institutions": {n.name: n.address for n in nodes},
        "store": "store",
    }
