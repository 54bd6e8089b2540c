"""`MemberClient`: how anyone reads a member's node: over TLS pinned to the certificate that
member recorded on chain, with requests signed by the caller's member key (or unsigned, for
someone without one: the node then answers 401, which callers report).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import urllib3
from eth_account.signers.local import LocalAccount

from fedledger.chain import Consortium
from fedledger.deploy.auth import signed_headers
from fedledger.deploy.tls import client_context

log = logging.getLogger("fedledger.node")

Timeout = tuple[float, float]   # connect, read
WRONG_CERTIFICATE = "serves a certificate other than the one its member recorded on chain: refused"


def consortium_domain(consortium: Consortium) -> str:
    """What every signed request names as its consortium: chain id and contract address."""
    return f"{consortium.backend.chain_id}:{consortium.address.lower()}"


class NodeUnreachable(Exception):
    """A node could not be asked: no certificate on chain, the wrong one, or no connection. The
    message follows the endpoint: "https://... did not answer (...)"."""


class MemberClient:
    """GETs to the nodes of `endpoints` (base URL -> member address), pinned by `consortium`'s
    records and signed by `account` when one is given."""

    def __init__(self, consortium: Consortium, endpoints: Mapping[str, str], account: LocalAccount | None) -> None:
        self.consortium, self.account = consortium, account
        self.endpoints = {url.rstrip("/"): address for url, address in endpoints.items()}
        self.domain = consortium_domain(consortium)
        self._pools: dict[str, tuple[str, urllib3.HTTPSConnectionPool]] = {}   # endpoint -> (pin, pool)
        self._lock = threading.Lock()
        self._tls = client_context()

    def get(self, endpoint: str, path: str, timeout: Timeout) -> urllib3.BaseHTTPResponse:
        """The node's response, unread (stream it, then release it); NodeUnreachable if it cannot be asked."""
        endpoint = endpoint.rstrip("/")
        address = self.endpoints.get(endpoint)
        if address is None:
            raise NodeUnreachable("is no member's endpoint")
        fresh, dropped = False, False
        while True:
            pool = self._pool(endpoint, address, fresh)
            headers = {} if self.account is None else signed_headers(self.account, self.domain, address, "GET", path)
            try:
                return pool.urlopen("GET", path, headers=headers, retries=False, preload_content=False,
                                    timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
            except urllib3.exceptions.SSLError as exc:
                if fresh or "fingerprint" not in str(exc).lower():
                    raise NodeUnreachable(f"failed TLS ({_short(exc)})") from None
                fresh = True        # the pin is read again once: the member may have replaced its certificate
            except urllib3.exceptions.ProtocolError as exc:
                if dropped:
                    raise NodeUnreachable(f"did not answer ({_short(exc)})") from None
                dropped = True      # the node closed a kept-alive connection as it was reused: once more, on a new one
            except urllib3.exceptions.HTTPError as exc:
                raise NodeUnreachable(f"did not answer ({_short(exc)})") from None

    def fetch(self, endpoint: str, path: str, max_bytes: int, timeout: Timeout) -> tuple[bytes | None, str]:
        """(body, "") of a 200 answer, or (None, what went wrong), reading at most `max_bytes`."""
        try:
            response = self.get(endpoint, path, timeout)
        except NodeUnreachable as exc:
            return None, str(exc)
        try:
            if response.status != 200:
                reason = _reason(response)
                return None, f"answered HTTP {response.status}" + (f" ({reason})" if reason else "")
            chunks, size = [], 0
            for chunk in response.stream(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    return None, f"sent more than {max_bytes:,} bytes"
                chunks.append(chunk)
            return b"".join(chunks), ""
        except urllib3.exceptions.HTTPError as exc:
            return None, f"did not answer ({type(exc).__name__})"
        finally:
            response.release_conn()

    def get_json(self, endpoint: str, path: str, timeout: Timeout) -> Any | None:
        """A JSON document; None if the node is down, refuses, has none or sent no JSON."""
        try:
            response = self.get(endpoint, path, timeout)
        except NodeUnreachable as exc:
            log.debug("%s %s", endpoint, exc)
            return None
        try:
            body = response.read()
            return json.loads(body) if response.status == 200 else None
        except (urllib3.exceptions.HTTPError, ValueError):
            return None
        finally:
            response.release_conn()

    def _pool(self, endpoint: str, address: str, fresh: bool) -> urllib3.HTTPSConnectionPool:
        with self._lock:
            cached = self._pools.get(endpoint)
            if cached is not None and not fresh:
                return cached[1]
            pin = self.consortium.certificate_of(address)
            if pin is None:
                raise NodeUnreachable("has no node certificate on chain (yet)")
            if cached is not None and cached[0] == pin:
                raise NodeUnreachable(WRONG_CERTIFICATE)
            url = urlparse(endpoint)
            # the pin, not a certificate authority or the host name, says this is the member's node
            pool = urllib3.HTTPSConnectionPool(url.hostname, url.port, cert_reqs="CERT_NONE", assert_fingerprint=pin,
                                               ssl_context=self._tls, maxsize=4, block=False)
            self._pools[endpoint] = (pin, pool)
            return pool


def _reason(response: urllib3.BaseHTTPResponse) -> str:
    """The node's short JSON reason for refusing, if it gave one."""
    try:
        doc = json.loads(response.read(1024))
        return str(doc.get("error", ""))[:200] if isinstance(doc, dict) else ""
    except (urllib3.exceptions.HTTPError, ValueError):
        return ""


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
