"""Gas of every transaction of a short study per architecture: the embedded chain on revm, the
same transactions on py-evm, and on Hardhat (a JSON-RPC node, revm-based EDR).

Each study runs on the revm engine (semi, which that engine refuses, on py-evm); its block log is
then replayed on the other engine (the same raw signed transactions, in the same blocks) and on a
Hardhat node started here (the same calls from the same accounts, impersonated, mined in the same
blocks). Gas per transaction is compared.

Semi draws its committee from blockhash, which differs between chains (and pyrevm 0.3.7 cannot
be given block hashes), so from its first draw on (that draw included: its gas depends on who is
drawn) the chains hold different committees: semi is compared up to that draw only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from eth._utils.address import generate_contract_address
from eth.vm.forks.cancun.transactions import CancunTransactionBuilder
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from web3 import HTTPProvider, Web3

from fedledger.chain import EmbeddedChain
from fedledger.chain.artifacts import CONTRACT_NAMES, load_artifact
from fedledger.config import config_from_dict
from fedledger.deploy.devchain import HardhatNode
from fedledger.report import format_table
from fedledger.simulation import run_study

ARCHITECTURES = ("loose", "semi", "full")
FIRST_DRAW = "close_commits"    # semi: where the chains' committees part


def short_study(base: Path, architecture: str, rounds: int, engine: str) -> Any:
    raw: dict[str, Any] = {"study": {"name": "gas", "seed": 7, "rounds": rounds, "architecture": architecture},
                           "training": {"lr": 0.01, "local_steps": 5}, "chain": {"engine": engine}}
    if architecture == "full":
        raw["data"] = {"validation_fraction": 0.2}
    return config_from_dict(raw, base_dir=base)


def logged_blocks(chain_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (chain_dir / "blocks.jsonl").read_text().splitlines()]


def labels(blocks: list[dict[str, Any]]) -> list[str]:
    """Each transaction's "Contract.function" (constructor for a deployment, transfer for ether)."""
    creations = {bytes.fromhex(load_artifact(name)["bytecode"].removeprefix("0x")): name for name in CONTRACT_NAMES}
    deployed: dict[bytes, str] = {}     # contract address -> its name
    found = []
    for raw in (raw for block in blocks for raw in block["transactions"]):
        tx = CancunTransactionBuilder.decode(bytes.fromhex(raw))
        if not tx.to:
            name = next(name for code, name in creations.items() if tx.data.startswith(code))
            deployed[generate_contract_address(tx.sender, tx.nonce)] = name
            found.append(f"{name}.constructor")
        elif tx.to in deployed:
            selectors = {function_abi_to_4byte_selector(item): item["name"]
                         for item in load_artifact(deployed[tx.to])["abi"] if item["type"] == "function"}
            found.append(f"{deployed[tx.to]}.{selectors[tx.data[:4]]}")
        else:
            found.append("transfer")
    return found


