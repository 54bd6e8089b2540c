"""`LocalConsortium`: a whole consortium on this machine, one OS process per member.

What `fedledger demo` runs and what the fault tests drive: keys, a roster, `consortium init`
against a JSON-RPC chain, and one `fedledger node` process per member, which can be killed and
started again one by one. The processes share nothing but the chain and HTTPS. An auditor
member (no node) holds the key the demo audits and watches the nodes with: they answer members only.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.chain import Consortium, open_chain
from fedledger.config import Config
from fedledger.deploy.client import MemberClient
from fedledger.deploy.consortium import ConsortiumFile, MemberEntry, init_consortium
from fedledger.deploy.devchain import free_loopback_port
from fedledger.deploy.keys import create_keystore, load_keystore
from fedledger.errors import FedLedgerError
from fedledger.protocol.setup import load_clients

STATUS_TIMEOUT_S = (2.0, 2.0)
AUDITOR = "auditor"
POLL_SECONDS = 0.3     # how often each node looks at the chain


class LocalConsortium:
    """Members, keys and node files under `directory` (new or empty), on the chain at `rpc_url`."""

    def __init__(self, directory: Path, cfg: Config, rpc_url: str, poll_seconds: float = POLL_SECONDS) -> None:
        self.dir = directory
        self.cfg = cfg
        self.rpc_url = rpc_url
        self.poll_seconds = poll_seconds
        self.processes: dict[str, subprocess.Popen] = {}
        self.members: list[MemberEntry] = []      # those that run a node
        self.consortium: ConsortiumFile | None = None
        self._client: MemberClient | None = None

    @property
    def consortium_dir(self) -> Path:
        return self.dir / "consortium"

    def create(self) -> ConsortiumFile:
        """Keys and a roster for every institution (and, loose, a coordinator); deploy the study."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "keys").mkdir(mode=0o700, exist_ok=True)
        coordinator = [("coordinator", "coordinator")] if self.cfg.study.architecture == "loose" else []
        for name, role in coordinator + [(c.name, "institution") for c in load_clients(self.cfg)]:
            account = self._new_key(name)
            self.members.append(MemberEntry(name, account.address, f"https://127.0.0.1:{free_loopback_port()}", role))
            self._write_node_file(name)
        auditor = MemberEntry(AUDITOR, self._new_key(AUDITOR).address, "", "auditor")
        self.consortium = init_consortium(self.members + [auditor], self.cfg, self.rpc_url, Account.create(),
                                          self.consortium_dir)
        return self.consortium

    def _new_key(self, name: str) -> LocalAccount:
        # each member its own password, as separate sites would have: one file does not open every key
        password = secrets.token_hex(16)
        fd = os.open(self.password_file(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        return create_keystore(self.dir / "keys" / f"{name}.json", password)

    def auditor(self) -> LocalAccount:
        """The auditor member's key: it may read every node, every update included."""
        return load_keystore(self.dir / "keys" / f"{AUDITOR}.json", self.password_file(AUDITOR).read_text())

    def _write_node_file(self, name: str) -> None:
        (self.dir / "nodes").mkdir(exist_ok=True)
        # a CSV or image study's institution reads its own files, named in the study config
        data = self.cfg.data
        files = [(key, self.cfg.resolve_path(table[name])) for key, table in
                 (("data", data.clients), ("test_data", data.test_clients)) if name in table]
        (self.dir / "nodes" / f"{name}.toml").write_text(
            "[node]\n"
            f'name = "{name}"\n'
            'consortium = "../consortium"\n'
            f'keystore = "../keys/{name}.json"\n'
            f'password_file = "../keys/{name}.password"\n'
            f'state_dir = "../state/{name}"\n'
            f"poll_seconds = {self.poll_seconds}\n"
            + "".join(f"{key} = {json.dumps(str(path))}\n" for key, path in files))

    def password_file(self, name: str) -> Path:
        """The file holding member `name`'s keystore password (its owner alone reads it)."""
        return self.dir / "keys" / f"{name}.password"

    def node_file(self, name: str) -> Path:
        return self.dir / "nodes" / f"{name}.toml"

    def state_dir(self, name: str) -> Path:
        return self.dir / "state" / name

    def endpoint(self, name: str) -> str:
        return next(m.endpoint for m in self.members if m.name == name)

    def start(self, name: str) -> None:
        """Start `name`'s node process (logging to logs/NAME.log, appended across restarts)."""
        (self.dir / "logs").mkdir(exist_ok=True)
        # every member shares this machine's cores: one torch thread each unless told otherwise
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        with (self.dir / "logs" / f"{name}.log").open("a") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "fedledger", "node", str(self.node_file(name))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def start_all(self) -> None:
        for m in self.members:
            self.start(m.name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to `name`'s node and wait for it to exit; returns its exit status."""
        proc = self.processes[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        return self._reap(name)

    def _reap(self, name: str) -> int:
        proc = self.processes.pop(name)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every running node (a clean shutdown); their exit statuses."""
        if self._client is not None:
            self._client.consortium.backend.close()
            self._client = None
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        return {name: self._reap(name) for name in list(self.processes)}

    def node_status(self, name: str) -> dict[str, Any] | None:
        """The node's /status document, asked as the auditor; None while it does not answer."""
        if self._client is None:
            if self.consortium is None:
                raise FedLedgerError("no consortium yet: create() it first")
            members = Consortium(open_chain(self.consortium.chain, None), self.consortium.contracts["consortium"])
            self._client = MemberClient(members, {m.endpoint: m.address for m in self.members}, self.auditor())
        return self._client.get_json(self.endpoint(name), "/status", STATUS_TIMEOUT_S)

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        return {m.name: self.node_status(m.name) for m in self.members}

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll `condition` until it holds; FedLedgerError naming `what` (and any node that died)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            dead = [name for name, proc in self.processes.items() if proc.poll() is not None]
            if dead:
                raise FedLedgerError(f"while waiting for {what}: node(s) {', '.join(dead)} exited; see "
                                     f"{self.dir / 'logs'}")
            if time.monotonic() > deadline:
                raise FedLedgerError(f"{what} did not happen within {timeout_s:.0f} s; see {self.dir / 'logs'}")
            time.sleep(0.3)

    def all_done(self) -> bool:
        """Every running node reports the study complete."""
        return all((s or {}).get("done") for name, s in self.statuses().items() if name in self.processes)

    def log_text(self, name: str) -> str:
        path = self.dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
