"""Signatures over update commitments and evaluations, and Merkle proofs of inclusion
(keccak-256, EVM-compatible)."""

from fedledger.crypto.merkle import merkle_leaf, merkle_proof, merkle_root, verify_proof
from fedledger.crypto.signing import (
    CheckpointStatement,
    EvaluationStatement,
    StatisticsStatement,
    UpdateCommitment,
    recover_signer,
    sign_commitment,
)

__all__ = ["CheckpointStatement", "EvaluationStatement", "StatisticsStatement", "UpdateCommitment", "merkle_leaf", "merkle_proof", "merkle_root", "recover_signer",
           "sign_commitment", "verify_proof"]
