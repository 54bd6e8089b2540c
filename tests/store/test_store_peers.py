"""PeerStore fetching from peers by digest, and the NodeServer endpoint that serves a store."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fedledger.deploy.devchain import free_loopback_port
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.server import NodeServer
from fedledger.errors import ArtifactCorrupt, ArtifactMissing
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.store.peers import PeerStore

HOST = "127.0.0.1"


def _blob(store, digest):
    return store.root / digest[:2] / digest[2:]


@pytest.fixture
def serve():
    """serve(store, notice=..., status=...) -> base URL of a running NodeServer; all stopped afterwards."""
    servers = []

    def start(store, notice=lambda round, kind: None, status=dict):
        server = NodeServer(HOST, free_loopback_port(), store, notice, status)
        server.start()
        servers.append(server)
        host, port = server.address
        return f"http://{host}:{port}"

    yield start
    # stop() waits for serve_forever's poll (up to 0.5 s): stop them all at once
    stoppers = [threading.Thread(target=server.stop) for server in servers]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory):
    """One NodeServer for the whole module: an empty store, notice(r, kind) = {"round": r, "kind": kind}."""
    server = NodeServer(HOST, free_loopback_port(), ArtifactStore(tmp_path_factory.mktemp("plain")),
                        lambda round, kind: {"round": round, "kind": kind}, dict)
    server.start()
    yield f"http://{HOST}:{server.address[1]}"
    server.stop()


@pytest.fixture
def liar():
    """Base URL of a peer that answers every GET with the same fixed (wrong) bytes."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"not what you asked for"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer((HOST, free_loopback_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port_url():
    return f"http://{HOST}:{free_loopback_port()}"


def test_missing_blob_is_fetched_from_a_peer_and_kept_locally(tmp_path, serve):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"the global model")
    url = serve(remote)
    store = PeerStore(tmp_path / "local", [url])
    assert not store.has(digest)
    assert store.get(digest) == b"the global model"
    assert (store.fetched, store.fetched_bytes) == (1, len(b"the global model"))
    assert _blob(store, digest).read_bytes() == b"the global model"
    # a second read is local: the counters do not move
    assert store.get(digest) == b"the global model"
    assert store.fetched == 1
    # and it stays readable with the peers gone
    assert PeerStore(tmp_path / "local", [_closed_port_url()]).get(digest) == b"the global model"
    assert ArtifactStore(tmp_path / "local").get(digest) == b"the global model"


def test_peer_serving_wrong_bytes_is_rejected_and_the_next_peer_used(tmp_path, serve, liar, caplog):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"honest bytes")
    store = PeerStore(tmp_path / "local", [liar, serve(remote)])
    with caplog.at_level(logging.WARNING, logger="fedledger.store"):
        assert store.get(digest) == b"honest bytes"
    wrong = sha256_hex(b"not what you asked for")
    warnings = [r.getMessage() for r in caplog.records if r.name == "fedledger.store"]
    assert len(warnings) == 1
    assert liar in warnings[0] and wrong in warnings[0] and digest in warnings[0] and "rejected" in warnings[0]
    assert (store.fetched, store.fetched_bytes) == (1, len(b"honest bytes"))
    assert _blob(store, digest).read_bytes() == b"honest bytes"


def test_only_liars_means_a_digest_mismatch_and_nothing_is_stored(tmp_path, liar):
    digest = sha256_hex(b"wanted")
    store = PeerStore(tmp_path / "local", [liar])
    with pytest.raises(ArtifactCorrupt, match="served wrong bytes") as info:
        store.get(digest)
    assert info.value.kind == "digest"
    assert store.digests() == [] and store.fetched == 0


