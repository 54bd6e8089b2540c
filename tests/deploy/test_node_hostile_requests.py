"""Hostile requests against a secured node (hypothesis), as the hostile-participant property tests
throw hostile commitments at a round: strangers, members not entitled, unsigned, stale, forged or
malformed requests, any path and method. The node never hands Alice's raw update to any of them,
never answers 500, and goes on serving Alice and her round's coordinator."""

import time

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.chain import Role
from fedledger.deploy.auth import NONCE_HEADER, SIGNATURE_HEADER, TIME_HEADER, signed_headers
from fedledger.deploy.client import consortium_domain
from fedledger.store import ArtifactStore

SECRET = b"alice's raw update: derived from her patients"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from tests.conftest import SecureNet

    net = SecureNet(tmp_path_factory.mktemp("hostile-http"))
    alice, bob, stranger = net.member(), net.member(), net.member(False)
    store = ArtifactStore(net.tmp_path / "alice-store")
    update = store.put(SECRET)
    url = net.serve(alice, store, status=lambda: {"name": "alice"})
    net.updates[url].tag(1, {"institution": alice.address, "commitment": {"update": update}})
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", int(url.rsplit(":", 1)[1]), cert_reqs="CERT_NONE",
                                       assert_fingerprint=net.consortium.certificate_of(alice.address),
                                       retries=False, timeout=5.0)
    yield net, alice, bob, stranger, url, update, pool
    net.stop()


paths = st.one_of(
    st.sampled_from(["/blobs/{u}", "/blobs/{u}/", "/blobs//{u}", "/blobs/{U}", "/blobs/../blobs/{u}", "/status",
                     "/rounds/1/update", "/rounds/1/../../blobs/{u}", "/blobs/%2e%2e/{u}", "/", "/blobs/"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=300).map(lambda t: "/" + t),
)
senders = st.sampled_from(["stranger", "bob", "nobody", "alice-forged"])
tweaks = st.sampled_from(["none", "stale", "future", "garbage signature", "no nonce", "long nonce", "odd time",
                          "signed other path"])
methods = st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT", "DELETE"])


def _headers(net, alice, who, method, path, tweak):
    domain = consortium_domain(net.consortium)
    if who == "nobody":
        return {}
    if who == "alice-forged":           # claims alice's identity with another key's signature
        headers = signed_headers(net.member(False), domain, alice.address, method, path)
    else:
        account = {"stranger": net.stranger, "bob": net.bob}[who]
        signed_path = "/status" if tweak == "signed other path" else path
        now = time.time() + {"stale": -3600, "future": 3600}.get(tweak, 0)
        headers = signed_headers(account, domain, alice.address, method, signed_path, now=now)
    if tweak == "garbage signature":
        headers[SIGNATURE_HEADER] = "0x" + "ab" * 65
    elif tweak == "no nonce":
        headers.pop(NONCE_HEADER)
    elif tweak == "long nonce":
        headers[NONCE_HEADER] = "f" * 10_000
    elif tweak == "odd time":
        headers[TIME_HEADER] = "1e400"
    return headers


def test_hostile_requests_never_get_the_update_nor_break_the_node(node):
    net, alice, bob, stranger, url, update, pool = node
    net.stranger, net.bob = stranger, bob

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=paths, who=senders, tweak=tweaks, method=methods)
    def check(path, who, tweak, method):
        path = path.replace("{u}", update).replace("{U}", update.upper())
        try:
            headers = _headers(net, alice, who, method, path, tweak)
            response = pool.request(method, path, headers=headers, preload_content=True)
        except (urllib3.exceptions.HTTPError, ValueError, UnicodeError):
            return                      # refused before it reached the node, or cut off: nothing served
        assert response.status != 500, (method, path, who, tweak)
        assert SECRET not in response.data, (method, path, who, tweak)

    check()
    # the node still serves whom the protocol sends the update to
    assert net.client(alice).get(url, f"/blobs/{update}", (2.0, 5.0)).read() == SECRET
    coordinator = net.coordinator
    assert net.consortium.has_role(coordinator.address, Role.COORDINATOR)
    assert net.client(coordinator).get(url, f"/blobs/{update}", (2.0, 5.0)).read() == SECRET
