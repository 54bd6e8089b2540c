"""What an institution signs when it submits an update, and how anyone checks it.

The signed message binds the update digest to one study ledger on one chain, one round and one
parent model. A signature therefore cannot be replayed into another study, another round or on top
of another global model. Signatures are EIP-191 personal messages over the keccak-256 hash of the
ABI-encoded commitment, so a contract can check them with ecrecover later.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

_DOMAIN = "FedLedger update v1"


@dataclass(frozen=True)
class UpdateCommitment:
    chain_id: int
    ledger: str          # address of the study's ledger contract
    round: int
    parent_model: str    # digest of the global model the update was trained from
    update: str          # digest of the update artifact
    num_samples: int     # the training-set size the update claims (its aggregation weight)

    def message_hash(self) -> bytes:
        return keccak(encode(
            ["string", "uint256", "address", "uint256", "bytes32", "bytes32", "uint256"],
            [_DOMAIN, self.chain_id, self.ledger, self.round, bytes.fromhex(self.parent_model),
             bytes.fromhex(self.update), self.num_samples]))


def sign_commitment(account: LocalAccount, commitment: UpdateCommitment) -> str:
    """Sign a commitment; returns the 65-byte signature as 0x-hex."""
    signed = account.sign_message(encode_defunct(primitive=commitment.message_hash()))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(commitment: UpdateCommitment, signature: str) -> str | None:
    """The checksum address that signed the commitment, or None if the signature is malformed."""
    try:
        return Account.recover_message(encode_defunct(primitive=commitment.message_hash()),
                                       signature=bytes.fromhex(signature.removeprefix("0x")))
    except Exception:  # any decoding failure of untrusted bytes means "no valid signer"
        return None
