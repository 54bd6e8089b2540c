"""Ledger throughput: transactions sent one at a time (`transact`) versus in batches (`transact_all`).

Two workloads of 10 transactions, each on fresh contracts (deployments are not timed):
  commit  10 institutions each commit an update to round 1 of a SemiStudy (10 senders)
  enrol   the consortium admin enrols 10 members (one sender, 10 nonces in flight)
Trials alternate between the two ways of sending; the table gives medians over trials. Runs on
the embedded EVM persisted to disk, as studies use it, and on a local Hardhat node when
hardhat/node_modules is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from _report import write_section  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from web3.contract.contract import ContractFunction  # noqa: E402

from fedledger.chain import ChainBackend, SemiStudy, Consortium, EmbeddedChain, Role, RpcChain, StudyTerms  # noqa: E402
from fedledger.report import format_table  # noqa: E402

HARDHAT_DIR = Path(__file__).resolve().parents[1] / "hardhat"
MEMBERS = 10
Calls = list[tuple[LocalAccount, ContractFunction]]


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Workloads:
    """A consortium of MEMBERS institutions; each call makes one batch's worth of fresh calls."""

    def __init__(self, backend: ChainBackend) -> None:
        self.backend = backend
        self.admin, self.sponsor = Account.create(), Account.create()
        self.members = [Account.create() for _ in range(MEMBERS)]
        backend.fund([a.address for a in (self.admin, self.sponsor, *self.members)], 10 * 10**18)
        self.consortium = Consortium.deploy(backend, self.admin)
        backend.transact_all([(self.admin, self.consortium.contract.functions.add_member(a.address, name, int(role)))
                              for a, name, role in [(self.sponsor, "sponsor", Role.COORDINATOR),
                                                    *((m, f"hospital {i}", Role.INSTITUTION)
                                                      for i, m in enumerate(self.members))]])
        self.terms = StudyTerms(digest("config").hex(), digest("model 0").hex(),
                                tuple(m.address for m in self.members), commit_window=5, result_window=5,
                                min_participants=MEMBERS)

    def commit(self) -> Calls:
        study = SemiStudy.deploy(self.backend, self.sponsor, self.consortium, self.terms, committee_size=3)
        return [(m, study.contract.functions.commit_update(1, digest("model 0"), digest(f"update {i}"), 100 + i,
                                                            digest(f"metrics {i}")))
                for i, m in enumerate(self.members)]

    def enrol(self) -> Calls:
        return [(self.admin, self.consortium.contract.functions.add_member(Account.create().address, f"member {i}",
                                                                           int(Role.INSTITUTION)))
                for i in range(MEMBERS)]


def measure(backend: ChainBackend, trials: int) -> list[list]:
    """Rows: workload, way of sending, ms per transaction, transactions per second, blocks used."""
    loads = Workloads(backend)
    senders: dict[str, Callable[[Calls], list]] = {
        "transact, one by one": lambda calls: [backend.transact(a, fn) for a, fn in calls],
        f"transact_all, batches of {MEMBERS}": backend.transact_all,
    }
    rows = []
    for workload in ("commit", "enrol"):
        seconds: dict[str, list[float]] = {way: [] for way in senders}
        blocks: dict[str, set[int]] = {way: set() for way in senders}
        for _ in range(trials):
            for way, send in senders.items():
                calls = getattr(loads, workload)()
                started = time.perf_counter()
                receipts = send(calls)
                seconds[way].append(time.perf_counter() - started)
                blocks[way].add(len({r["blockNumber"] for r in receipts}))
        for way in senders:
            per_tx = statistics.median(seconds[way]) / MEMBERS
            rows.append([workload, way, 1000 * per_tx, 1 / per_tx, "/".join(map(str, sorted(blocks[way])))])
    return rows


@contextmanager
def hardhat_node() -> Iterator[str]:
    """A Hardhat node on a free loopback port, stopped afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(HARDHAT_DIR / "node_modules" / ".bin" / "hardhat"), "node", "--hostname",
                             "127.0.0.1", "--port", str(port)], cwd=HARDHAT_DIR, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"},
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the Hardhat node did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-hardhat", action="store_true", help="only the embedded chain")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        chain = EmbeddedChain.create(Path(tmp) / "chain")
        rows += [["embedded", *row] for row in measure(chain, args.trials)]
        chain.close()
    if not args.no_hardhat and (HARDHAT_DIR / "node_modules" / ".bin" / "hardhat").exists():
        with hardhat_node() as url:
            rows += [["Hardhat 2.29.1", *row] for row in measure(RpcChain(url), args.trials)]
    table = format_table(["chain", "workload", "sent by", "ms per transaction", "transactions per second",
                          f"blocks per {MEMBERS} transactions"], rows)
    print(table)
    body = (f"Batches of {MEMBERS} transactions: `commit` has {MEMBERS} institutions each commit an update to a "
            f"CommitteeStudy round ({MEMBERS} senders); `enrol` has the consortium admin enrol {MEMBERS} members "
            f"(one sender, {MEMBERS} transactions in flight). Medians over {args.trials} trials per cell, the two "
            "ways of sending alternating; the time covers signing, sending, execution, mining and receipts. The "
            "embedded chain is persisted to disk, as in a study; Hardhat (automining, on loopback) mines each "
            f"transaction on arrival, so a batch there spans {MEMBERS} blocks and saves only the waiting.\n\n{table}")
    write_section("chain-throughput", "Ledger throughput: one by one versus batched", body)


if __name__ == "__main__":
    main()
