"""`PeerStore`: a node's own artifact store that fetches what it lacks from its peers, by digest.

Each institution keeps its own store and serves it read-only over HTTP (GET /blobs/DIGEST). A
blob that is missing here, or damaged, is fetched from the peers in turn; bytes that do not hash
to the digest asked for are rejected and logged, and the next peer is tried. Nothing a peer says
is believed because of where it came from: only the digest vouches for the bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from fedledger.errors import ArtifactCorrupt, ArtifactMissing
from fedledger.store.artifacts import ArtifactStore
from fedledger.store.digest import check_digest, sha256_hex

BLOB_ROUTE = "/blobs/"
FETCH_TIMEOUT_S = (3.0, 30.0)          # connect, read
MAX_BLOB_BYTES = 256 * 1024 * 1024     # far above any model here; a peer cannot exhaust our memory

log = logging.getLogger("fedledger.store")


def blob_url(endpoint: str, digest: str) -> str:
    return endpoint.rstrip("/") + BLOB_ROUTE + check_digest(digest)


class PeerStore(ArtifactStore):
    """An ArtifactStore at `root` that falls back to `peers` (base URLs such as
    http://10.0.0.2:8701) for blobs it does not hold intact."""

    def __init__(self, root: str | Path, peers: Sequence[str] = ()) -> None:
        super().__init__(root)
        self.peers = list(peers)
        self.fetched = 0          # blobs fetched from peers (for logs and benchmarks)
        self.fetched_bytes = 0
        self.fetch_seconds = 0.0  # time spent fetching, successful or not

    def get(self, digest: str, max_bytes: int | None = None) -> bytes:
        try:
            return super().get(digest, max_bytes)
        except (ArtifactMissing, ArtifactCorrupt) as exc:
            if not self.peers or getattr(exc, "kind", None) == "layout":   # too large: no peer can help
                raise
            if isinstance(exc, ArtifactCorrupt):
                log.warning("local copy of %s is damaged (%s); fetching it from a peer", digest, exc)
            return self.fetch(digest, max_bytes)

    def fetch(self, digest: str, max_bytes: int | None = None) -> bytes:
        """Fetch `digest` from the first peer that serves the right bytes, and keep it here.

        ArtifactMissing, naming what each peer answered, when none does; ArtifactCorrupt (kind
        "digest") when a peer served bytes that do not hash to `digest` and none served the right ones.
        """
        started = time.perf_counter()
        try:
            return self._fetch(digest, MAX_BLOB_BYTES if max_bytes is None else min(max_bytes, MAX_BLOB_BYTES))
        finally:
            self.fetch_seconds += time.perf_counter() - started

    def _fetch(self, digest: str, max_bytes: int) -> bytes:
        answers = []
        for peer in self.peers:
            data, problem = _download(blob_url(peer, digest), max_bytes)
            if data is not None:
                actual = sha256_hex(data)
                if actual == digest:
                    self.put(data)
                    self.fetched += 1
                    self.fetched_bytes += len(data)
                    return data
                problem = f"served wrong bytes (they hash to {actual}): rejected"
                log.warning("peer %s %s for %s", peer, problem, digest)
            answers.append(f"{peer} {problem}")
        message = (f"artifact {digest} is not in the store {self.root}, and no peer served it "
                   f"({'; '.join(answers) or 'no peers'})")
        if any("served wrong bytes" in answer for answer in answers):
            raise ArtifactCorrupt(message, "digest")   # someone offered bytes that are not the committed ones
        raise ArtifactMissing(message)


def _download(url: str, max_bytes: int) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, what went wrong), reading at most `max_bytes`."""
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT_S, stream=True) as response:
            if response.status_code != 200:
                return None, f"answered HTTP {response.status_code}"
            chunks, size = [], 0
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    return None, f"sent more than {max_bytes:,} bytes"
                chunks.append(chunk)
            return b"".join(chunks), ""
    except requests.RequestException as exc:
        return None, f"did not answer ({type(exc).__name__})"
