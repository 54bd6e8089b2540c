"""Fixtures shared by the whole suite: a Hardhat JSON-RPC node on loopback for integration tests."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

HARDHAT_DIR = Path(__file__).resolve().parent.parent / "hardhat"
HARDHAT_STARTUP_TIMEOUT_S = 60


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chain_id_answers(url: str) -> bool:
    try:
        reply = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                              timeout=1)
        return "result" in reply.json()
    except (requests.RequestException, ValueError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """End the node and anything it spawned (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def hardhat_url(tmp_path_factory):
    """URL of a Hardhat node started for this test session (hardhat@2.29.1 from hardhat/)."""
    hardhat_bin = HARDHAT_DIR / "node_modules" / ".bin" / "hardhat"
    if not hardhat_bin.exists():
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("hardhat/node_modules is missing: CI must install it (`./setup.sh --dev` runs npm ci)")
        pytest.skip("Hardhat is not installed: run `./setup.sh --dev` (npm ci in hardhat/) for the JSON-RPC tests")
    port = _free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("hardhat") / "node.log"
    with log_path.open("w") as log:   # a file, not a pipe: the node logs every request and must never block
        proc = subprocess.Popen([str(hardhat_bin), "node", "--hostname", "127.0.0.1", "--port", str(port)],
                                cwd=HARDHAT_DIR, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + HARDHAT_STARTUP_TIMEOUT_S
        while not _chain_id_answers(url):
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            if proc.poll() is not None:
                pytest.fail(f"the Hardhat node exited with code {proc.returncode} before answering:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Hardhat node did not answer eth_chainId at {url} "
                            f"within {HARDHAT_STARTUP_TIMEOUT_S} s:\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
