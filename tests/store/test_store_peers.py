"""PeerStore fetching from peers by digest, and the NodeServer endpoint that serves a store."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fedledger.deploy.devchain import free_loopback_port
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.tls import node_certificate, server_context
from fedledger.errors import ArtifactCorrupt, ArtifactMissing
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.store.peers import PeerStore

HOST = "127.0.0.1"


def _blob(store, digest):
    return store.root / digest[:2] / digest[2:]


@pytest.fixture
def me(secure_net):
    """The member asking: an institution of the SecureNet."""
    return secure_net.member()


@pytest.fixture
def serve(secure_net):
    """serve(store, notice=..., status=...) -> base URL of a running node of a new member."""

    def start(store, notice=lambda round, kind: None, status=dict, **kwargs):
        return secure_net.serve(secure_net.member(), store, notice, status, **kwargs)

    return start


@pytest.fixture
def peers(secure_net, me):
    """peers(root, urls) -> a PeerStore at `root` asking `urls` as member `me`."""
    return lambda root, urls: PeerStore(root, urls, secure_net.client(me))


class Reply:
    def __init__(self, status_code, headers, content):
        self.status_code, self.headers, self.content = status_code, headers, content

    def json(self):
        return json.loads(self.content)


@pytest.fixture
def get(secure_net, me):
    """get(url) -> the Reply to a pinned GET signed by `me`."""

    def fetch(url):
        split = url.index("/", len("https://"))
        response = secure_net.client(me).get(url[:split], url[split:], (2.0, 5.0))
        try:
            return Reply(response.status, response.headers, response.read())
        finally:
            response.release_conn()

    return fetch


@pytest.fixture
def plain_url(serve, tmp_path):
    """A node with an empty store, notice(r, kind) = {"round": r, "kind": kind}."""
    return serve(ArtifactStore(tmp_path / "plain"), lambda round, kind: {"round": round, "kind": kind})


@pytest.fixture
def liar(secure_net, tmp_path):
    """Base URL of a member's node (its certificate pinned on chain) that answers every GET with
    the same fixed (wrong) bytes."""

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
    member = secure_net.member()
    certificate = node_certificate(tmp_path / "liar", "liar")
    secure_net.consortium.set_certificate(member, certificate.fingerprint)
    server.socket = server_context(certificate).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"https://{HOST}:{server.server_address[1]}"
    secure_net.endpoints[url] = member.address
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed(secure_net, tmp_path):
    """A member's endpoint where nothing listens."""
    member = secure_net.member()
    secure_net.consortium.set_certificate(member, node_certificate(tmp_path / "closed", "closed").fingerprint)
    url = f"https://{HOST}:{free_loopback_port()}"
    secure_net.endpoints[url] = member.address
    return url


def test_missing_blob_is_fetched_from_a_peer_and_kept_locally(tmp_path, serve, peers, closed):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"the global model")
    url = serve(remote)
    store = peers(tmp_path / "local", [url])
    assert not store.has(digest)
    assert store.get(digest) == b"the global model"
    assert (store.fetched, store.fetched_bytes) == (1, len(b"the global model"))
    assert _blob(store, digest).read_bytes() == b"the global model"
    # a second read is local: the counters do not move
    assert store.get(digest) == b"the global model"
    assert store.fetched == 1
    # and it stays readable with the peers gone
    assert peers(tmp_path / "local", [closed]).get(digest) == b"the global model"
    assert ArtifactStore(tmp_path / "local").get(digest) == b"the global model"


def test_the_peer_named_as_holder_is_asked_first_and_the_others_not_at_all(tmp_path, serve, peers, secure_net):
    empty = [serve(ArtifactStore(tmp_path / f"empty{i}")) for i in range(3)]
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"an update its author keeps")
    author = serve(remote)
    store = peers(tmp_path / "local", [*empty, author])
    store.holder = {digest: author}.get
    assert store.get(digest) == b"an update its author keeps"
    assert [server.connections for server in secure_net.servers] == [0, 0, 0, 1]
    # a holder that has it not: the others are asked too (the author over its kept-alive connection)
    other = remote.put(b"a model everyone may hold")
    store.holder = lambda _: empty[1]
    assert store.get(other) == b"a model everyone may hold"
    assert [server.connections for server in secure_net.servers] == [1, 1, 1, 1]
    # a hint that fails (its chain unreachable, say) fails no fetch
    store.holder = lambda _: (_ for _ in ()).throw(ConnectionError("chain down"))
    assert store.get(remote.put(b"a third blob")) == b"a third blob"


