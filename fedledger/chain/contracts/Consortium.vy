# pragma version 0.4.3
# pragma evm-version cancun
"""
@title FedLedger consortium membership
@notice Who belongs to the consortium and in which roles. The deployer is the admin and the
        only one who may change membership; every change is an event, so anyone can replay
        the membership history (for example to ask "was X an institution at block B").
"""

# Roles are bit flags so that one member can hold several.
INSTITUTION: constant(uint256) = 1  # may submit updates and appear as a round participant
COORDINATOR: constant(uint256) = 2  # may start studies and anchor rounds
AUDITOR: constant(uint256) = 4
ALL_ROLES: constant(uint256) = 7

MAX_MEMBERS: constant(uint256) = 4096


struct MemberInfo:
    name: String[64]
    roles: uint256
    active: bool
    listed: bool  # already in _list: a re-added member must not be listed twice


event MemberAdded:
    member: indexed(address)
    name: String[64]
    roles: uint256

event MemberRemoved:
    member: indexed(address)

event RolesChanged:
    member: indexed(address)
    roles: uint256

event CertificateSet:
    member: indexed(address)
    fingerprint: bytes32


admin: public(address)
_members: HashMap[address, MemberInfo]
_list: DynArray[address, MAX_MEMBERS]  # everyone ever added, active or not
_certificates: HashMap[address, bytes32]  # SHA-256 of each member's node TLS certificate (DER)


@deploy
def __init__():
    self.admin = msg.sender


@internal
@view
def _check_admin():
    assert msg.sender == self.admin, "only admin"


@internal
@pure
def _check_roles(roles: uint256):
    assert roles != 0, "roles must not be empty"
    assert roles & ~ALL_ROLES == 0, "unknown role bit (allowed: 1, 2, 4)"


@external
def add_member(member: address, name: String[64], roles: uint256):
    """
    @notice Admit `member`, or reactivate a removed member with a new name and roles.
    """
    self._check_admin()
    self._check_roles(roles)
    assert member != empty(address), "zero address"
    info: MemberInfo = self._members[member]
    assert not info.active, "already a member"
    if not info.listed:
        self._list.append(member)
    self._members[member] = MemberInfo(name=name, roles=roles, active=True, listed=True)
    log MemberAdded(member=member, name=name, roles=roles)


@external
def remove_member(member: address):
    self._check_admin()
    assert self._members[member].active, "not a member"
    self._members[member].active = False
    log MemberRemoved(member=member)


@external
def set_roles(member: address, roles: uint256):
    self._check_admin()
    self._check_roles(roles)
    assert self._members[member].active, "not a member"
    self._members[member].roles = roles
    log RolesChanged(member=member, roles=roles)


@external
def set_certificate(fingerprint: bytes32):
    """
    @notice Record the SHA-256 fingerprint of the TLS certificate the caller's node serves with;
            other members pin it when they connect. Only the member itself may set its own, so
            no one else (not even the admin) can make its peers trust another server.
    """
    assert self._members[msg.sender].active, "not a member"
    self._certificates[msg.sender] = fingerprint
    log CertificateSet(member=msg.sender, fingerprint=fingerprint)


@external
@view
def certificate_of(member: address) -> bytes32:
    """
    @notice The member's node certificate fingerprint; zero if it set none or is not active
            (a removed member's node is trusted by no one).
    """
    if not self._members[member].active:
        return empty(bytes32)
    return self._certificates[member]


@external
@view
def is_member(member: address) -> bool:
    return self._members[member].active


@external
@view
def has_role(member: address, role: uint256) -> bool:
    """
    @notice True if `member` is active and holds every flag in `role` (which must not be 0).
    """
    info: MemberInfo = self._members[member]
    return info.active and role != 0 and info.roles & role == role


@external
@view
def holders_of(candidates: DynArray[address, 128], role: uint256) -> DynArray[bool, 128]:
    """
    @notice For each candidate, whether it is active and holds every flag in `role`: one call
            per round instead of one per update.
    """
    result: DynArray[bool, 128] = []
    for member: address in candidates:
        info: MemberInfo = self._members[member]
        result.append(info.active and role != 0 and info.roles & role == role)
    return result


@external
@view
def member_count() -> uint256:
    """
    @notice How many addresses were ever added (removed members stay listed, inactive).
    """
    return len(self._list)


@external
@view
def member_at(index: uint256) -> address:
    assert index < len(self._list), "index out of range"
    return self._list[index]


@external
@view
def member_name(member: address) -> String[64]:
    return self._members[member].name


@external
@view
def member_roles(member: address) -> uint256:
    return self._members[member].roles
