"""A node's HTTPS endpoint: its artifact store by digest, its notices (signed updates, the
coordinator's senders and proofs), its status, and a wake-up call.

Read-only (`/wake` only makes the node look at the chain and its peers now, rather than at its
next block or poll), GET only, TLS only (a plain HTTP client gets no answer), and every request must be
signed by an active member entitled to what it asks (fedledger.deploy.access); a refusal is a
401 or 403 with a short JSON reason. Blobs are served from the node's own disk and never fetched
on a peer's behalf, so one request cannot make a node talk to anyone else.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast

from fedledger.deploy.auth import Refused
from fedledger.deploy.journal import KIND
from fedledger.errors import FedLedgerError, StoreError
from fedledger.store import ArtifactStore
from fedledger.store.peers import BLOB_ROUTE

log = logging.getLogger("fedledger.node")

REQUEST_TIMEOUT_S = 10.0       # a slow request or reply is dropped after this long without a byte
KEEP_ALIVE_S = 2.0             # a connection kept open for the next request is closed after this long idle
MAX_CONNECTIONS = 64           # connections served at once; more are closed on arrival
NOTICE_ROUTE = "/rounds/"        # /rounds/N/KIND: the node's KIND notice of round N (loose: "update"...)
ROUND_DIGITS = 78                # a round number is a uint256 on chain: at most 78 decimal digits
STATUS_ROUTE = "/status"
WAKE_ROUTE = "/wake"             # a peer posted a notice this node may be waiting for

Reply = tuple[int, str, bytes]   # HTTP status, content type, body


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(obj, sort_keys=True).encode()


NOT_FOUND = json_reply({"error": "not found"}, 404)


class Gatekeeper(Protocol):
    def admit(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        """The requesting member's address; Refused otherwise (fedledger.deploy.access.Guard)."""


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: one more is closed at once,
    so idle sockets cannot hold an unbounded number of threads."""

    daemon_threads = True
    request_queue_size = 128    # the listen backlog: socketserver's 5 makes a burst of peers wait a second

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int,
                 tls: ssl.SSLContext) -> None:
        self.max_connections = max_connections
        self.open_connections = 0       # the slots taken; changed under the lock, read without it by crowded()
        self.accepted = 0               # connections served so far
        self._count = threading.Lock()
        self._tls = tls
        super().__init__(address, handler)

    def crowded(self) -> bool:
        """Whether over half the slots are taken: a connection is then closed after its reply,
        so that idle kept-alive ones cannot crowd out new peers."""
        return self.open_connections * 2 > self.max_connections

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # the handshake happens in the connection's own thread, under its timeout, not in the accept loop
        return self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a failed handshake (plain HTTP, a client that gave up): no traceback on stderr
        log.debug("connection from %s dropped: %s", client_address[0], sys.exc_info()[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            full = self.open_connections >= self.max_connections
            if not full:
                self.open_connections += 1
                self.accepted += 1
        if full:
            log.debug("refused a connection from %s: every slot is taken", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:       # the thread never started: give its slot back
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count:
            self.open_connections -= 1


class NodeServer:
    """Serves `store` plus the node's notices (`notice(round, kind)`, a JSON-able document or
    None) and `status()` on host:port over TLS (`tls`), and calls `wake()` on /wake, for the
    requests `guard` admits, from a
    background thread; each connection is closed after `timeout` seconds without a byte, and at
    most `max_connections` are served at once."""

    def __init__(self, host: str, port: int, store: ArtifactStore,
                 notice: Callable[[int, str], Any | None], status: Callable[[], Any],
                 tls: ssl.SSLContext, guard: Gatekeeper, wake: Callable[[], None] = lambda: None,
                 timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self.store = store
        self.notice = notice
        self.status = status
        self.wake = wake
        self.guard = guard
        self.served_bytes = 0
        self._server = _BoundedServer((host, port), _handler_for(self, timeout), max_connections, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    @property
    def connections(self) -> int:
        """Connections accepted so far (a kept-alive one counts once, however many requests it carries)."""
        return self._server.accepted

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, headers: Mapping[str, str], client: str) -> Reply:
        """The reply to GET `path`: refused unless the guard admits the request."""
        try:
            self.guard.admit("GET", path, headers)
        except Refused as exc:
            log.info("refused GET %s from %s: %s", path[:100], client, exc.reason)
            return json_reply({"error": exc.reason}, exc.status)
        except FedLedgerError as exc:     # the chain is unreachable: membership cannot be checked
            log.warning("cannot check a request from %s: %s", client, exc)
            return json_reply({"error": "the node cannot check membership now; try again"}, 503)
        return self.reply(path.split("?", 1)[0])

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
        if path == WAKE_ROUTE:
            self.wake()
            return json_reply({"awake": True})
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
        # HTTP/1.1 keeps a connection open for the peer's next request (a node asks the same
        # peer many times a round; each new connection costs a TLS handshake), but only
        # KEEP_ALIVE_S idle, and not when the server is crowded
        protocol_version = "HTTP/1.1"
        # a reply goes out as two writes (headers, body): with Nagle's algorithm the body would wait
        # for the client's delayed ACK of the headers, 40 ms, on a kept-alive connection
        disable_nagle_algorithm = True
        # StreamRequestHandler puts this on the socket: a silent client's read times out and
        # the connection is closed, freeing its thread
        timeout = request_timeout

        def setup(self) -> None:
            self.request.settimeout(request_timeout)
            self.request.do_handshake()    # an SSLError here (plain HTTP, say) drops the connection
            super().setup()

        def handle(self) -> None:
            self.handle_one_request()
            while not self.close_connection:
                self.request.settimeout(min(KEEP_ALIVE_S, request_timeout))     # idle until the next request
                self.handle_one_request()

        def parse_request(self) -> bool:     # a request line came: its headers and reply get the full timeout
            self.request.settimeout(request_timeout)
            return super().parse_request()

        def do_GET(self) -> None:   # noqa: N802 (the name http.server calls)
            try:
                status, content_type, body = server.answer(self.path, self.headers, self.client_address[0])
            except Exception:   # a bug must not kill the endpoint: log it, answer 500
                log.exception("error answering GET %s", self.path)
                status, content_type, body = json_reply({"error": "internal error"}, 500)
            if cast(_BoundedServer, self.server).crowded():
                self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:   # requests are many; keep them at debug
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