def test_damaged_local_copy_is_repaired_from_a_peer(tmp_path, serve, caplog):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"intact artifact")
    store = PeerStore(tmp_path / "local", [serve(remote)])
    store.put(b"intact artifact")
    _blob(store, digest).write_bytes(b"bit rot")
    with caplog.at_level(logging.WARNING, logger="fedledger.store"):
        assert store.get(digest) == b"intact artifact"
    assert any("damaged" in r.getMessage() and digest in r.getMessage() for r in caplog.records)
    assert _blob(store, digest).read_bytes() == b"intact artifact"
    assert store.fetched == 1


def test_no_peer_has_it_names_every_answer(tmp_path, serve):
    empty = serve(ArtifactStore(tmp_path / "empty"))
    closed = _closed_port_url()
    store = PeerStore(tmp_path / "local", [empty, closed])
    digest = sha256_hex(b"nobody has this")
    with pytest.raises(ArtifactMissing) as info:
        store.get(digest)
    message = str(info.value)
    assert digest in message
    assert f"{empty} answered HTTP 404" in message
    assert f"{closed} did not answer" in message
    assert store.fetched == 0 and store.digests() == []


def test_peer_store_without_peers_behaves_like_artifact_store(tmp_path):
    store = PeerStore(tmp_path / "local")
    digest = sha256_hex(b"absent")
    with pytest.raises(ArtifactMissing, match=f"artifact {digest} is not in the store"):
        store.get(digest)
    present = store.put(b"present")
    _blob(store, present).write_bytes(b"damaged")
    with pytest.raises(ArtifactCorrupt):
        store.get(present)


# --- NodeServer ---


def test_node_server_serves_blobs_by_digest(tmp_path, serve):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"\x00binary\xffblob")
    url = serve(store)
    response = requests.get(f"{url}/blobs/{digest}", timeout=5)
    assert response.status_code == 200
    assert response.content == b"\x00binary\xffblob"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert requests.get(f"{url}/blobs/{digest}?x=1", timeout=5).content == b"\x00binary\xffblob"


@pytest.mark.parametrize("path", ["/blobs/" + sha256_hex(b"unknown"), "/blobs/xyz", "/blobs/",
                                  "/blobs/..%2F..%2Fetc%2Fpasswd", "/", "/nothing", "/rounds/abc/update",
                                  "/rounds//update", "/rounds/-1/update", "/rounds/3"])
def test_node_server_answers_404(plain_url, path):
    response = requests.get(plain_url + path, timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_node_server_refuses_a_blob_damaged_on_its_disk(tmp_path, serve):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"good")
    _blob(store, digest).write_bytes(b"evil")
    url = serve(store)
    assert requests.get(f"{url}/blobs/{digest}", timeout=5).status_code == 404


def test_node_server_status_and_notices(tmp_path, serve):
    asked = []

    def notice(round, kind):
        asked.append((round, kind))
        return {"round": round, "signature": "0xabc"} if (round, kind) == (3, "update") else None

    url = serve(ArtifactStore(tmp_path / "store"), notice=notice,
                status=lambda: {"name": "cleveland", "done": False})
    status = requests.get(f"{url}/status", timeout=5)
    assert status.status_code == 200 and status.headers["Content-Type"] == "application/json"
    assert status.json() == {"name": "cleveland", "done": False}
    update = requests.get(f"{url}/rounds/3/update", timeout=5)
    assert update.status_code == 200 and update.json() == {"round": 3, "signature": "0xabc"}
    assert requests.get(f"{url}/rounds/4/update", timeout=5).status_code == 404
    assert requests.get(f"{url}/rounds/3/senders", timeout=5).status_code == 404
    for odd in ("/rounds/3/../keys", "/rounds/3/Update", "/rounds/x/update", "/rounds/3/"):
        assert requests.get(f"{url}{odd}", timeout=5).status_code == 404     # never asked: not a notice
    assert asked == [(3, "update"), (4, "update"), (3, "senders")]


