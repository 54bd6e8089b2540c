"""New blocks as they are mined, pushed by the node (`eth_subscribe("newHeads")` over WebSocket).

A deployed member steps when the chain moves. Asking every member's node for the head a few times a
second costs the JSON-RPC node more than the study itself (a dozen members polling at 20 Hz kept a
Hardhat node saturated), so the node pushes each new head instead, over one WebSocket per member.
Hardhat, Anvil, Geth and Besu serve subscriptions; the WebSocket address taken is the JSON-RPC one
with ws:// for http:// (Hardhat and Anvil serve both on one port). Where none answers there (Geth
and Besu serve WebSocket on a port of their own), the member follows the chain by its poll.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger("fedledger.chain")

CONNECT_TIMEOUT_S = 3.0
RECONNECT_AFTER_S = 2.0
MAX_MESSAGE_BYTES = 1 << 20      # a block header is a few kB


def websocket_url(rpc_url: str) -> str:
    """The WebSocket address of a JSON-RPC node served over http(s) on the same port."""
    if rpc_url.startswith(("ws://", "wss://")):
        return rpc_url
    if rpc_url.startswith(("http://", "https://")):
        return "ws" + rpc_url[len("http"):]
    raise ValueError(f"not an http(s) or ws(s) URL: {rpc_url!r}")


class NewHeads:
    """Calls `on_head()` from a background thread for each block the node at `url` announces.

    The thread subscribes, and after a failed or dropped subscription tries again every
    RECONNECT_AFTER_S, calling `on_head()` once it is back (blocks may have been mined meanwhile).
    Only the first failure is logged at info: meanwhile the member polls. `close` ends it.
    """

    def __init__(self, url: str, on_head: Callable[[], None]) -> None:
        self.url = websocket_url(url)
        self.on_head = on_head
        self._closed = threading.Event()
        self._connection: ClientConnection | None = None
        self._thread = threading.Thread(target=self._follow, name="new-heads", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        connection = self._connection
        if connection is not None:
            connection.close()
        if self._thread.is_alive():
            self._thread.join(timeout=CONNECT_TIMEOUT_S + 1)

    def _follow(self) -> None:
        say = log.info          # the first failure after a success is said at info, the retries at debug
        while not self._closed.is_set():
            try:
                with connect(self.url, open_timeout=CONNECT_TIMEOUT_S, max_size=MAX_MESSAGE_BYTES) as connection:
                    self._connection = connection
                    _subscribe(connection)
                    say = log.info
                    self.on_head()                  # blocks may have been mined while it was not subscribed
                    for _ in connection:            # nothing else is asked on it: each message is a new head
                        self.on_head()
                if not self._closed.is_set():
                    log.info("the new-block subscription at %s ended; subscribing again", self.url)
                    self._closed.wait(RECONNECT_AFTER_S)
            except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                if self._closed.is_set():
                    return
                say("no new-block subscription at %s (%s): following the chain by polling meanwhile",
                    self.url, exc if isinstance(exc, ValueError) else type(exc).__name__)
                say = log.debug
                self._closed.wait(RECONNECT_AFTER_S)


def _subscribe(connection: ClientConnection) -> None:
    """Ask for new heads on `connection`; ValueError if the node does not grant it."""
    connection.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
    answer = json.loads(connection.recv(timeout=CONNECT_TIMEOUT_S))
    if not (isinstance(answer, dict) and isinstance(answer.get("result"), str)):
        raise ValueError("the node offers no newHeads subscription")
