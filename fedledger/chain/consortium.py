"""`Consortium`: typed access to Consortium.vy, membership history included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend
from fedledger.chain.records import Member, Role, chain_order

MEMBERSHIP_EVENTS = ("MemberAdded", "MemberRemoved", "RolesChanged")


class Consortium:
    """The consortium contract at `address`: who is a member, in which roles, since when."""

    def __init__(self, backend: ChainBackend, address: str) -> None:
        self.backend = backend
        self.contract = backend.contract("Consortium", address)
        self.address: str = self.contract.address

    @classmethod
    def deploy(cls, backend: ChainBackend, admin: LocalAccount) -> Consortium:
        """A new, empty consortium administered by `admin`."""
        return cls(backend, backend.deploy(admin, "Consortium"))

    def add_member(self, admin: LocalAccount, member: str, name: str, roles: Role) -> TxReceipt:
        """Admit `member` (or reactivate a removed one) with `roles`."""
        return self.backend.transact(admin, self.contract.functions.add_member(
            Web3.to_checksum_address(member), name, int(roles)))

    def remove_member(self, admin: LocalAccount, member: str) -> TxReceipt:
        return self.backend.transact(admin, self.contract.functions.remove_member(Web3.to_checksum_address(member)))

    def set_roles(self, admin: LocalAccount, member: str, roles: Role) -> TxReceipt:
        return self.backend.transact(admin, self.contract.functions.set_roles(
            Web3.to_checksum_address(member), int(roles)))

    def set_certificate(self, member: LocalAccount, fingerprint: str) -> TxReceipt:
        """Record, from `member`'s own account, the SHA-256 (hex) of its node's TLS certificate."""
        return self.backend.transact(member, self.contract.functions.set_certificate(bytes.fromhex(fingerprint)))

    def certificate_of(self, address: str) -> str | None:
        """The hex SHA-256 of `address`'s node certificate; None if it set none or is not active."""
        raw = bytes(self.backend.call(self.contract.functions.certificate_of(Web3.to_checksum_address(address))))
        return None if raw == bytes(32) else raw.hex()

    def admin(self) -> str:
        return self.backend.call(self.contract.functions.admin())

    def is_member(self, address: str) -> bool:
        """True while `address` is an active member."""
        return self.backend.call(self.contract.functions.is_member(Web3.to_checksum_address(address)))

    def has_role(self, address: str, role: Role) -> bool:
        """True while `address` is an active member holding every flag in `role`."""
        return self.backend.call(self.contract.functions.has_role(Web3.to_checksum_address(address), int(role)))

    def roles_of(self, address: str) -> Role | None:
        """The roles of `address`; None unless it is an active member."""
        address = Web3.to_checksum_address(address)
        if not self.is_member(address):
            return None
        return Role(self.backend.call(self.contract.functions.member_roles(address)))

    def holders_of(self, addresses: Sequence[str], role: Role) -> set[str]:
        """The addresses (of at most 128) that are active members holding every flag in `role`."""
        addresses = [Web3.to_checksum_address(a) for a in addresses]
        if not addresses:
            return set()
        flags = self.backend.call(self.contract.functions.holders_of(addresses, int(role)))
        return {a for a, holds in zip(addresses, flags) if holds}

    def members(self) -> list[Member]:
        """Everyone ever admitted, in order of first admission; removed members have active=False."""
        fns = self.contract.functions
        result = []
        for index in range(self.backend.call(fns.member_count())):
            address = self.backend.call(fns.member_at(index))
            result.append(Member(address=address, name=self.backend.call(fns.member_name(address)),
                                 roles=Role(self.backend.call(fns.member_roles(address))),
                                 active=self.backend.call(fns.is_member(address))))
        return result

    def membership_events(self) -> list[dict[str, Any]]:
        """Every membership change in chain order.

        Each is {"event", "member", "block", "position"} plus "name" and "roles" where the
        event carries them (roles as Role).
        """
        events = self.contract.events
        by_topic = {bytes.fromhex(getattr(events, name).topic[2:]): getattr(events, name)
                    for name in MEMBERSHIP_EVENTS}
        result = []
        for log in self.backend.contract_logs(self.address):
            event = by_topic.get(bytes(log["topics"][0])) if log["topics"] else None
            if event is None:
                continue
            decoded = event.process_log(log)
            entry: dict[str, Any] = {"event": decoded["event"], "member": decoded["args"]["member"],
                                     "block": decoded["blockNumber"], "position": chain_order(log)}
            if "name" in decoded["args"]:
                entry["name"] = decoded["args"]["name"]
            if "roles" in decoded["args"]:
                entry["roles"] = Role(decoded["args"]["roles"])
            result.append(entry)
        return result

    def was_member_at(self, address: str, block: int, role: Role = Role.INSTITUTION) -> bool:
        """Whether `address` held `role` as an active member once block `block` was done.

        Rebuilt from the events alone, so it needs no archive node.
        """
        return held_role_at(self.membership_events(), address, block, role)


def held_role_at(events: list[dict[str, Any]], address: str, block: int, role: Role = Role.INSTITUTION) -> bool:
    """`Consortium.was_member_at` over already fetched `membership_events()` (an auditor asks
    for many members and blocks; fetching the history once keeps that linear)."""
    address = Web3.to_checksum_address(address)
    active, roles = False, Role(0)
    for event in events:
        if event["block"] > block:
            break
        if event["member"] != address:
            continue
        if event["event"] == "MemberAdded":
            active, roles = True, event["roles"]
        elif event["event"] == "MemberRemoved":
            active = False
        else:
            roles = event["roles"]
    return active and role != 0 and roles & role == role
