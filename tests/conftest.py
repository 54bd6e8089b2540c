"""Fixtures shared by the whole suite: a Hardhat JSON-RPC node on loopback for integration tests."""

import os

import pytest

from fedledger.deploy.devchain import HARDHAT_DIR, HardhatNode


@pytest.fixture(scope="session")
def hardhat_installed() -> None:
    """Skip (locally) or fail (in CI) when the Hardhat node is not installed."""
    if not (HARDHAT_DIR / "node_modules" / ".bin" / "hardhat").exists():
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("hardhat/node_modules is missing: CI must install it (`./setup.sh --dev` runs npm ci)")
        pytest.skip("Hardhat is not installed: run `./setup.sh --dev` (npm ci in hardhat/) for the JSON-RPC tests")


@pytest.fixture(scope="session")
def hardhat_url(tmp_path_factory, hardhat_installed):
    """URL of a Hardhat node started for this test session (hardhat@2.29.1 from hardhat/)."""
    with HardhatNode(tmp_path_factory.mktemp("hardhat") / "node.log") as node:
        yield node.url


class SecureNet:
    """Members of a consortium on a real embedded EVM (a loose study, started by its coordinator),
    and their nodes' endpoints: TLS certificates recorded on chain, requests checked by the same
    Guard a deployed node uses."""

    def __init__(self, tmp_path):
        from eth_account import Account

        from fedledger.chain import Consortium, EmbeddedChain, LooseStudy, Role

        self.tmp_path = tmp_path
        self.chain = EmbeddedChain.create(None)
        self.admin = Account.create()
        self.chain.fund([self.admin.address], 10**20)
        self.consortium = Consortium.deploy(self.chain, self.admin)
        self.coordinator = self.member(Role.COORDINATOR)
        self.study = LooseStudy.deploy(self.chain, self.admin, self.consortium)
        self.study.start_study(self.coordinator, "11" * 32, "22" * 32)
        self.servers = []
        self.endpoints = {}    # url -> member address
        self.updates = {}      # url -> the node's UpdateAccess (tag an update as its notice would)

    def member(self, role=None):
        """A new funded account, admitted with `role` (default INSTITUTION); False: a stranger."""
        from eth_account import Account

        from fedledger.chain import Role

        account = Account.create()
        self.chain.fund([account.address], 10**20)
        if role is not False:
            self.consortium.add_member(self.admin, account.address, account.address[:10], role or Role.INSTITUTION)
        return account

    def serve(self, owner, store, notice=lambda round, kind: None, status=dict, roles_ttl_s=5.0, **kwargs):
        """Start `owner`'s node serving `store`; its base URL (https)."""
        from fedledger.deploy.access import Guard, Roster, UpdateAccess
        from fedledger.deploy.auth import RequestVerifier
        from fedledger.deploy.client import consortium_domain
        from fedledger.deploy.devchain import free_loopback_port
        from fedledger.deploy.server import NodeServer
        from fedledger.deploy.tls import node_certificate, server_context

        state = self.tmp_path / f"node-{owner.address}"
        certificate = node_certificate(state, "test")
        self.consortium.set_certificate(owner, certificate.fingerprint)
        updates = UpdateAccess(self.study, state / "updates.tags")
        guard = Guard(RequestVerifier(consortium_domain(self.consortium), owner.address),
                      Roster(self.consortium, roles_ttl_s), updates)
        server = NodeServer("127.0.0.1", free_loopback_port(), store, notice, status, server_context(certificate),
                            guard, **kwargs)
        server.start()
        self.servers.append(server)
        url = f"https://127.0.0.1:{server.address[1]}"
        self.endpoints[url] = owner.address
        self.updates[url] = updates
        return url

    def client(self, account):
        """A MemberClient of every node started so far, signing with `account` (None: unsigned)."""
        from fedledger.deploy.client import MemberClient

        return MemberClient(self.consortium, dict(self.endpoints), account)

    def stop(self):
        import threading

        # stop() waits for serve_forever's poll (up to 0.5 s): stop them all at once
        stoppers = [threading.Thread(target=server.stop) for server in self.servers]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()


@pytest.fixture
def secure_net(tmp_path):
    """A SecureNet; its servers are stopped afterwards."""
    net = SecureNet(tmp_path)
    yield net
    net.stop()


@pytest.fixture(autouse=True, scope="session")
def _heads_in_a_scratch_home(tmp_path_factory):
    """`fedledger run` records chain heads in the user's data directory: tests (and the processes
    they start) keep theirs in a scratch one."""
    os.environ["FEDLEDGER_HOME"] = str(tmp_path_factory.mktemp("fedledger-home"))