def test_node_server_answers_404_to_round_numbers_no_round_has(tmp_path, serve, caplog):
    """Digits past int()'s limit, or a journal file name longer than the disk allows: 404, never
    a 500 with a traceback in the node's log. A uint256 round number is still looked up."""
    journal = tmp_path / "journal"
    write_entry(journal, 2**256 - 1, "update", {"round": "last"})
    url = serve(ArtifactStore(tmp_path / "store"), notice=lambda round, kind: read_entry(journal, round, kind))
    with caplog.at_level(logging.DEBUG, logger="fedledger.node"):
        for digits in (5000, 300, 79):
            response = requests.get(f"{url}/rounds/{'9' * digits}/update", timeout=5)
            assert response.status_code == 404 and response.json() == {"error": "not found"}, digits
        assert requests.get(f"{url}/rounds/{2**256 - 1}/update", timeout=5).json() == {"round": "last"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_node_server_answers_500_when_a_callable_fails(tmp_path, serve):
    def broken():
        raise RuntimeError("bug")

    url = serve(ArtifactStore(tmp_path / "store"), status=broken)
    response = requests.get(f"{url}/status", timeout=5)
    assert response.status_code == 500 and response.json() == {"error": "internal error"}
    assert requests.get(f"{url}/status", timeout=5).status_code == 500  # still serving


def test_node_server_serves_only_its_own_disk(tmp_path, serve):
    far = ArtifactStore(tmp_path / "far")
    digest = far.put(b"only the far peer has this")
    near = PeerStore(tmp_path / "near", [serve(far)])
    near_url = serve(near)
    assert requests.get(f"{near_url}/blobs/{digest}", timeout=5).status_code == 404
    assert not near.has(digest) and near.fetched == 0
    # once the near node holds it itself (its own get fetches it), it serves it
    assert near.get(digest) == b"only the far peer has this"
    assert requests.get(f"{near_url}/blobs/{digest}", timeout=5).content == b"only the far peer has this"


def test_node_server_counts_served_bytes(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"12345")
    server = NodeServer(HOST, free_loopback_port(), store, lambda round: None, dict)
    server.start()
    try:
        url = f"http://{HOST}:{server.address[1]}"
        for _ in range(2):
            requests.get(f"{url}/blobs/{digest}", timeout=5)
        requests.get(f"{url}/blobs/{sha256_hex(b'other')}", timeout=5)
        requests.get(f"{url}/status", timeout=5)
        assert server.served_bytes == 10
    finally:
        server.stop()


def test_json_replies_are_sorted_json(tmp_path, serve):
    url = serve(ArtifactStore(tmp_path / "store"), status=lambda: {"b": 1, "a": [1, 2]})
    assert requests.get(f"{url}/status", timeout=5).content == json.dumps({"a": [1, 2], "b": 1}).encode()


def test_idle_connections_are_bounded_and_time_out(tmp_path):
    """Issue 14, finding 7: 200 idle sockets held 200 server threads for as long as they stayed
    open. Now at most `max_connections` are served at once (the rest are closed on arrival) and
    a connection that sends nothing is closed after `timeout` seconds."""
    before = threading.active_count()
    server = NodeServer(HOST, free_loopback_port(), ArtifactStore(tmp_path / "store"), lambda r, k: None,
                        lambda: {"up": True}, timeout=1.0, max_connections=8)
    server.start()
    sockets = []
    try:
        for _ in range(200):
            sock = socket.create_connection(server.address, timeout=5)
            sockets.append(sock)
        time.sleep(0.3)
        assert threading.active_count() - before <= 8 + 1        # the served ones and the accept loop
        started = time.monotonic()
        assert all(_closed(sock) for sock in sockets)   # by the server: refused at once, or timed out
        assert time.monotonic() - started < 4
        url = f"http://{HOST}:{server.address[1]}"
        assert requests.get(f"{url}/status", timeout=5).json() == {"up": True}
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed `sock` (reads end), waiting up to its timeout."""
    try:
        while sock.recv(1024):
            pass
        return True
    except OSError:
        return False
