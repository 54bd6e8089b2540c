"""`fedledger demo`: a local consortium in one command.

Starts a Hardhat node (or uses the JSON-RPC node given), deploys the study, starts one node
process per member, follows the rounds as they are finalized on chain, audits the result while
the nodes still serve their stores, and stops everything.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.audit import verify_run
from fedledger.audit.checkpoints import FILE_NAME as CHECKPOINTS
from fedledger.audit.report import AuditReport
from fedledger.chain import (
    open_chain,
)
from fedledger.config import Config
from fedledger.deploy.consortium import ConsortiumFile
from fedledger.deploy.devchain import HardhatNode
from fedledger.deploy.local import LocalConsortium
from fedledger.errors import ConfigError
from fedledger.protocol.setup import load_clients, study_task
from fedledger.report import summarize_evaluations

BLOCK_INTERVAL_MS = 500     # the dev chain's block time when no transaction comes


@dataclass
class DemoResult:
    directory: Path
    consortium: ConsortiumFile
    audit: AuditReport
    final: dict[str, Any]                 # summary of the signed evaluations of the final model on chain, as audited
    round_seconds: list[float] = field(default_factory=list)   # wall time from one finalization to the next
    nodes: dict[str, Any] = field(default_factory=dict)         # each node's last /status
    wall_seconds: float = 0.0


def with_institutions(cfg: Config, count: int | None) -> Config:
    """The study with `count` institutions (Breast Cancer is split into any number; the other
    datasets have the institutions they have)."""
    if count is None:
        return cfg
    if cfg.data.dataset == "breast_cancer":
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_clients=count))
    have = len(load_clients(cfg))
    if count != have:
        raise ConfigError(f"{cfg.data.dataset} has {have} institutions, not {count}; "
                          "use a breast_cancer study for any other number")
    return cfg


def run_demo(cfg: Config, out_dir: Path, rpc_url: str | None = None, timeout_s: float = 1800,
             log: Callable[[str], None] = print) -> DemoResult:
    """Run the study `cfg` as a local consortium under `out_dir` (new or empty)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} is not empty; give a new directory for the demo")
    started = time.perf_counter()
    with ExitStack() as cleanup:
        if rpc_url is None:
            chain = cleanup.enter_context(HardhatNode(out_dir / "logs" / "chain.log", BLOCK_INTERVAL_MS))
            rpc_url = chain.url
            log(f"started a Hardhat node at {rpc_url} (a block every {BLOCK_INTERVAL_MS} ms, and one per transaction)")
        local = LocalConsortium(out_dir, cfg, rpc_url)
        consortium = local.create()
        log(f"deployed the {cfg.study.architecture} study {cfg.study.name!r}: consortium "
            f"{consortium.contracts['consortium']}, ledger {consortium.contracts['ledger']}")
        cleanup.callback(local.stop_all)
        local.start_all()
        log(f"started {len(local.members)} node processes ({', '.join(m.name for m in local.members)}); "
            f"logs in {out_dir / 'logs'}")
        round_seconds = _follow_rounds(local, consortium, cfg.study.rounds, timeout_s, log)
        local.wait_until(local.all_done, 120, "every node's final evaluation")
        statuses = local.statuses()
        log("auditing the study from the chain and the nodes' stores ...")
        audit = verify_run(local.consortium_dir, account=local.auditor(),
                           checkpoints=[local.state_dir(m.name) / CHECKPOINTS for m in consortium.institutions])
        # the final table: the institutions' signed evaluations of the final model on chain, as audited
        final = summarize_evaluations(audit.final_evaluations, study_task(cfg)) if audit.final_evaluations else {}
        result = DemoResult(out_dir, consortium, audit, final, round_seconds, statuses)
        exits = local.stop_all()
        if any(exits.values()):
            log(f"warning: node exit statuses after SIGTERM: {exits}")
    result.wall_seconds = time.perf_counter() - started
    (out_dir / "results.json").write_text(json.dumps(
        {"final": result.final, "round_seconds": round_seconds, "audit_ok": audit.ok,
         "nodes": result.nodes, "wall_seconds": result.wall_seconds}, indent=2, sort_keys=True) + "\n")
    return result


def _follow_rounds(local: LocalConsortium, consortium: ConsortiumFile, rounds: int, timeout_s: float,
                   log: Callable[[str], None]) -> list[float]:
    """Report each round as the chain finalizes it; the seconds each took."""
    backend = open_chain(consortium.chain, None)
    seconds: list[float] = []
    try:
        last, mark = 0, time.perf_counter()
        deadline = time.monotonic() + timeout_s

        def progressed() -> bool:
            nonlocal last, mark
            finished = consortium.study(backend).round_count()
            while last < finished:
                last += 1
                now = time.perf_counter()
                seconds.append(now - mark if last == finished else 0.0)
                mark = now
                log(f"round {last} of {rounds} finalized ({seconds[-1]:.1f} s)")
            return finished >= rounds

        local.wait_until(progressed, deadline - time.monotonic(), f"all {rounds} rounds")
    finally:
        backend.close()
    return seconds
