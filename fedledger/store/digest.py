"""The project's one digest format: sha-256 as 64 lowercase hex characters, no 0x prefix."""

from __future__ import annotations

import hashlib
import re

from fedledger.errors import StoreError

_DIGEST = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    """sha-256 of `data` in the project's digest format."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: object) -> str:
    """Return `digest` if it is well formed, else raise StoreError.

    Only the exact format is accepted (no 0x, no upper case): a digest names a file path in the
    store, and one artifact must have exactly one spelling on chain and on disk.
    """
    if isinstance(digest, str) and _DIGEST.fullmatch(digest):
        return digest
    shown = repr(digest)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise StoreError(f"invalid digest {shown}: expected 64 lowercase hex characters without 0x")
