"""Run a study from a validated config: set up the consortium on chain, run the rounds, write the run.

Simulated nodes share nothing but the chain and the store, exactly as separate processes would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from tqdm import tqdm

from fedledger.aggregation import Strategy, make_strategy
from fedledger.chain import (
    ChainBackend,
    EmbeddedChain,
)
from fedledger.config import Config
from fedledger.errors import ConfigError
from fedledger.protocol import (
    CommitteeRounds,
    ConsensusRounds,
    Coordinator,
    Faults,
    InstitutionNode,
    LooseRounds,
    RoundResult,
)
from fedledger.protocol.privacy import MemberPrivacy
from fedledger.protocol.secure import LocalBoard
from fedledger.protocol.setup import (
    ChainSetup,
    connect_rpc,
    initial_params,
    load_clients,
    loose_coordinator,
    model_spec,
    privacy_plan,
    secure_scheme,
    set_up_chain,
    train_config,
    validation_rules,
)
from fedledger.report import plot_metrics, results_table, summarize_evaluations
from fedledger.simulation.attacks import build_nodes
from fedledger.simulation.rundir import RUN_FORMAT, RunDir
from fedledger.store import ArtifactStore

ZERO_ADDRESS = "0x" + "00" * 20


@dataclass
class StudyResult:
    run_dir: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)   # one entry per round, as in metrics.jsonl
    setup_chain: dict[str, int] = field(default_factory=dict)    # transactions and gas before round 1
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

    @property
    def final(self) -> dict[str, Any]:
        return self.rounds[-1]["metrics"]


def _connect(cfg: Config, run: RunDir) -> ChainBackend:
    if not cfg.chain.rpc_url:
        return EmbeddedChain.create(run.chain)
    return connect_rpc(cfg.chain.rpc_url, cfg.chain.funder_key_env)


def faults_of(cfg: Config) -> Faults:
    """The injected faults the config asks for."""
    f = cfg.faults
    return Faults(wrong_result=f.wrong_result, silent=f.silent, no_update=f.no_update)


def make_rounds(cfg: Config, chain: ChainSetup | None, coordinator_key: LocalAccount, store: ArtifactStore,
                strategy: Strategy, nodes: list[InstitutionNode]) -> LooseRounds | CommitteeRounds | ConsensusRounds:
    """The round runner of the configured architecture."""
    faults, rules = faults_of(cfg), validation_rules(cfg)
    contract = chain.ledger if chain else None
    scheme = secure_scheme(cfg, contract or LocalBoard())
    if cfg.study.architecture == "semi":
        return CommitteeRounds(nodes, strategy, contract, cfg.protocol.committee_size, faults, cfg.study.seed, rules,
                               scheme)
    if cfg.study.architecture == "full":
        return ConsensusRounds(nodes, strategy, contract, cfg.protocol.exclusion_margin, faults, rules)
    if chain is None:
        members = {n.address for n in nodes}
        plan = privacy_plan(cfg)
        coordinator = Coordinator(coordinator_key, store, strategy, lambda addrs: members.intersection(addrs),
                                  None, 0, ZERO_ADDRESS, rules=rules,
                                  epsilon_budget=plan.budget_on_chain()[0] if plan else 0, scheme=scheme)
    else:
        coordinator = loose_coordinator(coordinator_key, store, strategy, chain.consortium, chain.ledger, rules,
                                        scheme)
    return LooseRounds(coordinator, nodes, faults, lambda model: _evaluate(nodes, model))


def privacy_summary(member: MemberPrivacy) -> dict[str, float]:
    """What one member spent: epsilon at the study's delta, releases, its mechanism."""
    m = member.mechanism
    return {"epsilon": member.epsilon, "delta": member.plan.delta, "releases": len(member.history),
            "noise_multiplier": m.noise_multiplier, "sample_rate": m.sample_rate, "steps": m.steps}


def _evaluate(nodes: list[InstitutionNode], model: str) -> dict[str, Any]:
    """Every institution scores `model` on its own test set; the summary is the round's metrics."""
    return summarize_evaluations({node.name: node.evaluate(model) for node in nodes})


