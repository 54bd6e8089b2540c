"""The messages of one round, shared by every architecture."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from fedledger.chain import PrivacySpend
from fedledger.crypto import UpdateCommitment
from fedledger.errors import StoreError, UpdateRejected
from fedledger.store import check_digest
from fedledger.validation import Candidate, Rejection

__all__ = ["Rejection", "RoundTask", "SignedUpdate"]


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
    # Under differential privacy: the release's mechanism and the member's epsilon after it. Not
    # signed: every field is recomputed from the config and the chain by the audit.
    spend: PrivacySpend | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as a node serves it to the coordinator."""
        doc = {"institution": self.institution, "commitment": dataclasses.asdict(self.commitment),
               "signature": self.signature}
        if self.spend is not None:
            doc["spend"] = list(self.spend.as_args())
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> SignedUpdate:
        """Parse what a peer sent; UpdateRejected naming the problem if it is malformed (the
        signature itself is checked by whoever screens the update)."""
        try:
            c = doc["commitment"]
            fields = {f.name: c[f.name] for f in dataclasses.fields(UpdateCommitment)}
            types_ok = (all(isinstance(fields[k], int) and not isinstance(fields[k], bool)
                            for k in ("chain_id", "round", "num_samples"))
                        and all(isinstance(fields[k], str) for k in ("ledger", "parent_model", "update"))
                        and isinstance(doc["institution"], str) and isinstance(doc["signature"], str))
            if not types_ok:
                raise TypeError("a field has the wrong type")
            check_digest(fields["parent_model"])
            check_digest(fields["update"])
            spend = doc.get("spend")
            if spend is not None:
                if not (isinstance(spend, list) and len(spend) == 4
                        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**256 for v in spend)):
                    raise TypeError("spend must be four unsigned integers")
                spend = PrivacySpend(*spend)
            return cls(Web3.to_checksum_address(doc["institution"]), UpdateCommitment(**fields), doc["signature"],
                       spend)
        except (KeyError, TypeError, ValueError, StoreError) as exc:
            raise UpdateRejected(f"malformed signed update: {exc}") from None

    def candidate(self) -> Candidate:
        """What validation screens of it: who, which blob, how many samples claimed."""
        return Candidate(self.institution, self.commitment.update, self.commitment.num_samples)

    def as_entry(self) -> dict:
        """The manifest entry: everything an auditor needs to re-check this update."""
        return {"institution": self.institution, "update": self.commitment.update,
                "num_samples": self.commitment.num_samples, "signature": self.signature}

