"""`RpcChain`: the same contracts on any Ethereum JSON-RPC node (Hardhat, Besu, Geth...).

The node holds no keys. Gas money comes from a funder key given here, or, on development nodes,
from their balance-setting methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint, RPCResponse

from fedledger.chain.backend import MIDDLEWARE, ChainBackend
from fedledger.errors import ChainError, ChainUnreachable

PROBE_TIMEOUT_S = 3.0
# Connecting fails fast; answering may take a while on a busy node (eth_getLogs over a long chain).
REQUEST_TIMEOUT_S = (PROBE_TIMEOUT_S, 60.0)
SET_BALANCE_METHODS = ("hardhat_setBalance", "anvil_setBalance")


class RpcChain(ChainBackend):
    """A chain reached over HTTP JSON-RPC; transactions are signed here and sent raw."""

    kind = "rpc"

    def __init__(self, url: str, funder_key: str | None = None) -> None:
        """Connect to `url`, failing within seconds with ChainUnreachable if no node answers.

        `funder_key` is the private key of a funded account that `fund` pays from.
        """
        self.url = url
        try:
            self._funder = Account.from_key(funder_key) if funder_key else None
        except (ValueError, TypeError):   # never echo the key itself
            raise ChainError("funder_key is not a private key (64 hex characters, optionally 0x-prefixed)") from None
        probe(url)
        super().__init__(Web3(_Provider(url, request_kwargs={"timeout": REQUEST_TIMEOUT_S}), middleware=MIDDLEWARE))

    def fund(self, addresses: Sequence[str], wei: int) -> None:
        """Top addresses up to `wei`: from the funder key, else by a dev node's setBalance."""
        if self._funder is not None:
            self._top_up(self._funder, addresses, wei)
            return
        for method in SET_BALANCE_METHODS:
            try:
                for address in addresses:
                    self._set_balance(method, Web3.to_checksum_address(address), wei)
                return
            except _MethodMissingError:
                continue
        raise ChainError(f"the node at {self.url} cannot mint test ether ({' or '.join(SET_BALANCE_METHODS)}); "
                         "give RpcChain a funder_key: the private key of an account with ether")

    def advance_blocks(self, n: int) -> None:
        """Mine `n` blocks on a development node (hardhat_mine, else evm_mine n times)."""
        if n <= 0:
            return
        try:
            self._dev_request("hardhat_mine", [hex(n)])    # Hardhat and Anvil: n blocks in one call
            return
        except _MethodMissingError:
            pass
        try:
            for _ in range(n):
                self._dev_request("evm_mine", [])
        except _MethodMissingError:
            raise ChainError(f"the node at {self.url} cannot mine on demand (hardhat_mine or evm_mine); "
                             "on a real network, wait for the blocks instead") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rpc_url": self.url, "chain_id": self.chain_id}

    def _set_balance(self, method: str, address: str, wei: int) -> None:
        if self.w3.eth.get_balance(address) < wei:
            self._dev_request(method, [address, hex(wei)])

    def _dev_request(self, method: str, params: list[Any]) -> None:
        """Call a development-node method; _MethodMissingError if the node lacks it."""
        error = self.w3.provider.make_request(method, params).get("error")
        if not error:
            return
        message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        if (isinstance(error, dict) and error.get("code") == -32601) or "not supported" in message \
                or "not found" in message or "does not exist" in message:
            raise _MethodMissingError(message)
        raise ChainError(f"{method} failed on the node at {self.url}: {message.splitlines()[0]}")


class _MethodMissingError(Exception):
    """The node does not implement a JSON-RPC method."""


class _Provider(HTTPProvider):
    """An HTTPProvider whose lost connections are ChainUnreachable (after web3's own retries)."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = "no answer in time" if isinstance(exc, requests.Timeout) else "connection lost"
            raise ChainUnreachable(f"the JSON-RPC node at {self.endpoint_uri} stopped answering "
                                   f"({method}: {reason})") from None


def probe(url: str) -> None:
    """Ask for eth_chainId once, quickly and without retries; ChainUnreachable if no answer."""
    def unreachable(reason: str) -> ChainUnreachable:
        return ChainUnreachable(f"no Ethereum JSON-RPC node answers at {url}: {reason}")

    try:
        response = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                                 timeout=PROBE_TIMEOUT_S)
    except requests.Timeout:
        raise unreachable(f"no answer within {PROBE_TIMEOUT_S:g} s") from None
    except requests.ConnectionError as exc:
        raise unreachable("connection refused" if "refused" in str(exc).lower() else "cannot connect") from None
    except requests.RequestException as exc:
        raise unreachable(type(exc).__name__) from None
    if response.status_code != 200:
        raise unreachable(f"HTTP {response.status_code}")
    try:
        int(response.json()["result"], 16)
    except (ValueError, KeyError, TypeError):
        raise unreachable("the answer is not a JSON-RPC eth_chainId result") from None