def test_peer_serving_wrong_bytes_is_rejected_and_the_next_peer_used(tmp_path, serve, liar, caplog, peers):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"honest bytes")
    store = peers(tmp_path / "local", [liar, serve(remote)])
    with caplog.at_level(logging.WARNING, logger="fedledger.store"):
        assert store.get(digest) == b"honest bytes"
    wrong = sha256_hex(b"not what you asked for")
    warnings = [r.getMessage() for r in caplog.records if r.name == "fedledger.store"]
    assert len(warnings) == 1
    assert liar in warnings[0] and wrong in warnings[0] and digest in warnings[0] and "rejected" in warnings[0]
    assert (store.fetched, store.fetched_bytes) == (1, len(b"honest bytes"))
    assert _blob(store, digest).read_bytes() == b"honest bytes"


def test_only_liars_means_a_digest_mismatch_and_nothing_is_stored(tmp_path, liar, peers):
    digest = sha256_hex(b"wanted")
    store = peers(tmp_path / "local", [liar])
    with pytest.raises(ArtifactCorrupt, match="served wrong bytes") as info:
        store.get(digest)
    assert info.value.kind == "digest"
    assert store.digests() == [] and store.fetched == 0


def test_damaged_local_copy_is_repaired_from_a_peer(tmp_path, serve, caplog, peers):
    remote = ArtifactStore(tmp_path / "remote")
    digest = remote.put(b"intact artifact")
    store = peers(tmp_path / "local", [serve(remote)])
    store.put(b"intact artifact")
    _blob(store, digest).write_bytes(b"bit rot")
    with caplog.at_level(logging.WARNING, logger="fedledger.store"):
        assert store.get(digest) == b"intact artifact"
    assert any("damaged" in r.getMessage() and digest in r.getMessage() for r in caplog.records)
    assert _blob(store, digest).read_bytes() == b"intact artifact"
    assert store.fetched == 1


def test_no_peer_has_it_names_every_answer(tmp_path, serve, peers, closed):
    empty = serve(ArtifactStore(tmp_path / "empty"))
    closed = closed
    store = peers(tmp_path / "local", [empty, closed])
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


def test_node_server_serves_blobs_by_digest(tmp_path, serve, get):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"\x00binary\xffblob")
    url = serve(store)
    response = get(f"{url}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == b"\x00binary\xffblob"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert get(f"{url}/blobs/{digest}?x=1").content == b"\x00binary\xffblob"


@pytest.mark.parametrize("path", ["/blobs/" + sha256_hex(b"unknown"), "/blobs/xyz", "/blobs/",
                                  "/blobs/..%2F..%2Fetc%2Fpasswd", "/", "/nothing", "/rounds/abc/update",
                                  "/rounds//update", "/rounds/-1/update", "/rounds/3"])
def test_node_server_answers_404(plain_url, path, get):
    response = get(plain_url + path)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_node_server_refuses_a_blob_damaged_on_its_disk(tmp_path, serve, get):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"good")
    _blob(store, digest).write_bytes(b"evil")
    url = serve(store)
    assert get(f"{url}/blobs/{digest}").status_code == 404


