"""Sending without waiting: pending transactions, batches, local nonces, blocks mined on demand.

Every test here runs on the embedded EVM and on the Hardhat node; nothing is mocked.
"""

import json

import pytest
from eth_account import Account

from fedledger.chain import Consortium, EmbeddedChain, Role, RpcChain
from fedledger.chain.embedded import _DeterministicBackend
from fedledger.errors import ChainError, TransactionReverted

from .conftest import FUNDS


@pytest.fixture(params=["embedded", "hardhat"])
def backend(request):
    chain = EmbeddedChain.create(None) if request.param == "embedded" else RpcChain(
        request.getfixturevalue("hardhat_url"))
    yield chain
    chain.close()


def _admins(backend, n):
    """`n` funded admins, each with its own consortium: senders that do not depend on each other."""
    admins = [Account.create() for _ in range(n)]
    backend.fund([a.address for a in admins], FUNDS)
    return admins, [Consortium.deploy(backend, a) for a in admins]


def _add(consortium, address, name="member"):
    return consortium.contract.functions.add_member(address, name, int(Role.INSTITUTION))


def test_submit_sends_and_wait_gives_the_receipt(backend):
    (admin,), (consortium,) = _admins(backend, 1)
    alice = Account.create().address
    head, sent = backend.block_number(), backend.stats.transactions
    pending = backend.submit(admin, _add(consortium, alice))
    assert pending.hash is not None
    if backend.kind == "embedded":   # mined only once someone needs the receipt
        assert backend.block_number() == head
    receipt = pending.wait()
    assert receipt["status"] == 1 and receipt["blockNumber"] == head + 1
    assert pending.wait() == receipt
    assert backend.stats.transactions == sent + 1    # counted once, however often waited for
    assert consortium.is_member(alice)


def test_one_account_has_several_transactions_in_flight(backend):
    (admin,), (consortium,) = _admins(backend, 1)
    people = [Account.create().address for _ in range(3)]
    pending = [backend.submit(admin, _add(consortium, p, f"member {i}")) for i, p in enumerate(people)]
    first = pending[0].tx["nonce"]
    assert [p.tx["nonce"] for p in pending] == [first, first + 1, first + 2]
    receipts = [p.wait() for p in pending]
    assert all(r["status"] == 1 for r in receipts)
    assert [m.address for m in consortium.members()] == people
    if backend.kind == "embedded":
        assert len({r["blockNumber"] for r in receipts}) == 1


def test_transact_all_lands_every_call(backend):
    admins, consortia = _admins(backend, 3)
    people = [Account.create().address for _ in range(4)]
    calls = [(admins[0], _add(consortia[0], people[0])), (admins[1], _add(consortia[1], people[1])),
             (admins[0], _add(consortia[0], people[2])), (admins[2], _add(consortia[2], people[3]))]
    sent = backend.stats.transactions
    receipts = backend.transact_all(calls)
    assert [r["status"] for r in receipts] == [1, 1, 1, 1]
    assert backend.stats.transactions == sent + 4
    blocks = [r["blockNumber"] for r in receipts]
    if backend.kind == "embedded":
        assert len(set(blocks)) == 1 and len(backend.w3.eth.get_block(blocks[0])["transactions"]) == 4
    else:                            # Hardhat mines each on arrival: in order, still all sent first
        assert blocks == sorted(blocks)
    assert consortia[0].members()[1].address == people[2]
    assert backend.transact_all([]) == []


def test_a_reverted_call_in_a_batch_gives_its_reason_and_the_others_land(backend):
    admins, consortia = _admins(backend, 2)
    outsider = Account.create()
    backend.fund([outsider.address], FUNDS)
    people = [Account.create().address for _ in range(5)]
    calls = [(admins[0], _add(consortia[0], people[0])),
             (outsider, _add(consortia[0], people[1])),      # not the admin
             (admins[1], _add(consortia[1], people[2])),
             (outsider, _add(consortia[1], people[3])),      # again, with the nonce the first left free
             (admins[0], _add(consortia[0], people[4]))]
    sent = backend.stats.transactions
    with pytest.raises(TransactionReverted, match=rf"^Consortium\.add_member reverted: only admin \(call 2 of 5, "
                                                  rf"from {outsider.address}; 1 more of the batch failed\)$"):
        backend.transact_all(calls)
    assert backend.stats.transactions == sent + 3
    assert [m.address for m in consortia[0].members()] == [people[0], people[4]]
    assert [m.address for m in consortia[1].members()] == [people[2]]
    Consortium.deploy(backend, outsider)     # its nonce is still in step


