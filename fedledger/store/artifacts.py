"""A content-addressed artifact store in a local directory.

Blob `abcd...` lives at `root/ab/cd...` (sharded by its first two hex characters so that no
directory grows past a few thousand entries). Every read re-hashes the content: the store is
shared by institutions that do not trust each other and is what an auditor checks, so a blob
is never believed because of its name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.errors import ArtifactCorrupt, ArtifactMissing, StoreError
from fedledger.store.codec import (
    InvalidContent,
    canonical_json,
    encode_arrays,
    encode_params,
    parse_arrays,
    parse_json,
    params_nbytes,
    parse_params,
)
from fedledger.store.digest import check_digest, sha256_hex

_HEX = frozenset("0123456789abcdef")


def too_large(digest: str, size: int, max_bytes: int) -> ArtifactCorrupt:
    return ArtifactCorrupt(f"artifact {digest} is {size:,} bytes, more than the {max_bytes:,} expected here", "layout")


def _corrupt(digest: str, what: str, exc: InvalidContent) -> ArtifactCorrupt:
    # The bytes match their digest but are not what they claim to be: the artifact itself is bad.
    return ArtifactCorrupt(f"artifact {digest} is corrupt: not a valid {what}: {exc}", exc.kind)


class ArtifactStore:
    """Blobs addressed by the sha-256 of their bytes, with typed helpers for the project's formats."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            # the store holds patient-derived updates: only its owner (the node's user) reads it
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the artifact store {self.root}: {exc.strerror}") from None

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store `data` and return its digest; storing the same bytes again changes nothing."""
        data = bytes(data)
        digest = sha256_hex(data)
        path = self._path(digest)
        if self._intact(path, digest):
            return digest
        # Write-then-rename so that a reader (or a crash) never sees half a blob; a damaged blob
        # already at the path is replaced, which is the one way put() repairs the store.
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)   # mkstemp made it 0600: readable by its owner alone
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write artifact {digest} to the store {self.root}: {exc.strerror}") from None
        return digest

    @staticmethod
    def _intact(path: Path, digest: str) -> bool:
        try:
            return sha256_hex(path.read_bytes()) == digest
        except OSError:
            return False

    def get(self, digest: str, max_bytes: int | None = None) -> bytes:
        """The bytes stored under `digest`, re-hashed on this read; with `max_bytes`, a larger
        blob is refused (ArtifactCorrupt, kind "layout") before it is read."""
        path = self._path(digest)
        try:
            size = path.stat().st_size if max_bytes is not None else 0
            if max_bytes is not None and size > max_bytes:
                raise too_large(digest, size, max_bytes)
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {digest} is not in the store {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read artifact {digest} from the store {self.root}: {exc.strerror}") from None
        actual = sha256_hex(data)
        if actual != digest:
            raise ArtifactCorrupt(f"artifact {digest} is corrupt: content hashes to {actual}")
        return data

    def has(self, digest: str) -> bool:
        """Whether a blob file exists under `digest` (its content is checked only by get)."""
        return self._path(digest).is_file()

    def digests(self) -> list[str]:
        """Digests of all blob files, sorted; temporary files of interrupted writes are skipped."""
        found = []
        for shard in self.root.iterdir():
            if len(shard.name) != 2 or not set(shard.name) <= _HEX or not shard.is_dir():
                continue
            found += [shard.name + f.name for f in shard.iterdir()
                      if len(f.name) == 62 and set(f.name) <= _HEX and f.is_file()]
        return sorted(found)

    def put_params(self, params: np.ndarray) -> str:
        """Store a 1-D float32 parameter vector (UpdateRejected if it is not one)."""
        return self.put(encode_params(params))

    def get_params(self, digest: str, count: int | None = None) -> np.ndarray:
        """The parameter vector under `digest`; with `count`, the model's parameter count, a blob
        longer than such a vector is refused unread (untrusted updates)."""
        data = self.get(digest, None if count is None else params_nbytes(count))
        try:
            return parse_params(data)
        except InvalidContent as exc:
            raise _corrupt(digest, "parameter vector", exc) from None

    def put_arrays(self, arrays: Mapping[str, np.ndarray]) -> str:
        """Store named float32/float64/int64 arrays, e.g. a server optimizer's state."""
        return self.put(encode_arrays(arrays))

    def get_arrays(self, digest: str) -> dict[str, np.ndarray]:
        try:
            return parse_arrays(self.get(digest))
        except InvalidContent as exc:
            raise _corrupt(digest, "array file", exc) from None

    def put_json(self, obj: Any) -> str:
        """Store `obj` as canonical JSON (StoreError if it is not JSON-able or holds NaN/Inf)."""
        return self.put(canonical_json(obj))

    def get_json(self, digest: str, max_bytes: int | None = None) -> Any:
        """The JSON document under `digest`; with `max_bytes`, a longer one is refused unread
        (documents members send)."""
        try:
            return parse_json(self.get(digest, max_bytes))
        except InvalidContent as exc:
            raise _corrupt(digest, "canonical JSON document", exc) from None
