"""Plain values exchanged with the contracts, and the digest conversions at the boundary.

Python code speaks in lowercase 64-character hex digests (sha-256 of an artifact); the
contracts store bytes32. Only this module converts between the two.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

_DIGEST = re.compile(r"[0-9a-f]{64}")


class Role(enum.IntFlag):
    """Consortium roles; bit values are the ones Consortium.vy uses."""
    INSTITUTION = 1   # may submit updates and appear as a round participant
    COORDINATOR = 2   # may start a study and anchor its rounds
    AUDITOR = 4


class Rejection(NamedTuple):
    """An update left out of a round, as the contracts record it (UpdateRejected, CommitRejected).

    `reason` is a code of fedledger.validation.reasons (1..17); `update` is None where no digest
    was named (the chain's empty bytes32).
    """
    member: str
    update: str | None
    reason: int


@dataclass(frozen=True)
class RoundRecord:
    """One anchored round, as stored by LooseStudy.anchor_round.

    `rejected`: the updates the coordinator left out, (member, update digest or None, reason
    code 1..17) each, in the order anchored; the contract keeps them in UpdateRejected events.
    """
    round: int
    parent_model: str
    model: str
    updates_root: str
    participants: tuple[str, ...]
    metrics_digest: str
    manifest_digest: str
    rejected: tuple[tuple[str, str | None, int], ...] = ()
    # What each rejected member signed for the update named, in `rejected` order: (sample count of
    # its commitment, its 0x-hex signature); (0, "") where there is none. The contract needs it for
    # every rejection that costs reputation; it is not stored, so a record read back has none.
    evidence: tuple[tuple[int, str], ...] = field(default=(), compare=False)
    # In a study with a privacy budget: (participant, its PrivacySpend) each, and (rejected
    # member, its PrivacySpend) for each rejected update whose release counts.
    spends: tuple[tuple[str, Any], ...] = ()
    rejected_spends: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Member:
    address: str
    name: str
    roles: Role
    active: bool


@dataclass
class TxStats:
    """Totals over every transaction one backend sent (deployments and funding included)."""
    transactions: int = 0
    gas_used: int = 0
    calldata_bytes: int = 0


def digest_to_bytes32(digest: str) -> bytes:
    """'ab12...' (64 lowercase hex characters, no 0x) -> 32 bytes."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"a digest must be 64 lowercase hex characters without 0x, got {digest!r}")
    return bytes.fromhex(digest)


def bytes32_to_digest(value: bytes) -> str:
    return bytes(value).hex()


NO_DIGEST = "00" * 32   # the chain's empty bytes32


def optional_digest_to_bytes32(digest: str | None) -> bytes:
    """None -> the empty bytes32; anything else as digest_to_bytes32."""
    return bytes(32) if digest is None else digest_to_bytes32(digest)


def bytes32_to_optional_digest(value: bytes) -> str | None:
    """The empty bytes32 -> None; anything else as bytes32_to_digest."""
    digest = bytes32_to_digest(value)
    return None if digest == NO_DIGEST else digest


def address_order(address: str) -> int:
    """The order LooseStudy requires for participants: by numeric address value."""
    return int(address, 16)


def chain_order(log: Any) -> tuple[int, int, int]:
    """Sort key putting logs in execution order: block, then transaction, then log. Some nodes
    (eth-tester) number logs within their transaction, so the log index alone is not enough
    once a block holds several transactions."""
    return log["blockNumber"], log["transactionIndex"], log["logIndex"]
