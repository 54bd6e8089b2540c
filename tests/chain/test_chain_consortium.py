"""Consortium.vy through its Python wrapper: admin-only changes, roles, history."""

import pytest
from eth_account import Account

from fedledger.chain import Consortium, Member, Role
from fedledger.errors import TransactionReverted

from .conftest import FUNDS


@pytest.fixture
def setup(embedded):
    admin, alice, bob = Account.create(), Account.create(), Account.create()
    embedded.fund([admin.address, alice.address, bob.address], FUNDS)
    return embedded, Consortium.deploy(embedded, admin), admin, alice, bob


def test_deployer_is_admin_and_nobody_is_a_member(setup):
    _, consortium, admin, alice, _ = setup
    assert consortium.admin() == admin.address
    assert consortium.members() == []
    assert not consortium.is_member(admin.address)
    assert not consortium.has_role(alice.address, Role.INSTITUTION)


def test_add_members_with_roles(setup):
    _, consortium, admin, alice, bob = setup
    consortium.add_member(admin, alice.address, "Hospital A", Role.INSTITUTION | Role.AUDITOR)
    consortium.add_member(admin, bob.address.lower(), "Coordinator", Role.COORDINATOR)
    assert consortium.members() == [
        Member(alice.address, "Hospital A", Role.INSTITUTION | Role.AUDITOR, True),
        Member(bob.address, "Coordinator", Role.COORDINATOR, True),
    ]
    assert consortium.has_role(alice.address, Role.INSTITUTION)
    assert consortium.has_role(alice.address, Role.AUDITOR)
    assert not consortium.has_role(alice.address, Role.COORDINATOR)
    assert consortium.has_role(bob.address, Role.COORDINATOR)
    assert not consortium.has_role(bob.address, Role(0))
    outsider = Account.create().address
    assert consortium.holders_of([alice.address, bob.address, outsider], Role.INSTITUTION) == {alice.address}
    assert consortium.holders_of([alice.address.lower(), bob.address], Role.COORDINATOR) == {bob.address}
    assert consortium.holders_of([], Role.INSTITUTION) == set()
    consortium.remove_member(admin, alice.address)
    assert consortium.holders_of([alice.address], Role.INSTITUTION) == set()


@pytest.mark.parametrize("change", [
    lambda c, who, other: c.add_member(who, other.address, "x", Role.INSTITUTION),
    lambda c, who, other: c.remove_member(who, other.address),
    lambda c, who, other: c.set_roles(who, other.address, Role.AUDITOR),
])
def test_only_the_admin_changes_membership(setup, change):
    backend, consortium, admin, alice, bob = setup
    consortium.add_member(admin, alice.address, "A", Role.INSTITUTION)
    consortium.add_member(admin, bob.address, "B", Role.INSTITUTION)
    before = backend.stats.transactions
    with pytest.raises(TransactionReverted, match=r"^Consortium\.\w+ reverted: only admin$"):
        change(consortium, alice, bob)
    assert backend.stats.transactions == before   # refused before sending: nothing spent


@pytest.mark.parametrize("change, reason", [
    (lambda c, admin, a: c.add_member(admin, a.address, "again", Role.INSTITUTION), "already a member"),
    (lambda c, admin, a: c.add_member(admin, a.address, "none", Role(0)), "roles must not be empty"),
    (lambda c, admin, a: c.set_roles(admin, a.address, 8), "unknown role bit"),
    (lambda c, admin, a: c.add_member(admin, "0x" + "00" * 20, "zero", Role.INSTITUTION), "zero address"),
    (lambda c, admin, a: c.remove_member(admin, Account.create().address), "not a member"),
    (lambda c, admin, a: c.set_roles(admin, Account.create().address, Role.AUDITOR), "not a member"),
])
def test_invalid_changes_revert_with_their_reason(setup, change, reason):
    _, consortium, admin, alice, _ = setup
    consortium.add_member(admin, alice.address, "A", Role.INSTITUTION)
    with pytest.raises(TransactionReverted, match=reason):
        change(consortium, admin, alice)


def test_remove_then_readd_reactivates_without_listing_twice(setup):
    _, consortium, admin, alice, _ = setup
    consortium.add_member(admin, alice.address, "A", Role.INSTITUTION)
    consortium.remove_member(admin, alice.address)
    assert not consortium.is_member(alice.address)
    assert not consortium.has_role(alice.address, Role.INSTITUTION)
    assert consortium.members() == [Member(alice.address, "A", Role.INSTITUTION, False)]
    with pytest.raises(TransactionReverted, match="not a member"):
        consortium.remove_member(admin, alice.address)
    consortium.add_member(admin, alice.address, "A renamed", Role.AUDITOR)
    assert consortium.members() == [Member(alice.address, "A renamed", Role.AUDITOR, True)]


def test_membership_history_answers_was_member_at(setup):
    backend, consortium, admin, alice, bob = setup
    block = {}
    block["added"] = consortium.add_member(admin, alice.address, "A", Role.INSTITUTION)["blockNumber"]
    consortium.add_member(admin, bob.address, "B", Role.COORDINATOR)
    block["demoted"] = consortium.set_roles(admin, alice.address, Role.AUDITOR)["blockNumber"]
    block["removed"] = consortium.remove_member(admin, alice.address)["blockNumber"]
    block["back"] = consortium.add_member(admin, alice.address, "A", Role.INSTITUTION)["blockNumber"]

    events = consortium.membership_events()
    assert [(e["event"], e["member"]) for e in events] == [
        ("MemberAdded", alice.address), ("MemberAdded", bob.address), ("RolesChanged", alice.address),
        ("MemberRemoved", alice.address), ("MemberAdded", alice.address)]
    assert events[0]["name"] == "A" and events[0]["roles"] == Role.INSTITUTION
    assert events[2]["roles"] == Role.AUDITOR and events[2]["block"] == block["demoted"]

    was = consortium.was_member_at
    assert not was(alice.address, block["added"] - 1)
    assert was(alice.address, block["added"])
    assert was(alice.address, block["demoted"] - 1)
    assert not was(alice.address, block["demoted"])
    assert was(alice.address, block["demoted"], Role.AUDITOR)
    assert not was(alice.address, block["removed"], Role.AUDITOR)
    assert was(alice.address, block["back"])
    assert was(bob.address, block["back"], Role.COORDINATOR)
    assert not was(bob.address, block["back"], Role.INSTITUTION)
    # The history agrees with the contract's current view.
    assert was(alice.address, backend.w3.eth.block_number) == consortium.has_role(alice.address, Role.INSTITUTION)
