"""A development chain for trying a consortium out on one machine: a Hardhat node on loopback.

Blocks are mined for every transaction (automine) and also on a timer, so that deadlines
counted in blocks pass while members are silent, as they would on a real network.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from fedledger.chain.rpc import probe
from fedledger.errors import ChainError, ChainUnreachable, ConfigError

HARDHAT_DIR = Path(__file__).resolve().parents[2] / "hardhat"
STARTUP_TIMEOUT_S = 60


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hardhat_binary() -> Path:
    """The Hardhat installed by setup.sh (or named by FEDLEDGER_HARDHAT)."""
    path = Path(os.environ.get("FEDLEDGER_HARDHAT") or HARDHAT_DIR / "node_modules" / ".bin" / "hardhat")
    if not path.exists():
        raise ConfigError(f"Hardhat is not installed ({path} is missing): run ./setup.sh with Node.js and npm "
                          "on the PATH, or give the URL of a running JSON-RPC node")
    return path


def _answers(url: str) -> bool:
    try:
        probe(url)
    except ChainUnreachable:
        return False
    return True


class HardhatNode:
    """`hardhat node` on a free loopback port, logging to `log_path`; `stop` ends it."""

    def __init__(self, log_path: Path, block_interval_ms: int = 0) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:   # a file, not a pipe: the node logs every request and must never block
            self.proc = subprocess.Popen([str(hardhat_binary()), "node", "--hostname", "127.0.0.1",
                                          "--port", str(self.port)],
                                         cwd=HARDHAT_DIR, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         env={**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"},
                                         start_new_session=True)
        try:
            self._wait_until_answering()
            if block_interval_ms:
                self._request("evm_setIntervalMining", [block_interval_ms])
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
                why = f"exited with code {self.proc.returncode}" if self.proc.poll() is not None \
                    else f"did not answer within {STARTUP_TIMEOUT_S} s"
                raise ChainError(f"the Hardhat node {why}:\n{tail}")
            time.sleep(0.2)

    def _request(self, method: str, params: list) -> None:
        reply = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                              timeout=10).json()
        if "error" in reply:
            raise ChainError(f"{method} failed on the Hardhat node: {reply['error']}")

    def stop(self) -> None:
        """End the node and anything it spawned (its own process group)."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> HardhatNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
