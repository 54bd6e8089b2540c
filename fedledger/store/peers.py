"""`PeerStore`: a node's own artifact store that fetches what it lacks from its peers, by digest.

Each institution keeps its own store and serves it read-only over HTTPS (GET /blobs/DIGEST). A
blob that is missing here, or damaged, is fetched from the peers in turn; bytes that do not hash
to the digest asked for are rejected and logged, and the next peer is tried. Nothing a peer says
is believed because of where it came from: only the digest vouches for the bytes. How a peer is
asked (TLS pinning, signed requests) is the `PeerClient`'s business (fedledger.deploy.client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from fedledger.errors import ArtifactCorrupt, ArtifactMissing
from fedledger.store.artifacts import ArtifactStore
from fedledger.store.digest import check_digest, sha256_hex

BLOB_ROUTE = "/blobs/"
FETCH_TIMEOUT_S = (3.0, 30.0)          # connect, read
MAX_BLOB_BYTES = 256 * 1024 * 1024     # far above any model here; a peer cannot exhaust our memory

log = logging.getLogger("fedledger.store")


class PeerClient(Protocol):
    def fetch(self, endpoint: str, path: str, max_bytes: int,
              timeout: tuple[float, float]) -> tuple[bytes | None, str]:
        """(body, "") or (None, what went wrong), reading at most `max_bytes`."""


class PeerStore(ArtifactStore):
    """An ArtifactStore at `root` that falls back to `peers` (base URLs such as
    https://10.0.0.2:8701), asked through `client`, for blobs it does not hold intact. `holder`,
    when set, names the peer likely to hold a digest (an update's author, say): it is asked first,
    so that a fetch does not go round every peer that answers "not found"."""

    def __init__(self, root: str | Path, peers: Sequence[str] = (), client: PeerClient | None = None,
                 holder: Callable[[str], str | None] | None = None) -> None:
        super().__init__(root)
        if peers and client is None:
            raise ValueError("a PeerStore with peers needs a client to ask them")
        self.peers = list(peers)
        self.client = client
        self.holder = holder
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

    def _holder(self, digest: str) -> str | None:
        if self.holder is None:
            return None
        try:
            return self.holder(digest)
        except Exception as exc:     # only a hint (it may read the chain): every peer is asked anyway
            log.debug("no holder hint for %s: %s", digest, exc)
            return None

    def _fetch(self, digest: str, max_bytes: int) -> bytes:
        answers = []
        first = self._holder(digest)
        for peer in sorted(self.peers, key=lambda p: p != first):     # stable: the others in their order
            data, problem = self.client.fetch(peer, BLOB_ROUTE + check_digest(digest), max_bytes, FETCH_TIMEOUT_S)
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