def embedded_gas(chain: EmbeddedChain, blocks: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(gasUsed, status) of every logged transaction, as `chain` holds it."""
    receipts = []
    for raw in (raw for block in blocks for raw in block["transactions"]):
        receipt = chain.w3.eth.get_transaction_receipt(CancunTransactionBuilder.decode(bytes.fromhex(raw)).hash)
        receipts.append((receipt["gasUsed"], receipt["status"]))
    return receipts


def execution_ms(chain_dir: Path, engine: str) -> list[float]:
    """Milliseconds each logged transaction takes to validate and run on `engine` (the engine
    alone: no web3, no signing), replayed in its block."""
    engine_of = EmbeddedChain.create(None, engine)._evm     # the engine under the chain, timed bare
    times = []
    for block in logged_blocks(chain_dir):
        engine_of.set_next_timestamp(block["timestamp"])
        for raw in block["transactions"]:
            started = time.perf_counter()
            engine_of.stage(bytes.fromhex(raw), keep_failed=True)
            times.append(1000 * (time.perf_counter() - started))
        engine_of.mine_blocks()
    return times


def node_gas(url: str, blocks: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Replay the logged transactions on a Hardhat node, each block's in one block, from the same
    (impersonated) senders; (gasUsed, status) of each."""
    w3 = Web3(HTTPProvider(url))

    def rpc(method: str, *params: Any) -> Any:
        answer = w3.provider.make_request(method, list(params))
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    rpc("evm_setAutomine", False)
    hashes = []
    empty_run = 0
    for block in blocks:
        if not block["transactions"]:
            empty_run += 1
            continue
        if empty_run:
            rpc("hardhat_mine", hex(empty_run))
            empty_run = 0
        sent = []
        for raw in block["transactions"]:
            tx = CancunTransactionBuilder.decode(bytes.fromhex(raw))
            sender = to_checksum_address(tx.sender)
            rpc("hardhat_impersonateAccount", sender)
            rpc("hardhat_setBalance", sender, hex(10**30))
            call = {"from": sender, "data": "0x" + tx.data.hex(), "value": hex(tx.value), "gas": hex(tx.gas),
                    "nonce": hex(tx.nonce), "maxFeePerGas": hex(10**12), "maxPriorityFeePerGas": "0x0"}
            if tx.to:
                call["to"] = to_checksum_address(tx.to)
            sent.append(rpc("eth_sendTransaction", call))
        rpc("evm_mine")
        mined = rpc("eth_getBlockByNumber", "latest", False)["transactions"]
        if mined != sent:
            raise RuntimeError(f"Hardhat mined block {block['number']}'s transactions in another order")
        hashes += sent
    receipts = [rpc("eth_getTransactionReceipt", h) for h in hashes]
    return [(int(r["gasUsed"], 16), int(r["status"], 16)) for r in receipts]


def compare(architecture: str, base: Path, url: str, rounds: int) -> list[dict[str, Any]]:
    """One row per transaction: its label and (gas, status) on revm, py-evm and Hardhat."""
    ran, other = ("py-evm", "revm") if architecture == "semi" else ("revm", "py-evm")
    result = run_study(short_study(base, architecture, rounds, ran), run_dir=base / architecture, progress=False)
    chain_dir = result.run_dir / "chain"
    blocks = logged_blocks(chain_dir)
    chains = {ran: EmbeddedChain.open(chain_dir), other: EmbeddedChain.rebuild(chain_dir, other)}
    rows = [{"label": label, "revm": r, "py-evm": p, "hardhat": h, "revm ms": rt, "py-evm ms": pt}
            for label, r, p, h, rt, pt in zip(labels(blocks), embedded_gas(chains["revm"], blocks),
                                              embedded_gas(chains["py-evm"], blocks), node_gas(url, blocks),
                                              execution_ms(chain_dir, "revm"), execution_ms(chain_dir, "py-evm"),
                                              strict=True)]
    if architecture == "semi":
        first_draw = next(i for i, row in enumerate(rows) if row["label"].endswith(FIRST_DRAW))
        rows = rows[:first_draw]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    table = []
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for architecture in ARCHITECTURES:
            with HardhatNode(Path(tmp) / f"{architecture}-node.log") as node:
                rows = compare(architecture, Path(tmp), node.url, args.rounds)
            by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                by_label[row["label"]].append(row)
            for label, group in by_label.items():
                same = sum(row["revm"] == row["hardhat"] for row in group)
                mismatches += len(group) - same
                table.append([architecture, label, len(group), *(sum(row[k][0] for row in group) // len(group)
                                                                   for k in ("py-evm", "hardhat", "revm")),
                              f"{same}/{len(group)}",
                              *(statistics.median(row[k] for row in group) for k in ("py-evm ms", "revm ms"))])
    print(format_table(["architecture", "function", "calls", "py-evm gas (mean)", "Hardhat gas (mean)",
                        "revm gas (mean)", "revm = Hardhat", "py-evm ms (median)", "revm ms (median)"], table))
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