def run_study(cfg: Config, *, run_dir: Path | None = None, progress: bool = True) -> StudyResult:
    """Run the configured study and write its run directory (created under [study].output_dir)."""
    started = time.perf_counter()
    clients = load_clients(cfg)
    run = RunDir(run_dir) if run_dir else RunDir.create(cfg.resolve_path(cfg.study.output_dir), cfg.study.name)
    run.path.mkdir(parents=True, exist_ok=True)
    store = ArtifactStore(run.store)
    strategy = make_strategy(cfg.aggregation.strategy, **cfg.aggregation.params)
    spec = model_spec(cfg, clients[0].num_features)
    training = train_config(cfg)

    admin, coordinator_key = Account.create(), Account.create()
    nodes, attackers = build_nodes(cfg, clients, spec, training, store, [Account.create() for _ in clients])

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
    try:
        result = StudyResult(run.path, attackers=attackers)
        if chain:
            result.setup_chain = _stats(chain.backend)
        run.write_json("run.json", _run_info(cfg, chain, nodes, coordinator_key))
        rounds = make_rounds(cfg, chain, coordinator_key, store, strategy, nodes)
        _run_rounds(cfg, run, rounds, nodes, initial, chain, result, progress)
        if chain:
            names = {n.address: n.name for n in nodes}
            result.suspended = {names[e["member"]]: e["round_number"] for e in chain.ledger.events("MemberSuspended")}
            result.chain_head = chain.backend.w3.eth.get_block("latest")["hash"].to_0x_hex()
    finally:
        if chain:
            chain.backend.close()
    result.privacy = {n.name: privacy_summary(n.privacy) for n in nodes if n.privacy is not None}
    result.wall_seconds = time.perf_counter() - started
    plot_metrics(result.rounds, run.path / "metrics.png", f"{cfg.study.name}: {strategy.name}")
    run.write_json("results.json", {"final": result.final, "setup_chain": result.setup_chain,
                                    "chain_head": result.chain_head, "attackers": result.attackers,
                                    "suspended": result.suspended, "privacy": result.privacy,
                                    "stopped": result.stopped,
                                    "rounds": [{k: v for k, v in r.items() if k != "metrics"} for r in result.rounds],
                                    "wall_seconds": result.wall_seconds})
    return result


def _run_rounds(cfg: Config, run: RunDir, rounds: LooseRounds | CommitteeRounds | ConsensusRounds,
                nodes: list[InstitutionNode], initial: str, chain: ChainSetup | None, result: StudyResult,
                progress: bool) -> None:
    model, state = initial, None
    bar = tqdm(range(1, cfg.study.rounds + 1), desc=cfg.study.name, unit="round", disable=not progress)
    with run.metrics.open("w") as metrics_file:
        for rnd in bar:
            if not _budget_covers_round(cfg, nodes):
                result.stopped = f"ended after round {rnd - 1}: too few members' privacy budgets cover another round"
                break
            before, t0 = (_stats(chain.backend) if chain else {}), time.perf_counter()
            outcome: RoundResult = rounds.run_round(rnd, model, state)
            model, state = outcome.model, outcome.state
            metrics = outcome.metrics if outcome.metrics is not None else _evaluate(nodes, model)
            after = _stats(chain.backend) if chain else {}
            entry = {
                "round": rnd, "model": model, "manifest": outcome.manifest,
                "accepted": list(outcome.accepted),
                "rejected": [r.as_record() for r in outcome.rejected],
                "seconds": time.perf_counter() - t0,
                "transactions": after.get("transactions", 0) - before.get("transactions", 0),
                "gas": after.get("gas_used", 0) - before.get("gas_used", 0),
                "calldata_bytes": after.get("calldata_bytes", 0) - before.get("calldata_bytes", 0),
                **_details(outcome),
                "metrics": metrics,
            }
            result.rounds.append(entry)
            metrics_file.write(json.dumps(entry, sort_keys=True) + "\n")
            metrics_file.flush()
            bar.set_postfix(accuracy=f"{entry['metrics']['pooled']['accuracy']:.3f}")
    if progress:
        print(results_table(result.final))


def _budget_covers_round(cfg: Config, nodes: list[InstitutionNode]) -> bool:
    """Whether enough members can still afford a release to run a round (semi and full need
    [protocol].min_participants commitments to close one)."""
    able = sum(1 for n in nodes if n.privacy is None or n.privacy.can_release())
    return able >= (1 if cfg.study.architecture == "loose" else min(cfg.protocol.min_participants, len(nodes)))


def _details(outcome: RoundResult) -> dict[str, Any]:
    """What the architecture adds to a metrics.jsonl line (committees, scores, rewards, outvoted)."""
    return {k: v for k, v in outcome.details.items() if k in ("committees", "scores", "rewards", "outvoted")}


def _stats(backend: ChainBackend) -> dict[str, int]:
    s = backend.stats
    return {"transactions": s.transactions, "gas_used": s.gas_used, "calldata_bytes": s.calldata_bytes}


def _run_info(cfg: Config, chain: ChainSetup | None, nodes: list[InstitutionNode], coordinator: LocalAccount) -> dict:
    return {
        "format": RUN_FORMAT,
        "study": cfg.study.name,
        "architecture": cfg.study.architecture,
        "chain": chain.backend.describe() if chain else None,
        "contracts": {"consortium": chain.consortium.address, "ledger": chain.ledger.address} if chain else None,
        "coordinator": coordinator.address,
        "institutions": {n.name: n.address for n in nodes},
        "store": "store",
    }
