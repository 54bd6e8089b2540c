"""The messages of one round, shared by every architecture."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.crypto import UpdateCommitment


@dataclass(frozen=True)
class RoundTask:
    """What an institution is asked to do in a round: train from `global_model`."""

    round: int
    global_model: str                       # digest of the parameters to start from
    chain_id: int
    ledger: str                             # address of the study ledger the update is bound to
    client_config: dict[str, float] = field(default_factory=dict)  # e.g. FedProx's mu


@dataclass(frozen=True)
class SignedUpdate:
    """An institution's claim: 'I trained update X from model P in round R on N samples'."""

    institution: str                        # checksum address (who claims to have signed)
    commitment: UpdateCommitment
    signature: str                          # 0x-hex, EIP-191 over the commitment

    def as_entry(self) -> dict:
        """The manifest entry: everything an auditor needs to re-check this update."""
        return {"institution": self.institution, "update": self.commitment.update,
                "num_samples": self.commitment.num_samples, "signature": self.signature}


@dataclass(frozen=True)
class Rejection:
    institution: str
    reason: str
