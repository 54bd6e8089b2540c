"""Issue 14, finding 1: a node's endpoints answer consortium members only, over pinned TLS, and
each raw update only to whom the protocol sends it. Real servers on loopback ports, real
contracts on the embedded EVM: membership and certificates are read from the chain."""

import logging
import time

import pytest
import requests
import urllib3

from fedledger.chain import Role
from fedledger.deploy.auth import Refused, RequestVerifier, signed_headers
from fedledger.deploy.client import consortium_domain
from fedledger.deploy.tls import node_certificate
from fedledger.store import ArtifactStore
from fedledger.store.peers import PeerStore


@pytest.fixture
def node(secure_net, tmp_path):
    """Alice's node holding her round-1 update (tagged as her notice tags it) and a model."""
    alice = secure_net.member()
    store = ArtifactStore(tmp_path / "alice-store")
    update = store.put(b"alice's raw update: derived from her patients")
    model = store.put(b"a global model")
    url = secure_net.serve(alice, store, status=lambda: {"name": "alice", "confusion": [[3, 1], [0, 4]]},
                           roles_ttl_s=0.0)
    secure_net.updates[url].tag(1, {"institution": alice.address, "commitment": {"update": update}})
    return secure_net, alice, url, update, model


def get(net, account, url, path):
    """(status, body) of a pinned GET signed by `account` (None: unsigned)."""
    response = net.client(account).get(url, path, (2.0, 5.0))
    try:
        return response.status, response.read()
    finally:
        response.release_conn()


def pinned_pool(net, url):
    return urllib3.HTTPSConnectionPool("127.0.0.1", int(url.rsplit(":", 1)[1]), cert_reqs="CERT_NONE",
                                       assert_fingerprint=net.consortium.certificate_of(net.endpoints[url]))


def test_unauthenticated_requests_are_refused(node):
    net, _, url, update, _ = node
    for path in (f"/blobs/{update}", "/status", "/rounds/1/update", "/nothing"):
        status, body = get(net, None, url, path)
        assert status == 401 and b"unauthenticated" in body, (path, body)


def test_a_non_member_is_refused_even_when_it_signs(node):
    net, _, url, update, model = node
    stranger = net.member(False)
    for path in (f"/blobs/{update}", f"/blobs/{model}", "/status"):
        status, body = get(net, stranger, url, path)
        assert status == 403 and b"not an active member" in body


def test_a_removed_member_is_refused(node):
    net, _, url, _, model = node
    bob = net.member()
    assert get(net, bob, url, f"/blobs/{model}") == (200, b"a global model")
    net.consortium.remove_member(net.admin, bob.address)
    assert get(net, bob, url, f"/blobs/{model}")[0] == 403


def test_a_replayed_request_is_refused(node):
    net, alice, url, _, model = node
    bob = net.member()
    headers = signed_headers(bob, consortium_domain(net.consortium), alice.address, "GET", f"/blobs/{model}")
    pool = pinned_pool(net, url)
    assert pool.request("GET", f"/blobs/{model}", headers=headers).status == 200
    again = pool.request("GET", f"/blobs/{model}", headers=headers)
    assert again.status == 401 and again.json() == {"error": "replayed request (nonce already used)"}
    # nor may it be sent on to another node: it names its addressee
    carol = net.member()
    other = net.serve(carol, ArtifactStore(net.tmp_path / "carol"))
    assert pinned_pool(net, other).request("GET", f"/blobs/{model}", headers=headers).status == 403


@pytest.mark.parametrize("skew", [-120, 120])
def test_a_request_outside_the_time_window_is_refused(node, skew):
    net, alice, url, _, model = node
    bob = net.member()
    headers = signed_headers(bob, consortium_domain(net.consortium), alice.address, "GET", f"/blobs/{model}",
                             now=time.time() + skew)
    response = pinned_pool(net, url).request("GET", f"/blobs/{model}", headers=headers)
    assert response.status == 401 and "60 s" in response.json()["error"]


def test_a_tampered_path_is_not_signed_by_the_member(node):
    net, alice, url, update, model = node
    bob = net.member()
    headers = signed_headers(bob, consortium_domain(net.consortium), alice.address, "GET", f"/blobs/{model}")
    response = pinned_pool(net, url).request("GET", f"/blobs/{update}", headers=headers)
    assert response.status == 403      # recovers some other address: no member


def test_a_raw_update_goes_to_the_aggregator_and_auditors_only(node):
    net, alice, url, update, model = node
    bob, auditor = net.member(), net.member(Role.AUDITOR)
    status, body = get(net, bob, url, f"/blobs/{update}")
    assert status == 403 and b"aggregators and to auditors" in body
    for entitled in (net.coordinator, auditor, alice):
        assert get(net, entitled, url, f"/blobs/{update}") == (200, b"alice's raw update: derived from her patients")
    assert get(net, bob, url, f"/blobs/{model}") == (200, b"a global model")     # models: any member
    assert get(net, bob, url, "/status")[0] == 200                              # status: any member
    # whose update it is: its fetchers ask that member's node first
    assert net.updates[url].owner(update) == alice.address and net.updates[url].owner(model) is None


