"""A node's HTTP endpoint: its artifact store by digest, its notices (signed updates, the
coordinator's senders and proofs), its status.

Read-only, GET only. Blobs are served from the node's own disk and never fetched on a peer's
behalf, so one request cannot make a node talk to anyone else.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from fedledger.deploy.journal import KIND
from fedledger.errors import StoreError
from fedledger.store import ArtifactStore
from fedledger.store.peers import BLOB_ROUTE

log = logging.getLogger("fedledger.node")

REQUEST_TIMEOUT_S = 10.0       # an idle or slow connection is closed after this long without a byte
MAX_CONNECTIONS = 64           # connections served at once; more are closed on arrival
NOTICE_ROUTE = "/rounds/"        # /rounds/N/KIND: the node's KIND notice of round N (loose: "update"...)
ROUND_DIGITS = 78                # a round number is a uint256 on chain: at most 78 decimal digits
STATUS_ROUTE = "/status"

Reply = tuple[int, str, bytes]   # HTTP status, content type, body


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(obj, sort_keys=True).encode()


NOT_FOUND = json_reply({"error": "not found"}, 404)


def get_json(url: str, timeout: float | tuple[float, float]) -> Any | None:
    """GET a JSON document from a node's endpoint; None if it is down, has none (404) or sent
    something that is not JSON."""
    try:
        reply = requests.get(url, timeout=timeout)
        return reply.json() if reply.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: one more is closed at once,
    so idle sockets cannot hold an unbounded number of threads."""

    daemon_threads = True
    request_queue_size = 128    # the listen backlog: socketserver's 5 makes a burst of peers wait a second

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("refused a connection from %s: every slot is taken", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:       # the thread never started: give its slot back
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class NodeServer:
    """Serves `store` plus the node's notices (`notice(round, kind)`, a JSON-able document or
    None) and `status()` on host:port, from a background thread; each connection is closed after
    `timeout` seconds without a byte, and at most `max_connections` are served at once."""

    def __init__(self, host: str, port: int, store: ArtifactStore,
                 notice: Callable[[int, str], Any | None], status: Callable[[], Any],
                 timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self.store = store
        self.notice = notice
        self.status = status
        self.served_bytes = 0
        self._server = _BoundedServer((host, port), _handler_for(self, timeout), max_connections)
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply(self, path: str) -> Reply:
        if path.startswith(BLOB_ROUTE):
            return self._blob(path[len(BLOB_ROUTE):])
        if path.startswith(NOTICE_ROUTE):
            number, _, kind = path[len(NOTICE_ROUTE):].partition("/")
            # a longer digit string is no round, and would exceed int()'s digit limit or a file name's length
            known = number.isascii() and number.isdigit() and len(number) <= ROUND_DIGITS and KIND.fullmatch(kind)
            doc = self.notice(int(number), kind) if known else None
            return NOT_FOUND if doc is None else json_reply(doc)
        if path == STATUS_ROUTE:
            return json_reply(self.status())
        return NOT_FOUND

    def _blob(self, digest: str) -> Reply:
        try:
            # the base class's get: this node's own disk only, re-hashed on read
            data = ArtifactStore.get(self.store, digest)
        except StoreError:
            return NOT_FOUND
        self.served_bytes += len(data)
        return 200, "application/octet-stream", data


def _handler_for(server: NodeServer, request_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # StreamRequestHandler puts this on the socket: a silent client's read times out and
        # the connection is closed, freeing its thread
        timeout = request_timeout

        def do_GET(self) -> None:   # noqa: N802 (the name http.server calls)
            try:
                status, content_type, body = server.reply(self.path.split("?", 1)[0])
            except Exception:   # a bug must not kill the endpoint: log it, answer 500
                log.exception("error answering GET %s", self.path)
                status, content_type, body = json_reply({"error": "internal error"}, 500)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:   # requests are many; keep them at debug
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
