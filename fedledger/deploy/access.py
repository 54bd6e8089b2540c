"""Who may read what from a node: members only, and each raw update only where the protocol sends it.

A raw update is derived from an institution's training records, so it goes only to whoever must
aggregate or score it: loose, the coordinator; semi, that round's committees; full, the
validators (the study's institutions). Auditors (AUDITOR role) may read every one, and its own
institution may read it back. Everything else a node holds (models, manifests, metrics, the
config, secure-aggregation documents) goes to any active member.

A node knows a digest is an update from the chain (semi and full: the round's commitments) or
from the signed update notices it posted or read (loose: nothing on chain names the digests
before the round is anchored); the latter are kept in a file, so a restarted coordinator still
guards the updates it collected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedledger.chain import Consortium, FullStudy, LooseStudy, SemiStudy
from fedledger.chain.records import Role
from fedledger.deploy.auth import Refused, RequestVerifier
from fedledger.store.peers import BLOB_ROUTE

ROLES_TTL_S = 5.0     # a removed member is refused within this long


class Roster:
    """Active members' roles, read from the Consortium contract and cached for `ttl_s`."""

    def __init__(self, consortium: Consortium, ttl_s: float = ROLES_TTL_S) -> None:
        self.consortium, self.ttl_s = consortium, ttl_s
        self._cache: dict[str, tuple[float, Role | None]] = {}

    def roles(self, address: str) -> Role | None:
        """The member's roles; None unless it is an active member."""
        now = time.monotonic()
        cached = self._cache.get(address)
        if cached is None or now - cached[0] > self.ttl_s:
            cached = self._cache[address] = (now, self.consortium.roles_of(address))
        return cached[1]


class UpdateAccess:
    """The raw updates among a node's blobs, and who may read each (see the module's doc)."""

    def __init__(self, study: LooseStudy | SemiStudy | FullStudy, tags: Path) -> None:
        self.study, self.tags = study, tags
        self._updates: dict[str, tuple[int, str]] = {}     # digest -> (round, institution)
        self._scanned_through = 0                            # rounds whose commitments are all known
        self._readers: dict[int, set[str]] = {}             # finished rounds' committees (semi)
        # What was read at which head: a node reads mined blocks (a JSON-RPC node's "latest"), so
        # the answers change only with a new block, and a digest becomes known to a reader only
        # through a block (its commitment) or a notice.
        self._scanned_at: int | None = None
        self._open_readers: tuple[int, int, set[str]] | None = None    # (head, round, committees)
        self._lock = threading.Lock()
        if isinstance(study, LooseStudy) and tags.exists():
            for line in tags.read_text().splitlines():
                digest, round, owner = line.split()
                self._updates[digest] = (int(round), owner)

    def tag(self, round: int, doc: Any) -> str | None:
        """Note the update a signed update notice names (loose), before its blob is fetched; its
        digest, or None for a malformed notice."""
        commitment = doc.get("commitment") if isinstance(doc, dict) else None
        digest = commitment.get("update") if isinstance(commitment, dict) else None
        owner = doc.get("institution")
        if not (isinstance(digest, str) and digest.isalnum() and isinstance(owner, str) and owner.isalnum()):
            return None   # malformed: the coordinator refuses it, and nothing fetches its blob
        with self._lock:
            if digest not in self._updates:
                self._updates[digest] = (round, owner)
                with self.tags.open("a") as f:
                    f.write(f"{digest} {round} {owner}\n")
        return digest

    def readers(self, digest: str) -> set[str] | None:
        """Who, besides auditors, may read blob `digest`; None if it is not a raw update."""
        with self._lock:
            found = self._find(digest)
            if found is None:
                return None
            round, owner = found
            return {owner} | self._aggregators(round)

    def owner(self, digest: str) -> str | None:
        """The institution whose update blob `digest` is (its node holds it); None if it is no
        update known here."""
        with self._lock:
            found = self._find(digest)
            return None if found is None else found[1]

    def _find(self, digest: str) -> tuple[int, str] | None:
        found = self._updates.get(digest)
        if found is None and not isinstance(self.study, LooseStudy):
            self._scan()
            found = self._updates.get(digest)
        return found

    def _scan(self) -> None:
        """Read the commitments of the rounds not yet known; the open round's are read again,
        unless the chain has no new block since the last scan."""
        study = self.study
        head = study.block_number()
        if head == self._scanned_at:
            return
        self._scanned_at = head
        open_round = study.round_count() + 1
        for r in range(self._scanned_through + 1, open_round + 1):
            for c in study.commitments(r):
                self._updates[c.update] = (r, c.member)
        self._scanned_through = open_round - 1     # finalized: no more commitments come

    def _aggregators(self, round: int) -> set[str]:
        study = self.study
        if isinstance(study, LooseStudy):
            return {study.coordinator()}
        if isinstance(study, FullStudy):
            return set(study.roster())
        if round in self._readers:
            return self._readers[round]
        head = study.block_number()
        if self._open_readers is not None and self._open_readers[:2] == (head, round):
            return self._open_readers[2]
        finished = round <= study.round_count()
        attempts = study.final_attempt(round) if finished else study.attempt()
        readers = {a for attempt in range(1, attempts + 1) for a in study.committee(round, attempt)}
        if finished:
            self._readers[round] = readers
        else:
            self._open_readers = (head, round, readers)
        return readers


class Guard:
    """Admits a GET to a node: a fresh request signed by an active member, entitled to what it asks.

    Chain reads are serialized: the server answers from many threads over one chain connection.
    """

    def __init__(self, verifier: RequestVerifier, roster: Roster, updates: UpdateAccess) -> None:
        self.verifier, self.roster, self.updates = verifier, roster, updates
        self._chain = threading.Lock()

    def admit(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        """The requesting member's address; Refused with the status and reason otherwise."""
        address, timestamp, nonce = self.verifier.signer(method, path, headers)
        with self._chain:
            roles = self.roster.roles(address)
        if roles is None:
            raise Refused(403, f"{address} is not an active member of this consortium")
        # only members' nonces are kept: a stranger cannot fill the cache
        self.verifier.remember(timestamp, nonce)
        route = path.split("?", 1)[0]
        if route.startswith(BLOB_ROUTE) and not roles & Role.AUDITOR:
            with self._chain:
                readers = self.updates.readers(route[len(BLOB_ROUTE):])
            if readers is not None and address not in readers:
                raise Refused(403, "this raw update goes only to its round's aggregators and to auditors")
        return address

    def owner_of(self, digest: str) -> str | None:
        """UpdateAccess.owner, over the same serialized chain connection."""
        with self._chain:
            return self.updates.owner(digest)
