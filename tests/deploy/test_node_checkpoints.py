"""Members' signed checkpoints of the chain head (issue 14, finding 5): given one member's file,
the audit tells the chain that member saw from a chain rebuilt without its key."""

import json

from eth_account import Account

from fedledger.audit.checkpoints import append_checkpoint, last_checkpointed_round, sign_checkpoint, verify_checkpoints
from fedledger.audit.report import AuditReport
from tests.conftest import SecureNet


def _verify(net, path, members=None, ledger=None):
    report = AuditReport("checkpoints")
    members = {m.address.lower() for m in net.members} if members is None else members
    verify_checkpoints(report, net.chain, ledger or net.study.address, members, [path])
    return report


def _net(tmp_path):
    net = SecureNet(tmp_path)
    net.members = [net.member(), net.member()]
    return net


def test_a_members_checkpoints_hold_on_its_chain_and_not_on_a_rebuilt_one(tmp_path):
    net = _net(tmp_path)
    path = tmp_path / "checkpoints.jsonl"
    append_checkpoint(path, sign_checkpoint(net.members[0], net.chain, net.study.address, 1))
    net.chain.advance_blocks(2)
    append_checkpoint(path, sign_checkpoint(net.members[0], net.chain, net.study.address, 2))
    assert last_checkpointed_round(path) == 2
    report = _verify(net, path)
    assert report.ok, report.summary()

    rebuilt = _net(tmp_path / "rebuilt")           # the same setup again: other keys, other blocks
    rebuilt.chain.advance_blocks(2)
    # even naming the same ledger address and the same member, its blocks are not the ones signed
    report = _verify(rebuilt, path, {net.members[0].address.lower()}, ledger=net.study.address)
    assert [(f.check, f.detail.split(":")[-1].strip()) for f in report.failures] == [
        ("the chain holds every block a member signed", "it is not the chain the member saw")]
    assert "of another chain or study" in _verify(rebuilt, path, {net.members[0].address.lower()}).failures[0].detail


def test_a_checkpoint_not_signed_by_a_member_or_edited_fails(tmp_path):
    net = _net(tmp_path)
    outsider = tmp_path / "outsider.jsonl"
    append_checkpoint(outsider, sign_checkpoint(Account.create(), net.chain, net.study.address, 1))
    assert "not signed by a member" in _verify(net, outsider).failures[0].detail
    edited = tmp_path / "edited.jsonl"
    checkpoint = sign_checkpoint(net.members[1], net.chain, net.study.address, 1)
    append_checkpoint(edited, {**checkpoint, "round": 7})
    assert "not signed by a member" in _verify(net, edited).failures[0].detail
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text(json.dumps({"member": 1}) + "\n")
    assert _verify(net, garbage).failures[0].detail == "a line is not a checkpoint"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert _verify(net, empty).failures[0].detail == "the file holds no checkpoint"
