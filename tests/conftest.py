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
