"""A deployed node steps again at once after acting, as soon as the chain has a new block or a
peer wakes it through its endpoint, and otherwise after poll_seconds; a poster wakes the readers
of its notice, and only members can wake a node."""

import threading
import time

from fedledger.deploy.access import UpdateAccess
from fedledger.deploy.notices import HttpNotices
from fedledger.deploy.pacing import Pacer
from fedledger.errors import ChainUnreachable
from fedledger.protocol.loose import UPDATE


class Head:
    """A chain head that another thread can move."""

    def __init__(self) -> None:
        self.number = 7

    def __call__(self) -> int:
        return self.number


def _timed_wait(pacer: Pacer, acted: bool, stop: threading.Event | None = None) -> float:
    start = time.monotonic()
    pacer.wait(stop or threading.Event(), acted)
    return time.monotonic() - start


def test_after_acting_the_node_steps_at_once_and_otherwise_after_poll_seconds():
    pacer = Pacer(Head(), threading.Event(), longest=0.3)
    assert _timed_wait(pacer, acted=True) < 0.01
    assert 0.29 <= _timed_wait(pacer, acted=False) < 1.0


def test_a_new_block_ends_the_wait():
    head = Head()
    pacer = Pacer(head, threading.Event(), longest=30.0)
    threading.Timer(0.3, lambda: setattr(head, "number", head.number + 1)).start()
    assert 0.25 < _timed_wait(pacer, acted=False) < 1.5


def test_a_wake_up_ends_the_wait_once():
    woken = threading.Event()
    pacer = Pacer(Head(), woken, longest=0.5)
    threading.Timer(0.2, woken.set).start()
    assert 0.15 < _timed_wait(pacer, acted=False) < 0.45
    assert _timed_wait(pacer, acted=False) >= 0.49        # that wake-up was answered: the next wait is whole


def test_stop_ends_a_wait_and_an_unreadable_head_does_not_raise():
    def unreachable() -> int:
        raise ChainUnreachable("the chain at http://127.0.0.1:1 does not answer")

    assert 0.19 < _timed_wait(Pacer(unreachable, threading.Event(), longest=0.2), acted=False) < 0.6
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert _timed_wait(Pacer(Head(), threading.Event(), longest=30.0), acted=False, stop=stop) < 1.5


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