def test_advance_blocks_mines_empty_blocks(backend):
    (admin,), (consortium,) = _admins(backend, 1)
    head = backend.block_number()
    backend.advance_blocks(3)
    assert backend.block_number() == head + 3
    backend.advance_blocks(0)
    backend.advance_blocks(-1)
    assert backend.block_number() == head + 3
    assert backend.transact(admin, _add(consortium, Account.create().address))["blockNumber"] == head + 4


def test_nonces_resync_after_a_refusal(backend):
    (admin,), (consortium,) = _admins(backend, 1)
    backend.transact(admin, _add(consortium, Account.create().address))
    # The same key sends a transaction another way: the backend's count falls behind the chain's.
    nonce = backend.w3.eth.get_transaction_count(admin.address)
    transfer = {"to": Account.create().address, "value": 1, "gas": 21_000, "nonce": nonce,
                "chainId": backend.chain_id, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 0}
    backend.w3.eth.send_raw_transaction(admin.sign_transaction(transfer).raw_transaction)
    late = Account.create().address
    with pytest.raises(ChainError, match=r"^Consortium\.add_member: the node refused the transaction: .*[Nn]once"):
        backend.transact(admin, _add(consortium, late))
    assert backend.transact(admin, _add(consortium, late))["status"] == 1   # asked the node again


def test_a_transaction_that_fails_once_mined_reports_its_reason(hardhat_url):
    """Estimated on one state, mined on a later one: the reason comes from re-running it on the
    state its block started from."""
    backend = RpcChain(hardhat_url)
    (admin,), (consortium,) = _admins(backend, 1)
    alice = Account.create().address
    consortium.add_member(admin, alice, "alice", Role.INSTITUTION)
    node = backend.w3.provider.make_request
    node("evm_setAutomine", [False])
    try:
        removal = backend.submit(admin, consortium.contract.functions.remove_member(alice))
        change = backend.submit(admin, consortium.contract.functions.set_roles(alice, int(Role.AUDITOR)))
        # Both were estimated with alice a member; the change is held back for a block, then resent.
        node("hardhat_dropTransaction", [change.hash.to_0x_hex()])
        node("evm_mine", [])
        backend.w3.eth.send_raw_transaction(admin.sign_transaction(change.tx).raw_transaction)
        node("evm_mine", [])
        assert removal.wait()["status"] == 1
        with pytest.raises(TransactionReverted, match=r"^Consortium\.set_roles reverted: not a member \(in transaction"):
            change.wait()
    finally:
        node("evm_setAutomine", [True])


def test_blocks_persist_and_replay_as_py_evm_builds_them_one_transaction_at_a_time(tmp_path):
    """Batches, a dropped reverting call, empty blocks and a transaction never waited for all
    survive reopening; py-evm's own per-transaction block building gives the same hashes."""
    chain = EmbeddedChain.create(tmp_path / "chain", "py-evm")     # py-evm block building is what is checked
    admins, consortia = _admins(chain, 2)
    people = [Account.create().address for _ in range(3)]
    with pytest.raises(TransactionReverted, match="only admin"):
        chain.transact_all([(admins[0], _add(consortia[0], people[0])), (admins[1], _add(consortia[0], people[1])),
                            (admins[1], _add(consortia[1], people[1]))])
    chain.advance_blocks(2)
    chain.submit(admins[0], _add(consortia[0], people[2]))
    chain.close()                            # mines the submitted transaction
    hashes = [chain.w3.eth.get_block(n)["hash"].hex() for n in range(chain.block_number() + 1)]

    again = EmbeddedChain.open(tmp_path / "chain")
    assert [again.w3.eth.get_block(n)["hash"].hex() for n in range(again.block_number() + 1)] == hashes
    assert [m.address for m in Consortium(again, consortia[0].address).members()] == [people[0], people[2]]

    stock = _DeterministicBackend()
    for line in (tmp_path / "chain" / "blocks.jsonl").read_text().splitlines():
        block = json.loads(line)
        stock.chain.set_header_timestamp(block["timestamp"])
        for raw in block["transactions"]:
            stock.chain.apply_transaction(stock.chain.get_vm().get_transaction_builder().decode(bytes.fromhex(raw)))
        assert stock.mine_blocks()[0].hex() == block["hash"]
    assert len((tmp_path / "chain" / "blocks.jsonl").read_text().splitlines()) == len(hashes) - 1
