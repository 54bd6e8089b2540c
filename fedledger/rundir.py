"""Layout of a run directory: everything an auditor needs after the process has exited (a
simulated study writes one; a deployed consortium's directory has the same run.json).

    run.json        where the chain and contracts are, who the institutions are (a pointer only:
                    the auditor checks everything it says against the chain itself)
    config.json     the resolved configuration
    metrics.jsonl   one line per round: its model, outcome and the summary of the institutions' signed
                    evaluations of it (their digests under "evaluations")
    metrics.png     metrics per round and institution
    results.json    final figures, transactions and gas
    store/          the content-addressed artifact store
    chain/          the embedded chain's persisted state (embedded backend only)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from fedledger.config import ARCHITECTURES
from fedledger.errors import FedLedgerError

RUN_FORMAT = "fedledger.run/1"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def store(self) -> Path:
        return self.path / "store"

    @property
    def chain(self) -> Path:
        return self.path / "chain"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_json(self, name: str, data: Any) -> None:
        (self.path / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def read_json(self, name: str, missing: str) -> Any:
        """The JSON document `name` of the run; FedLedgerError saying `missing` if it is not
        there, or why it cannot be read."""
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FedLedgerError(missing) from None
        except (OSError, ValueError) as exc:
            raise FedLedgerError(f"cannot read {path}: {exc}") from None

    def read_run_info(self) -> dict[str, Any]:
        path = self.path / "run.json"
        info = self.read_json("run.json", f"{self.path} is not a FedLedger run directory (no run.json)")
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise FedLedgerError(f"{path} is not a {RUN_FORMAT} run description")
        _check_run_info(path, info)
        return info

    @classmethod
    def create(cls, output_dir: Path, name: str) -> "RunDir":
        """A fresh directory output_dir/name-N (N counts up, so runs never overwrite each other)."""
        output_dir.mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            path = output_dir / f"{name}-{n}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                n += 1


def _check_run_info(path: Path, info: dict[str, Any]) -> None:
    """FedLedgerError naming the first field of run.json its readers cannot use: it is checked
    here, once, so that a hand-edited or damaged file is one clear line instead of a traceback."""
    architecture = info.get("architecture", "loose")   # absent: audited as loose (verify_run)
    if architecture not in ARCHITECTURES:
        raise FedLedgerError(f"{path}: architecture is {architecture!r}; allowed: {', '.join(ARCHITECTURES)}")
    peers = info.get("peers") or []
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise FedLedgerError(f"{path}: peers must be a list of endpoint URLs, got {peers!r}")
    peer_members = info.get("peer_members") or {}
    if not isinstance(peer_members, dict) or not all(isinstance(v, str) for v in peer_members.values()):
        raise FedLedgerError(f"{path}: peer_members must map endpoint URLs to member addresses")
    chain = info.get("chain")
    if chain is None:   # a run made with the ledger switched off: no contracts either
        return
    if not isinstance(chain, dict):
        raise FedLedgerError(f"{path}: chain must be an object describing the chain, got {chain!r}")
    if chain.get("kind") == "rpc" and not isinstance(chain.get("rpc_url"), str):
        raise FedLedgerError(f"{path}: chain.rpc_url must be the node's URL, got {chain.get('rpc_url')!r}")
    contracts = info.get("contracts")
    if not isinstance(contracts, dict):
        raise FedLedgerError(f"{path}: contracts must name the consortium and ledger addresses, got {contracts!r}")
    for key in ("consortium", "ledger"):
        address = contracts.get(key)
        if not (isinstance(address, str) and Web3.is_address(address)):
            raise FedLedgerError(f"{path}: contracts.{key} is {address!r}, not an Ethereum address")
