"""Risk-based access on chain: decisions per second and gas per decision (AccessPolicy.vy).

A consortium's admin deploys the access policy, names 4 requesters (physician, nurse, researcher,
device) and a risk model, and fills the whole policy (16 roles x 16 actions x 3 risk levels, a
seeded mix of deny, permit and break glass). Then REQUESTS requests, drawn from the same seed
(requester, action, risk level, emergency or not), are decided by the contract, on each engine
of the embedded EVM:

- one by one: each request sent and its decision read back from the chain through the typed
  wrapper (`AccessPolicy.request_access`), as a client waiting for its answer does;
- in blocks: the requests sent BLOCK at a time in one block each (`transact_all`), their
  decisions read back afterwards, as a gateway serving many clients would.

Gas is the contract's, per request, by decision (a break glass also stores its pending review).
Deployment and the policy's cells are governance, counted apart.

    python benchmarks/access_decisions.py [--requests 300]
    python benchmarks/access_decisions.py --smoke
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, cpu_description, end_smoke, write_section  # noqa: E402
from eth_account import Account  # noqa: E402

from fedledger.chain import Consortium, EmbeddedChain, Role  # noqa: E402
from fedledger.chain.access import MAX_ACTIONS, MAX_ROLES, RISK_LEVELS, AccessPolicy, Decision  # noqa: E402
from fedledger.chain.loose import LooseStudy  # noqa: E402
from fedledger.report import format_table  # noqa: E402

REQUESTS, BLOCK, SEED = 300, 50, 7
REQUESTER_ROLES = (1, 2, 3, 4)          # physician, nurse, researcher, device
SMOKE = {"requests": 20}
FUNDS = 10 * 10**18


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def set_up(engine: str) -> tuple[EmbeddedChain, AccessPolicy, Account, list, dict[str, int]]:
    """A chain with a consortium, a started study, and a filled access policy;
    the governance transactions' gas by function."""
    chain = EmbeddedChain.create(None, engine)
    admin, coordinator = Account.create(), Account.create()
    requesters = [Account.create() for _ in REQUESTER_ROLES]
    chain.fund([a.address for a in (admin, coordinator, *requesters)], FUNDS)
    consortium = Consortium.deploy(chain, admin)
    consortium.add_member(admin, coordinator.address, "coordinator", Role.COORDINATOR)
    study = LooseStudy.deploy(chain, admin, consortium, 0)
    study.start_study(coordinator, digest("config"), digest("model 0"))
    policy = AccessPolicy.deploy(chain, admin, consortium.address)
    before = chain.stats.gas_used
    policy.set_risk_model(admin, study.address, 1, digest("risk model"))
    rng = random.Random(SEED)
    cells = [(role, action, risk) for role in range(1, MAX_ROLES + 1) for action in range(MAX_ACTIONS)
             for risk in range(len(RISK_LEVELS))]
    with chain.batch():
        for role, account in zip(REQUESTER_ROLES, requesters):
            policy.set_requester(admin, account.address, role)
        for role, action, risk in cells:
            policy.set_policy(admin, role, action, risk, rng.choice([Decision.DENY, Decision.PERMIT,
                                                                      Decision.BREAK_GLASS]))
    governance = {"policy cells": len(cells), "governance gas per cell": (chain.stats.gas_used - before) / len(cells)}
    return chain, policy, admin, requesters, governance


def requests(count: int, requesters: list) -> list[tuple]:
    rng = random.Random(SEED + 1)
    return [(rng.choice(requesters), digest(f"patient {rng.randrange(1000)}"), rng.randrange(MAX_ACTIONS),
             rng.randrange(len(RISK_LEVELS)), rng.random() < 0.3) for _ in range(count)]


def measure(engine: str, count: int) -> tuple[list, dict]:
    chain, policy, admin, requesters, governance = set_up(engine)
    asks = requests(count, requesters)
    gas_by_decision: dict[Decision, list[int]] = {d: [] for d in Decision}
    started = time.perf_counter()
    for who, patient, action, risk, emergency in asks:
        gas_before = chain.stats.gas_used
        record = policy.request_access(who, patient, action, risk, digest("risk model"), digest("vitals"), emergency)
        gas_by_decision[record.decision].append(chain.stats.gas_used - gas_before)
    one_by_one = time.perf_counter() - started
    calls = [(who, policy.request_call(patient, action, risk, digest("risk model"), digest("vitals"), emergency))
             for who, patient, action, risk, emergency in asks]
    first = chain.block_number() + 1
    started = time.perf_counter()
    for i in range(0, len(calls), BLOCK):
        chain.transact_all(calls[i:i + BLOCK])
    decided = policy.decisions(from_block=first)
    in_blocks = time.perf_counter() - started
    chain.close()
    problems = [] if len(decided) == count else [f"{engine}: {len(decided)} decisions read back of {count} sent"]
    row = [engine, count, count / one_by_one, count / in_blocks,
           *(statistics.mean(gas_by_decision[d]) if gas_by_decision[d] else float("nan") for d in Decision),
           *(len(gas_by_decision[d]) for d in Decision)]
    return row, {"governance": governance, "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    add_smoke_flag(parser, f"{SMOKE['requests']} requests per engine")
    args = parser.parse_args()
    count = SMOKE["requests"] if args.smoke else args.requests
    rows, problems, governance = [], [], {}
    for engine in ("py-evm", "revm"):
        row, extra = measure(engine, count)
        rows.append(row)
        problems += extra["problems"]
        governance[engine] = extra["governance"]
        print(row, flush=True)
    table = format_table(["engine", "requests", "decisions/s, one by one", f"decisions/s, {BLOCK} a block",
                          "gas: deny", "gas: permit", "gas: break glass", "denied", "permitted", "break glass"], rows)
    print(table)
    if args.smoke:
        end_smoke(problems + [f"{row[0]}: {sum(row[-3:])} decisions of {count} requests one by one"
                              for row in rows if sum(row[-3:]) != count])
    gas = governance["py-evm"]
    body = (f"{cpu_description()}. One access policy (AccessPolicy.vy) with all {gas['policy cells']} cells set (a "
            f"seeded mix of deny, permit and break glass; {gas['governance gas per cell']:,.0f} gas a cell, set by "
            f"the consortium's admin in one block), 4 requesters, {count} seeded requests (30% declaring an "
            f"emergency), decided on chain and recorded, denials included. One by one: each sent and its decision "
            f"read back through the typed wrapper; {BLOCK} a block: sent together, decisions read back after. Gas "
            f"is per request, by decision (a break glass also stores its pending review). The embedded EVM on "
            f"each engine (revm's gas can differ from a real chain's: warm slots carry over).\n\n{table}")
    write_section("access-decisions", "Risk-based access: decisions per second and gas per decision", body)


if __name__ == "__main__":
    main()