def test_node_server_status_and_notices(tmp_path, serve, get):
    asked = []

    def notice(round, kind):
        asked.append((round, kind))
        return {"round": round, "signature": "0xabc"} if (round, kind) == (3, "update") else None

    url = serve(ArtifactStore(tmp_path / "store"), notice=notice,
                status=lambda: {"name": "cleveland", "done": False})
    status = get(f"{url}/status")
    assert status.status_code == 200 and status.headers["Content-Type"] == "application/json"
    assert status.json() == {"name": "cleveland", "done": False}
    update = get(f"{url}/rounds/3/update")
    assert update.status_code == 200 and update.json() == {"round": 3, "signature": "0xabc"}
    assert get(f"{url}/rounds/4/update").status_code == 404
    assert get(f"{url}/rounds/3/senders").status_code == 404
    for odd in ("/rounds/3/../keys", "/rounds/3/Update", "/rounds/x/update", "/rounds/3/"):
        assert get(f"{url}{odd}").status_code == 404     # never asked: not a notice
    assert asked == [(3, "update"), (4, "update"), (3, "senders")]


def test_node_server_answers_404_to_round_numbers_no_round_has(tmp_path, serve, caplog, get):
    """Digits past int()'s limit, or a journal file name longer than the disk allows: 404, never
    a 500 with a traceback in the node's log. A uint256 round number is still looked up."""
    journal = tmp_path / "journal"
    write_entry(journal, 2**256 - 1, "update", {"round": "last"})
    url = serve(ArtifactStore(tmp_path / "store"), notice=lambda round, kind: read_entry(journal, round, kind))
    with caplog.at_level(logging.DEBUG, logger="fedledger.node"):
        for digits in (5000, 300, 79):
            response = get(f"{url}/rounds/{'9' * digits}/update")
            assert response.status_code == 404 and response.json() == {"error": "not found"}, digits
        assert get(f"{url}/rounds/{2**256 - 1}/update").json() == {"round": "last"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_node_server_answers_500_when_a_callable_fails(tmp_path, serve, get):
    def broken():
        raise RuntimeError("bug")

    url = serve(ArtifactStore(tmp_path / "store"), status=broken)
    response = get(f"{url}/status")
    assert response.status_code == 500 and response.json() == {"error": "internal error"}
    assert get(f"{url}/status").status_code == 500  # still serving


def test_node_server_serves_only_its_own_disk(tmp_path, serve, peers, get):
    far = ArtifactStore(tmp_path / "far")
    digest = far.put(b"only the far peer has this")
    near = peers(tmp_path / "near", [serve(far)])
    near_url = serve(near)
    assert get(f"{near_url}/blobs/{digest}").status_code == 404
    assert not near.has(digest) and near.fetched == 0
    # once the near node holds it itself (its own get fetches it), it serves it
    assert near.get(digest) == b"only the far peer has this"
    assert get(f"{near_url}/blobs/{digest}").content == b"only the far peer has this"


def test_node_server_counts_served_bytes(tmp_path, serve, secure_net, get):
    store = ArtifactStore(tmp_path / "store")
    digest = store.put(b"12345")
    url = serve(store)
    for _ in range(2):
        get(f"{url}/blobs/{digest}")
    get(f"{url}/blobs/{sha256_hex(b'other')}")
    get(f"{url}/status")
    assert secure_net.servers[-1].served_bytes == 10


def test_json_replies_are_sorted_json(tmp_path, serve, get):
    url = serve(ArtifactStore(tmp_path / "store"), status=lambda: {"b": 1, "a": [1, 2]})
    assert get(f"{url}/status").content == json.dumps({"a": [1, 2], "b": 1}).encode()


def test_idle_connections_are_bounded_and_time_out(tmp_path, serve, secure_net, get):
    """Issue 14, finding 7: 200 idle sockets held 200 server threads for as long as they stayed
    open. Now at most `max_connections` are served at once (the rest are closed on arrival) and
    a connection that sends nothing is closed after `timeout` seconds."""
    before = threading.active_count()
    url = serve(ArtifactStore(tmp_path / "store"), status=lambda: {"up": True}, timeout=1.0, max_connections=8)
    server = secure_net.servers[-1]
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
        assert get(f"{url}/status").json() == {"up": True}
    finally:
        for sock in sockets:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed `sock` (reads end), waiting up to its timeout."""
    try:
        while sock.recv(1024):
            pass
        return True
    except OSError:
        return False
