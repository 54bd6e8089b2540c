"""Signed requests: a member proves who asks with the Ethereum key the chain knows it by.

The client signs (EIP-191) the consortium (chain id and contract), the member address of the
node it means to ask, the method, the path, the time and a fresh nonce. The node recovers the
signer, refuses a time outside a window around its own clock, and remembers each nonce until
its time falls out of the window, so a captured request cannot be sent again: not to this node
(nonce seen), not to another one (it names its addressee), not later (time).
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections.abc import Callable, Mapping

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

TIME_HEADER = "X-FedLedger-Time"
NONCE_HEADER = "X-FedLedger-Nonce"
SIGNATURE_HEADER = "X-FedLedger-Signature"
WINDOW_S = 60                  # accepted clock skew either way, and how long a nonce is remembered past its time
MAX_NONCES = 100_000           # nonces held at once; past it requests wait (503) rather than a nonce being forgotten
NONCE_HEX = 32


class Refused(Exception):
    """A request the node will not answer: an HTTP status and a short reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def request_text(domain: str, server: str, method: str, path: str, timestamp: int, nonce: str) -> str:
    """What is signed; `domain` names the consortium (chain id and contract address)."""
    return f"fedledger-request/1\n{domain}\n{server.lower()}\n{method} {path}\n{timestamp}\n{nonce}"


def signed_headers(account: LocalAccount, domain: str, server: str, method: str, path: str,
                   now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_hex(NONCE_HEX // 2)
    text = request_text(domain, server, method, path, timestamp, nonce)
    signature = account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    return {TIME_HEADER: str(timestamp), NONCE_HEADER: nonce, SIGNATURE_HEADER: signature}


class RequestVerifier:
    """Checks requests addressed to member `server` of consortium `domain`."""

    def __init__(self, domain: str, server: str, window_s: int = WINDOW_S, max_nonces: int = MAX_NONCES,
                 clock: Callable[[], float] = time.time) -> None:
        self.domain, self.server = domain, server
        self.window_s, self.max_nonces, self.clock = window_s, max_nonces, clock
        self._expiry: list[tuple[int, str]] = []    # (time the nonce may be forgotten, nonce), a heap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def signer(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[str, int, str]:
        """(signer's address, time, nonce) of a well-formed, fresh, signed request; Refused (401) otherwise."""
        stamp, nonce, signature = (headers.get(h) for h in (TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
        if not (stamp and nonce and signature):
            raise Refused(401, "unauthenticated: sign the request with a member's key")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise Refused(401, "malformed request time")
        timestamp = int(stamp)
        if abs(timestamp - self.clock()) > self.window_s:
            raise Refused(401, f"request time is more than {self.window_s} s from the node's clock")
        if len(nonce) != NONCE_HEX or not all(c in "0123456789abcdef" for c in nonce):
            raise Refused(401, "malformed nonce")
        text = request_text(self.domain, self.server, method, path, timestamp, nonce)
        try:
            address = Account.recover_message(encode_defunct(text=text), signature=signature)
        except Exception:   # eth_account raises several types for a malformed signature
            raise Refused(401, "malformed signature") from None
        return address, timestamp, nonce

    def remember(self, timestamp: int, nonce: str) -> None:
        """Refused (401) if `nonce` was used within the window; Refused (503) when too many are held."""
        now = self.clock()
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if nonce in self._seen:
                raise Refused(401, "replayed request (nonce already used)")
            if len(self._seen) >= self.max_nonces:
                raise Refused(503, "too many recent requests; try again shortly")
            self._seen.add(nonce)
            heapq.heappush(self._expiry, (timestamp + self.window_s, nonce))