def test_plain_http_is_not_served(node):
    net, _, url, update, _ = node
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https://", "http://") + f"/blobs/{update}", timeout=5)
    assert get(net, net.coordinator, url, f"/blobs/{update}")[0] == 200      # still serving


def test_a_client_refuses_a_server_whose_certificate_is_not_the_pinned_one(node, tmp_path):
    net, alice, url, _, model = node
    bob = net.member()
    served = net.servers[0].served_bytes
    # alice's key records another certificate: the server at her endpoint is no longer hers
    other = node_certificate(tmp_path / "elsewhere", "other")
    net.consortium.set_certificate(alice, other.fingerprint)
    store = PeerStore(tmp_path / "bob", [url], net.client(bob))
    data, problem = net.client(bob).fetch(url, f"/blobs/{model}", 1 << 20, (2.0, 5.0))
    assert data is None and "other than the one its member recorded on chain" in problem
    with pytest.raises(Exception, match="other than the one its member recorded"):
        store.get(model)
    assert net.servers[0].served_bytes == served      # no request reached it
    # a member with no certificate on chain is not asked either
    net.consortium.set_certificate(alice, "00" * 32)
    assert "no node certificate on chain" in net.client(bob).fetch(url, f"/blobs/{model}", 1 << 20, (2.0, 5.0))[1]


def test_refusals_are_one_line_at_info_never_a_traceback(node, caplog):
    net, _, url, update, _ = node
    with caplog.at_level(logging.DEBUG, logger="fedledger.node"):
        get(net, None, url, f"/blobs/{update}")
        get(net, net.member(False), url, "/status")
        get(net, net.member(), url, f"/blobs/{update}")
    refusals = [r for r in caplog.records if "refused GET" in r.getMessage()]
    assert len(refusals) == 3 and all(r.levelno == logging.INFO and r.exc_info is None for r in refusals)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_nonce_cache_is_bounded_and_forgets_expired_nonces():
    now = [1000.0]
    verifier = RequestVerifier("1:0x00", "0x00", window_s=60, max_nonces=2, clock=lambda: now[0])
    verifier.remember(1000, "a" * 32)
    verifier.remember(1000, "b" * 32)
    with pytest.raises(Refused) as full:
        verifier.remember(1000, "c" * 32)
    assert full.value.status == 503
    now[0] = 1061.0          # both fell out of the window: forgotten, and their requests are too old anyway
    verifier.remember(1061, "c" * 32)
    with pytest.raises(Refused, match="replayed"):
        verifier.remember(1061, "c" * 32)


def test_the_tls_key_is_kept_private(tmp_path):
    certificate = node_certificate(tmp_path / "state", "alice")
    assert certificate.key.stat().st_mode & 0o777 == 0o600
    assert node_certificate(tmp_path / "state", "alice") == certificate     # made once, then reused


def test_a_peer_is_served_on_one_kept_alive_connection_until_it_idles(node):
    """Keep-alive spares a TLS handshake per request; idle connections do not hold slots."""
    from fedledger.deploy.server import KEEP_ALIVE_S

    net, alice, url, _, model = node
    bob = net.member()
    pool = pinned_pool(net, url)
    domain = consortium_domain(net.consortium)

    def ask():
        headers = signed_headers(bob, domain, alice.address, "GET", f"/blobs/{model}")
        return pool.request("GET", f"/blobs/{model}", headers=headers)

    for _ in range(3):
        response = ask()
        assert response.status == 200 and response.data == b"a global model"
        assert response.headers.get("Connection") != "close"
    server = net.servers[0]
    assert server.connections == 1
    time.sleep(KEEP_ALIVE_S + 1.0)       # the node closes it; the next request opens another
    assert ask().status == 200 and server.connections == 2


def test_a_crowded_node_closes_each_connection_after_its_reply(secure_net, tmp_path):
    alice, bob = secure_net.member(), secure_net.member()
    store = ArtifactStore(tmp_path / "alice-store")
    model = store.put(b"a global model")
    url = secure_net.serve(alice, store, max_connections=1)    # one connection is already over half
    pool = pinned_pool(secure_net, url)
    for expected in (1, 2):
        headers = signed_headers(bob, consortium_domain(secure_net.consortium), alice.address, "GET", f"/blobs/{model}")
        response = pool.request("GET", f"/blobs/{model}", headers=headers)
        assert response.status == 200 and response.headers["Connection"] == "close"
        assert secure_net.servers[0].connections == expected
