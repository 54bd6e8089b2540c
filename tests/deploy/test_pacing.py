"""A deployed node steps again at once after acting, as soon as the chain's node pushes a new
block or a peer wakes it through its endpoint, and otherwise after poll_seconds; a poster wakes
the readers of its notice, and only members can wake a node."""

import threading
import time

import pytest

from fedledger.chain import RpcChain
from fedledger.chain.newheads import NewHeads, websocket_url
from fedledger.deploy.access import UpdateAccess
from fedledger.deploy.devchain import free_loopback_port
from fedledger.deploy.notices import HttpNotices
from fedledger.deploy.pacing import Pacer
from fedledger.protocol.loose import UPDATE


def _timed_wait(pacer: Pacer, acted: bool, stop: threading.Event | None = None) -> float:
    start = time.monotonic()
    pacer.wait(stop or threading.Event(), acted)
    return time.monotonic() - start


def test_after_acting_the_node_steps_at_once_and_otherwise_after_poll_seconds():
    pacer = Pacer(threading.Event(), longest=0.3)
    assert _timed_wait(pacer, acted=True) < 0.01
    assert 0.29 <= _timed_wait(pacer, acted=False) < 1.0


def test_a_wake_up_ends_the_wait_once():
    woken = threading.Event()
    pacer = Pacer(woken, longest=0.6)
    threading.Timer(0.2, woken.set).start()
    assert 0.15 < _timed_wait(pacer, acted=False) < 0.5
    assert _timed_wait(pacer, acted=False) >= 0.59        # that wake-up was answered: the next wait is whole


def test_stop_ends_a_wait():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert _timed_wait(Pacer(threading.Event(), longest=30.0), acted=False, stop=stop) < 1.5


def test_websocket_addresses():
    assert websocket_url("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert websocket_url("https://rpc.example.org/x") == "wss://rpc.example.org/x"
    with pytest.raises(ValueError, match="not an http"):
        websocket_url("ftp://example.org")


def test_the_chains_node_pushes_each_new_block(hardhat_url):
    heads = []
    watcher = NewHeads(hardhat_url, lambda: heads.append(time.monotonic()))
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while not heads and time.monotonic() < deadline:   # the first call says it is subscribed
            time.sleep(0.05)
        assert heads, "no subscription to the Hardhat node"
        before = len(heads)
        mined = time.monotonic()
        RpcChain(hardhat_url).advance_blocks(3)
        while len(heads) < before + 3 and time.monotonic() < mined + 10:
            time.sleep(0.01)
        assert len(heads) == before + 3
        assert heads[-1] - mined < 2.0
    finally:
        watcher.close()


def test_without_subscriptions_the_watcher_stays_quiet_and_closes():
    heads = []
    watcher = NewHeads(f"http://127.0.0.1:{free_loopback_port()}", lambda: heads.append(1))   # nobody listens
    watcher.start()
    time.sleep(0.5)
    started = time.monotonic()
    watcher.close()
    assert time.monotonic() - started < 5 and heads == []


def test_members_wake_a_node_and_strangers_cannot(secure_net, tmp_path):
    from fedledger.store import ArtifactStore

    woken = threading.Event()
    alice, bob, stranger = secure_net.member(), secure_net.member(), secure_net.member(False)
    url = secure_net.serve(alice, ArtifactStore(tmp_path / "alice"), wake=woken.set)
    assert secure_net.client(stranger).get_json(url, "/wake", (2.0, 5.0)) is None
    assert secure_net.client(None).get_json(url, "/wake", (2.0, 5.0)) is None
    assert not woken.is_set()
    assert secure_net.client(bob).get_json(url, "/wake", (2.0, 5.0)) == {"awake": True}
    assert woken.is_set()


def test_an_offered_update_wakes_its_readers_only(secure_net, tmp_path):
    """Loose: an institution's update is read by the coordinator, so only its node is woken; the
    coordinator's other notices wake every member."""
    from fedledger.store import ArtifactStore

    institution, other = secure_net.member(), secure_net.member()
    coordinator = secure_net.coordinator
    woken = {a.address: threading.Event() for a in (institution, other, coordinator)}
    endpoints = {a.address: secure_net.serve(a, ArtifactStore(tmp_path / a.address), wake=woken[a.address].set)
                 for a in (institution, other, coordinator)}
    notices = HttpNotices(tmp_path / "journal", endpoints, secure_net.client(institution),
                          UpdateAccess(secure_net.study, tmp_path / "tags"), institution.address)
    notices.post(1, UPDATE, {"institution": institution.address, "commitment": {"update": "ab" * 32}})
    assert woken[coordinator.address].wait(5.0)
    time.sleep(0.3)
    assert not woken[other.address].is_set() and not woken[institution.address].is_set()
    notices.post(1, "senders", {"senders": []})
    assert woken[other.address].wait(5.0) and woken[coordinator.address].wait(5.0)
    assert not woken[institution.address].is_set()        # never itself
    notices.close()
