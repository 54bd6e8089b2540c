"""Members' signed checkpoints of the chain head: a deployed node signs, after each round it
sees final, which block the chain had reached and its hash, and keeps that in its own state
directory (`state/checkpoints.jsonl`). Given such a file from a member, `audit verify
--checkpoints FILE` checks that the audited chain holds every block the member signed: a chain
rebuilt by whoever holds the consortium directory cannot, without that member's key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.audit.report import AuditReport
from fedledger.chain import ChainBackend
from fedledger.crypto import CheckpointStatement, recover_signer, sign_commitment

FILE_NAME = "checkpoints.jsonl"
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
KEYS = {"member", "chain_id", "ledger", "round", "block", "hash", "signature"}


def sign_checkpoint(account: LocalAccount, backend: ChainBackend, ledger: str, round: int) -> dict[str, Any]:
    """`account`'s signed checkpoint of the chain's latest block, taken once round `round` was final."""
    head = backend.w3.eth.get_block("latest")
    statement = CheckpointStatement(backend.chain_id, ledger, round, head["number"], head["hash"].to_0x_hex())
    return {"member": account.address, "chain_id": statement.chain_id, "ledger": ledger, "round": round,
            "block": statement.block, "hash": statement.block_hash, "signature": sign_commitment(account, statement)}


def append_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(checkpoint, sort_keys=True) + "\n")


def last_checkpointed_round(path: Path) -> int:
    """The latest round a checkpoint in `path` was taken after (0: none)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    return max((json.loads(line)["round"] for line in lines if line.strip()), default=0)


def verify_checkpoints(report: AuditReport, backend: ChainBackend, ledger: str, members: set[str],
                       files: Sequence[Path]) -> None:
    """Each file's checkpoints are signed by a member of the consortium (`members`, lowercase)
    for this chain and study, and this chain holds every block they name, with that hash."""
    for path in files:
        subject = f"checkpoints {path.name}" if len(files) == 1 else f"checkpoints {path}"
        try:
            if path.stat().st_size > MAX_CHECKPOINT_BYTES:
                raise ValueError(f"larger than {MAX_CHECKPOINT_BYTES:,} bytes")
            checkpoints = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            report.record(subject, "checkpoints readable", False, str(exc)[:200])
            continue
        problems = [p for p in (_problem(c, backend, ledger, members) for c in checkpoints) if p]
        report.record(subject, "the chain holds every block a member signed", bool(checkpoints) and not problems,
                      problems[0] if problems else "the file holds no checkpoint")


def _problem(checkpoint: Any, backend: ChainBackend, ledger: str, members: set[str]) -> str | None:
    if not isinstance(checkpoint, dict) or set(checkpoint) != KEYS:
        return "a line is not a checkpoint"
    c = checkpoint
    try:
        statement = CheckpointStatement(c["chain_id"], Web3.to_checksum_address(c["ledger"]), c["round"], c["block"],
                                        c["hash"])
        signer = recover_signer(statement, c["signature"])
    except (TypeError, ValueError, AttributeError):
        return "a line is not a checkpoint"
    if signer is None or signer.lower() != str(c["member"]).lower() or signer.lower() not in members:
        return f"the checkpoint of round {c['round']} is not signed by a member of this consortium"
    if c["chain_id"] != backend.chain_id or str(c["ledger"]).lower() != ledger.lower():
        return f"the checkpoint of round {c['round']} is of another chain or study"
    try:
        held = backend.w3.eth.get_block(c["block"])["hash"].to_0x_hex()
    except Exception:   # web3 raises several types for a block this chain does not have
        held = None
    if held != str(c["hash"]).lower():
        return (f"{signer} signed block {c['block']} as {c['hash']} after round {c['round']}; this chain has "
                f"{held or 'no such block'}: it is not the chain the member saw")
    return None
