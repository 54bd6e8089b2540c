"""`ChainBackend`: one web3 connection, transactions signed locally, totals of what was sent.

Keys never leave the process: every transaction is built and signed here and sent raw, so the
same code works against the embedded EVM and against any JSON-RPC node, which holds no keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import abi
from eth_abi.exceptions import DecodingError
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxParams, TxReceipt

from fedledger.chain.artifacts import load_artifact
from fedledger.chain.records import TxStats
from fedledger.errors import ChainError, TransactionReverted

# eth_estimateGas is exact on the nodes we know, but the state can move between estimate and
# inclusion (another member's transaction lands first), so leave head room.
GAS_MARGIN = 1.25
RECEIPT_TIMEOUT_S = 120
# Vyper encodes `assert cond, "reason"` as a call to Error(string), like Solidity's require.
_ERROR_STRING_SELECTOR = "0x08c379a0"


def revert_reason(exc: Exception) -> str:
    """The contract's own revert message, whichever way the node reported it."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):      # some nodes nest the revert data in an error object
        data = data.get("data")
    if isinstance(data, str) and data.startswith(_ERROR_STRING_SELECTOR):
        try:
            return abi.decode(["string"], bytes.fromhex(data[len(_ERROR_STRING_SELECTOR):]))[0]
        except (DecodingError, ValueError):
            pass                    # undecodable data: fall back to the node's message
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))
    quoted = re.search(r"reason string '(.*)'", message)   # Hardhat's wording
    if quoted:
        return quoted.group(1)
    return message.removeprefix("execution reverted").lstrip(": ").strip() or "no reason given"


class ChainBackend:
    """Base of EmbeddedChain and RpcChain: deploys, transacts and reads contracts."""

    kind: str   # "embedded" or "rpc", as describe() reports it
    # What the client raises when a call or an estimate reverts, and when the node refuses a
    # transaction outright (no money for gas, bad nonce...).
    revert_errors: tuple[type[Exception], ...] = (ContractLogicError,)
    refusal_errors: tuple[type[Exception], ...] = (Web3RPCError,)

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.chain_id: int = w3.eth.chain_id
        self.stats = TxStats()
        self._contract_names: dict[str, str] = {}   # address -> contract name, for error messages

    # --- contracts -------------------------------------------------------------------------

    def contract(self, name: str, address: str) -> Contract:
        """A web3 handle on the deployed contract `name` at `address` (checked to hold code)."""
        checksum = Web3.to_checksum_address(address)
        if not self.w3.eth.get_code(checksum):
            raise ChainError(f"no contract at {checksum} on chain {self.chain_id}; check the address")
        self._contract_names[checksum] = name
        return self.w3.eth.contract(address=checksum, abi=load_artifact(name)["abi"])

    def deploy(self, account: LocalAccount, contract_name: str, *args: Any) -> str:
        """Deploy a compiled contract from `account`; returns its checksum address."""
        artifact = load_artifact(contract_name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self._call_and_send(account, factory.constructor(*args), f"{contract_name}.constructor")
        address = receipt["contractAddress"]
        self._contract_names[address] = contract_name
        return address

    def transact(self, account: LocalAccount, fn: ContractFunction) -> TxReceipt:
        """Sign `fn` with `account`'s key, send it and wait for its receipt.

        Raises TransactionReverted with the contract's reason when the call would revert.
        """
        name = self._contract_names.get(fn.address, "contract")
        return self._call_and_send(account, fn, f"{name}.{fn.fn_name}")

    def call(self, fn: ContractFunction) -> Any:
        """Evaluate a view function; a revert becomes TransactionReverted with its reason."""
        try:
            return fn.call()
        except self.revert_errors as exc:
            name = self._contract_names.get(fn.address, "contract")
            raise TransactionReverted(f"{name}.{fn.fn_name} reverted: {revert_reason(exc)}") from None

    def fund(self, addresses: Sequence[str], wei: int) -> None:
        """Make each address hold at least `wei`, for gas."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able description that `open_chain` reconnects from."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (and, embedded, flush the persisted chain)."""

    # --- sending ---------------------------------------------------------------------------

    def _call_and_send(self, account: LocalAccount, fn: ContractFunction | ContractConstructor,
                       label: str) -> TxReceipt:
        gas = self._estimate(account, label, lambda: fn.estimate_gas({"from": account.address}))
        return self._sign_and_send(account, fn.build_transaction(self._tx_params(account, gas)), label)

    def _top_up(self, funder: LocalAccount, addresses: Sequence[str], wei: int) -> None:
        """Send each address what it lacks to hold `wei`, from `funder`."""
        for address in addresses:
            missing = wei - self.w3.eth.get_balance(Web3.to_checksum_address(address))
            if missing > 0:
                tx: TxParams = {"to": Web3.to_checksum_address(address), "value": missing, "from": funder.address}
                label = f"funding {address}"
                gas = self._estimate(funder, label, lambda tx=tx: self.w3.eth.estimate_gas(tx))
                self._sign_and_send(funder, {**tx, **self._tx_params(funder, gas)}, label)

    def _estimate(self, account: LocalAccount, label: str, estimate: Callable[[], int]) -> int:
        """Run a gas estimate; reverts and refusals become FedLedger errors.

        Estimating first is what surfaces the revert reason: a mined failing transaction only
        says "status 0".
        """
        try:
            return estimate()
        except self.revert_errors as exc:
            raise TransactionReverted(f"{label} reverted: {revert_reason(exc)}") from None
        except self.refusal_errors as exc:
            raise self._refused(label, account, exc) from None

    def _tx_params(self, account: LocalAccount, gas_estimate: int) -> TxParams:
        params: TxParams = {
            "from": account.address,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": self.chain_id,
            "gas": int(gas_estimate * GAS_MARGIN),
        }
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:    # a node without EIP-1559 (e.g. a free-gas private network)
            params["gasPrice"] = self.w3.eth.gas_price
        else:                   # twice the base fee rides out several full blocks in a row
            tip = self.w3.eth.max_priority_fee
            params["maxPriorityFeePerGas"] = tip
            params["maxFeePerGas"] = 2 * base_fee + tip
        return params

    def _sign_and_send(self, account: LocalAccount, tx: TxParams, label: str) -> TxReceipt:
        signed = account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S,
                                                                poll_latency=0.05)
        except self.refusal_errors as exc:
            raise self._refused(label, account, exc) from None
        except TimeExhausted:
            raise ChainError(f"{label}: transaction {signed.hash.to_0x_hex()} not mined within "
                             f"{RECEIPT_TIMEOUT_S} s; is the node producing blocks?") from None
        self.stats.transactions += 1
        self.stats.gas_used += receipt["gasUsed"]
        self.stats.calldata_bytes += len(Web3.to_bytes(hexstr=tx.get("data", "0x")))
        if receipt["status"] != 1:
            raise TransactionReverted(f"{label} reverted on chain in transaction {signed.hash.to_0x_hex()} "
                                      "(out of gas, or the state changed after the gas estimate)")
        return receipt

    def _refused(self, label: str, account: LocalAccount, exc: Exception) -> ChainError:
        message = _node_message(exc)
        # py-evm, Hardhat and geth word it differently; it is by far the usual refusal.
        if any(words in message.lower() for words in ("afford", "enough funds", "insufficient funds")):
            return ChainError(f"{label}: {account.address} holds too little ether to pay for gas "
                              f"({self.w3.eth.get_balance(account.address)} wei); fund it first")
        return ChainError(f"{label}: the node refused the transaction: {message}")


def _node_message(exc: Exception) -> str:
    """The first line of the node's own error message."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    message = str(message or getattr(exc, "message", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
