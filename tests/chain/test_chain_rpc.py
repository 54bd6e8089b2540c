"""The same contracts and client over JSON-RPC: a Hardhat node that holds none of our keys."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from eth_account import Account

from fedledger.chain import Consortium, Role, RpcChain, LooseStudy, open_chain
from fedledger.errors import ChainError, ChainUnreachable, TransactionReverted

from .conftest import FUNDS, digest, set_up_study

# Hardhat's well-known development account #0 (public test key, funded at genesis).
HARDHAT_ACCOUNT_0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]   # released on close: nothing listens there


def test_a_closed_port_is_reported_quickly_on_one_line():
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(ChainUnreachable) as caught:
        RpcChain(url)
    assert time.monotonic() - started < 3
    assert str(caught.value) == f"no Ethereum JSON-RPC node answers at {url}: connection refused"


def test_an_http_server_that_is_not_a_node_is_reported():
    class NotANode(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotANode)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(ChainUnreachable, match="HTTP 404"):
            RpcChain(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def test_study_on_hardhat(hardhat_url):
    backend = RpcChain(hardhat_url)      # funds through hardhat_setBalance: no node key used
    assert backend.chain_id == 31337
    study = set_up_study(backend)
    parent, blocks = digest("model 0"), []
    for n in (1, 2):
        blocks.append(study.ledger.anchor_round(study.coordinator, study.record(n, parent))["blockNumber"])
        parent = digest(f"model {n}")
    with pytest.raises(TransactionReverted, match=r"^StudyLedger\.anchor_round reverted: wrong round number$"):
        study.ledger.anchor_round(study.coordinator, study.record(5, parent))
    with pytest.raises(TransactionReverted, match=r"^Consortium\.add_member reverted: only admin$"):
        study.consortium.add_member(study.coordinator, study.outsider.address, "x", Role.INSTITUTION)

    # A second connection, as an auditor would make from the run's description, reads it all back.
    auditor = open_chain(backend.describe(), None)
    ledger = LooseStudy(auditor, study.ledger.address)
    consortium = Consortium(auditor, study.consortium.address)
    assert ledger.round_count() == 2
    assert [(r.round, r.model, b) for r, b in ledger.anchored_rounds()] == [
        (1, digest("model 1"), blocks[0]), (2, digest("model 2"), blocks[1])]
    assert ledger.get_round(2) == ledger.anchored_rounds()[1][0]
    assert ledger.get_round(2).participants == tuple(sorted((i.address for i in study.institutions),
                                                            key=lambda a: int(a, 16)))
    assert all(consortium.was_member_at(i.address, blocks[0]) for i in study.institutions)
    assert [m.name for m in consortium.members()] == ["coordinator"] + [f"hospital {i}" for i in range(4)]
    assert backend.describe() == {"kind": "rpc", "rpc_url": hardhat_url, "chain_id": 31337}
    assert backend.stats.transactions == 2 + 5 + 1 + 2   # deployments, members, start, anchors


def test_funding_from_a_funder_key(hardhat_url):
    backend = RpcChain(hardhat_url, funder_key=HARDHAT_ACCOUNT_0_KEY)
    newcomer = Account.create()
    backend.fund([newcomer.address], FUNDS)
    assert backend.w3.eth.get_balance(newcomer.address) == FUNDS
    assert backend.stats.transactions == 1
    backend.fund([newcomer.address], FUNDS)    # already holds enough: nothing sent
    assert backend.stats.transactions == 1

    poor = Account.create()
    with pytest.raises(ChainError, match=rf"^funding 0x\w+: {poor.address} holds too little ether"):
        RpcChain(hardhat_url, funder_key=poor.key.hex()).fund([Account.create().address], FUNDS)


def test_set_balance_funding_tops_up_only(hardhat_url):
    backend = RpcChain(hardhat_url)
    newcomer = Account.create()
    backend.fund([newcomer.address], FUNDS)
    backend.fund([newcomer.address], FUNDS // 2)
    assert backend.w3.eth.get_balance(newcomer.address) == FUNDS
    assert backend.stats.transactions == 0


def test_unfunded_account_and_lost_node_fail_clearly(hardhat_url):
    backend = RpcChain(hardhat_url)
    broke = Account.create()
    with pytest.raises(ChainError, match=rf"^Consortium\.constructor: {broke.address} holds too little ether"):
        Consortium.deploy(backend, broke)
    # The node goes away mid-run (pointing the provider at a closed port stands in for it).
    backend.w3.provider.endpoint_uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ChainUnreachable, match="stopped answering"):
        backend.w3.eth.get_block_number()


def test_a_malformed_funder_key_is_refused_without_echoing_it():
    with pytest.raises(ChainError) as caught:
        RpcChain(f"http://127.0.0.1:{_closed_port()}", funder_key="0xnot-a-key-at-all")
    assert "not-a-key" not in str(caught.value)
