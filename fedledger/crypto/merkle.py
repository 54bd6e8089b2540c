"""A Merkle tree over accepted updates, with proofs each institution can check on its own.

Leaves are keccak256(abi.encode(institution, update_digest, num_samples)), sorted, and pairs are
hashed in sorted order (the OpenZeppelin convention), so a proof is just a list of sibling hashes
and the same tree can be checked by a contract later. An odd node is carried up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak


def merkle_leaf(institution: str, update_digest: str, num_samples: int) -> bytes:
    return keccak(encode(["address", "bytes32", "uint256"],
                         [institution, bytes.fromhex(update_digest), num_samples]))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [sorted(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = [_hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> str:
    """Root of the tree as 64-char hex (no 0x), the project's digest format; all zeros for no
    leaves (a round in which every update was rejected)."""
    if not leaves:
        return "00" * 32
    return _levels(leaves)[-1][0].hex()


def merkle_proof(leaves: Sequence[bytes], leaf: bytes) -> list[str]:
    """Sibling hashes from `leaf` up to the root."""
    levels = _levels(leaves)
    try:
        index = levels[0].index(leaf)
    except ValueError:
        raise ValueError("leaf is not in the tree") from None
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling].hex())
        index //= 2
    return proof


def verify_proof(leaf: bytes, proof: Sequence[str], root: str) -> bool:
    node = leaf
    for sibling in proof:
        node = _hash_pair(node, bytes.fromhex(sibling))
    return node.hex() == root
