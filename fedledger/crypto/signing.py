"""What an institution signs when it submits an update or an evaluation, and how anyone checks it.

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
_EVALUATION_DOMAIN = "FedLedger evaluation v1"
_CHECKPOINT_DOMAIN = "FedLedger checkpoint v1"
_STATISTICS_DOMAIN = "FedLedger statistics v1"


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


@dataclass(frozen=True)
class EvaluationStatement:
    """'Model M scored the figures hashing to E on my own test set', bound to one study ledger
    on one chain, so that it cannot be passed off as another study's."""
    chain_id: int
    ledger: str
    model: str           # digest of the model evaluated
    figures: str         # sha-256 of the canonical JSON of the figures

    def message_hash(self) -> bytes:
        return keccak(encode(["string", "uint256", "address", "bytes32", "bytes32"],
                             [_EVALUATION_DOMAIN, self.chain_id, self.ledger, bytes.fromhex(self.model),
                              bytes.fromhex(self.figures)]))


@dataclass(frozen=True)
class CheckpointStatement:
    """'When round R of the study at this ledger was final, block N of the chain had hash H': a
    member's own record of the chain it saw, which no one without its key can forge."""
    chain_id: int
    ledger: str
    round: int
    block: int
    block_hash: str      # 0x-hex

    def message_hash(self) -> bytes:
        return keccak(encode(["string", "uint256", "address", "uint256", "uint256", "bytes32"],
                             [_CHECKPOINT_DOMAIN, self.chain_id, self.ledger, self.round, self.block,
                              bytes.fromhex(self.block_hash.removeprefix("0x"))]))


@dataclass(frozen=True)
class StatisticsStatement:
    """'My training rows have the counts, sums and sums of squares hashing to S', bound to one
    study ledger on one chain: an institution's share of the consortium's standardization."""
    chain_id: int
    ledger: str
    statistics: str      # sha-256 of the canonical JSON of the statistics

    def message_hash(self) -> bytes:
        return keccak(encode(["string", "uint256", "address", "bytes32"],
                             [_STATISTICS_DOMAIN, self.chain_id, self.ledger, bytes.fromhex(self.statistics)]))


Statement = UpdateCommitment | EvaluationStatement | CheckpointStatement | StatisticsStatement


def sign_commitment(account: LocalAccount, commitment: Statement) -> str:
    """Sign a commitment or an evaluation statement; returns the 65-byte signature as 0x-hex
    (deterministic: RFC 6979)."""
    signed = account.sign_message(encode_defunct(primitive=commitment.message_hash()))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(commitment: Statement, signature: str) -> str | None:
    """The checksum address that signed the commitment or statement, or None if the signature
    is malformed."""
    try:
        return Account.recover_message(encode_defunct(primitive=commitment.message_hash()),
                                       signature=bytes.fromhex(signature.removeprefix("0x")))
    except Exception:  # any decoding failure of untrusted bytes means "no valid signer"
        return None
