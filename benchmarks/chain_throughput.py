"""Ledger throughput: transactions sent one at a time versus in a `batch()` block, as studies send
the transactions of the members acting in the same block.

Two workloads of 10 transactions, each on fresh contracts (deployments are not timed):
  commit  10 institutions each commit an update to round 1 of a SemiStudy (10 senders)
  enrol   the consortium admin enrols 10 members (one sender, 10 nonces in flight)
Every transaction goes through the typed contract wrappers of fedledger.chain (SemiStudy,
Consortium), so a change to a contract's arguments changes the benchmark with it. Trials
alternate between the two ways of sending; the table gives medians over trials. Runs on the
embedded EVM persisted to disk, as studies use it, and on a local Hardhat node when
hardhat/node_modules is installed.

    python benchmarks/chain_throughput.py [--trials 20] [--no-hardhat]
    python benchmarks/chain_throughput.py --smoke    # 3 members, 2 trials, embedded only; exit 1 if wrong
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import add_smoke_flag, end_smoke, write_section  # noqa: E402
from eth_account import Account  # noqa: E402
from web3.types import TxReceipt  # noqa: E402

from fedledger.chain import ChainBackend, Consortium, EmbeddedChain, PendingTx, Role, RpcChain, SemiStudy, StudyTerms  # noqa: E402
from fedledger.deploy.devchain import HARDHAT_DIR, HardhatNode  # noqa: E402
from fedledger.report import format_table  # noqa: E402

Send = Callable[[], TxReceipt | PendingTx]     # one wrapper call, bound to its sender and arguments
BATCHED = "batch()"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Workloads:
    """A consortium of `members` institutions; each workload makes one batch's worth of fresh calls."""

    def __init__(self, backend: ChainBackend, members: int) -> None:
        self.backend = backend
        self.admin, self.sponsor = Account.create(), Account.create()
        self.members = [Account.create() for _ in range(members)]
        backend.fund([a.address for a in (self.admin, self.sponsor, *self.members)], 10 * 10**18)
        self.consortium = Consortium.deploy(backend, self.admin)
        with backend.batch():
            self.consortium.add_member(self.admin, self.sponsor.address, "sponsor", Role.COORDINATOR)
            for i, m in enumerate(self.members):
                self.consortium.add_member(self.admin, m.address, f"hospital {i}", Role.INSTITUTION)
        self.terms = StudyTerms(digest("config"), digest("model 0"), tuple(m.address for m in self.members),
                                commit_window=5, result_window=5, min_participants=members)

    def commit(self) -> list[Send]:
        study = SemiStudy.deploy(self.backend, self.sponsor, self.consortium, self.terms, committee_size=3)
        return [partial(study.commit_update, m, 1, digest("model 0"), digest(f"update {i}"), 100 + i,
                        digest(f"metrics {i}"))
                for i, m in enumerate(self.members)]

    def enrol(self) -> list[Send]:
        return [partial(self.consortium.add_member, self.admin, Account.create().address, f"member {i}",
                        Role.INSTITUTION)
                for i in range(len(self.members))]


def one_by_one(sends: list[Send]) -> list[TxReceipt]:
    """Each call waits for its receipt before the next is sent."""
    return [send() for send in sends]


def batched(backend: ChainBackend, sends: list[Send]) -> list[TxReceipt]:
    """Every call sent inside one `batch()` block (on the embedded chain they share a block);
    leaving the block waits for all of them, so `wait` then returns the receipts it holds."""
    with backend.batch():
        pending = [send() for send in sends]
    return [tx.wait() for tx in pending]


def measure(backend: ChainBackend, members: int, trials: int) -> list[list]:
    """Rows: workload, way of sending, ms per transaction, transactions per second, blocks used."""
    loads = Workloads(backend, members)
    senders: dict[str, Callable[[list[Send]], list[TxReceipt]]] = {
        "one by one": one_by_one, BATCHED: partial(batched, backend)}
    rows = []
    for workload in ("commit", "enrol"):
        seconds: dict[str, list[float]] = {way: [] for way in senders}
        blocks: dict[str, set[int]] = {way: set() for way in senders}
        for _ in range(trials):
            for way, send in senders.items():
                sends = getattr(loads, workload)()
                started = time.perf_counter()
                receipts = send(sends)
                seconds[way].append(time.perf_counter() - started)
                blocks[way].add(len({r["blockNumber"] for r in receipts}))
        for way in senders:
            per_tx = statistics.median(seconds[way]) / members
            rows.append([workload, way, 1000 * per_tx, 1 / per_tx, "/".join(map(str, sorted(blocks[way])))])
    return rows


def embedded_problems(rows: list[list], members: int) -> list[str]:
    """On the embedded chain a batch must share one block, and one-by-one sends one block each."""
    return [f"{workload}, {way}: {blocks} blocks per {members} transactions, expected {expected}"
            for workload, way, _, _, blocks in rows
            if blocks != (expected := "1" if way == BATCHED else str(members))]


def hardhat_version() -> str:
    return json.loads((HARDHAT_DIR / "node_modules" / "hardhat" / "package.json").read_text())["version"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--members", type=int, default=10, help="transactions per batch")
    parser.add_argument("--no-hardhat", action="store_true", help="only the embedded chain")
    # the smoke leaves Hardhat out: starting a node costs seconds, and tests/chain covers RpcChain
    add_smoke_flag(parser, "3 members, 2 trials, the embedded chain only")
    args = parser.parse_args()
    members, trials = (3, 2) if args.smoke else (args.members, args.trials)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        chain = EmbeddedChain.create(Path(tmp) / "chain")
        embedded = measure(chain, members, trials)
        chain.close()
        rows += [["embedded", *row] for row in embedded]
        if not (args.smoke or args.no_hardhat) and (HARDHAT_DIR / "node_modules" / ".bin" / "hardhat").exists():
            with HardhatNode(Path(tmp) / "hardhat.log") as node:
                rows += [[f"Hardhat {hardhat_version()}", *row] for row in measure(RpcChain(node.url), members, trials)]
    table = format_table(["chain", "workload", "sent", "ms per transaction", "transactions per second",
                          f"blocks per {members} transactions"], rows)
    print(table)
    problems = embedded_problems(embedded, members)
    if args.smoke:
        end_smoke(problems)
    body = (f"Batches of {members} transactions, each sent through the typed wrappers of `fedledger.chain`: "
            f"`commit` has {members} institutions each commit an update to round 1 of a SemiStudy "
            f"(`SemiStudy.commit_update`, {members} senders); `enrol` has the consortium admin enrol {members} "
            f"members (`Consortium.add_member`, one sender, {members} transactions in flight). `one by one`: "
            "each call waits for its receipt; `batch()`: the calls are sent inside one `ChainBackend.batch()` "
            "block, as a study sends the transactions of the members acting in the same block, and leaving "
            f"it waits for them all. Medians over {trials} trials per cell, the two ways of sending "
            "alternating; the time covers signing, sending, execution, mining and receipts. The embedded "
            "chain is persisted to disk, as in a study; Hardhat (automining, on loopback) mines each "
            f"transaction on arrival, so a batch there spans {members} blocks and saves only the waiting."
            + (f"\n\nUnexpected: {'; '.join(problems)}." if problems else "") + f"\n\n{table}")
    write_section("chain-throughput", "Ledger throughput: one by one versus batched", body)


if __name__ == "__main__":
    main()
