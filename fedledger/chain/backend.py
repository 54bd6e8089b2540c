"""`ChainBackend`: one web3 connection, transactions signed locally, totals of what was sent.

Keys never leave the process: every transaction is built and signed here and sent raw, so the
same code works against the embedded EVM and against any JSON-RPC node, which holds no keys.

Sending is split in two so that many members can act in the same block: `submit` signs and
sends, `PendingTx.wait` waits for the receipt. Nonces are counted here, per account, so one
account can have several transactions in flight.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eth_abi import abi
from eth_abi.exceptions import DecodingError
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.middleware import AttributeDictMiddleware
from web3.types import TxParams, TxReceipt

from fedledger.chain.artifacts import load_artifact
from fedledger.chain.records import TxStats, chain_order
from fedledger.errors import ChainError, TransactionReverted

# eth_estimateGas is exact on the nodes we know, but the state can move between estimate and
# inclusion: another member's transaction lands first and, say, makes this vote the one that
# finalizes the round, which costs several times more. Unused gas is refunded, so the limit is
# generous: a margin on the estimate plus a fixed headroom, within the block gas limit.
GAS_MARGIN = 1.25
GAS_HEADROOM = 3_000_000
RECEIPT_TIMEOUT_S = 120
# Vyper encodes `assert cond, "reason"` as a call to Error(string), like Solidity's require.
_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")

# What a transaction does: call a contract function, deploy a contract, or a plain transfer.
Action = ContractFunction | ContractConstructor | TxParams


def decode_revert_data(data: bytes) -> str | None:
    """The message of Error(string) revert data; None for anything else."""
    if data[:4] != _ERROR_STRING_SELECTOR:
        return None
    try:
        return abi.decode(["string"], data[4:])[0]
    except (DecodingError, ValueError):
        return None


def revert_reason(exc: Exception) -> str:
    """The contract's own revert message, whichever way the node reported it."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):      # some nodes nest the revert data in an error object
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            decoded = decode_revert_data(bytes.fromhex(data[2:]))
        except ValueError:
            decoded = None          # undecodable data: fall back to the node's message
        if decoded is not None:
            return decoded
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))
    quoted = re.search(r"reason string '(.*)'", message)   # Hardhat's wording
    if quoted:
        return quoted.group(1)
    return message.removeprefix("execution reverted").lstrip(": ").strip() or "no reason given"


class PendingTx:
    """A transaction handed to the node, or refused before it was sent; `wait` tells which."""

    def __init__(self, backend: ChainBackend, label: str, account: LocalAccount, tx: TxParams,
                 tx_hash: HexBytes | None, error: ChainError | None) -> None:
        self.backend = backend
        self.label = label              # "Contract.function", for messages
        self.account = account
        self.tx = tx                    # as signed (or as it would have been)
        self.hash = tx_hash             # None when it was never sent
        self._error = error
        self._receipt: TxReceipt | None = None

    def wait(self) -> TxReceipt:
        """The receipt, once mined; counts the transaction in `backend.stats` (once).

        Raises TransactionReverted with the contract's reason when it reverted, ChainError when
        the node refused it or did not mine it in time.
        """
        if self._error is not None:
            raise self._error
        if self._receipt is None:
            self._receipt = self.backend._receipt(self)
            for stats in (self.backend.stats, self.backend.stats_by_function[self.label]):
                stats.transactions += 1
                stats.gas_used += self._receipt["gasUsed"]
                stats.calldata_bytes += len(HexBytes(self.tx.get("data", b"")))
        if self._receipt["status"] != 1:
            self._error = self.backend._reverted_on_chain(self, self._receipt)
            raise self._error
        return self._receipt


# Of web3's default middleware only attrdict (receipts as attribute dicts) is of use: transactions
# are built, priced and signed here, and the validation layer asked the node for its chain id
# before every call (half of a deployed node's chain reads).
MIDDLEWARE = [(AttributeDictMiddleware, "attrdict")]


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
        self.stats_by_function: defaultdict[str, TxStats] = defaultdict(TxStats)   # "Contract.function" -> its share
        self._contract_names: dict[str, str] = {}   # address -> contract name, for error messages
        self._nonces: dict[str, int] = {}           # address -> nonce of its next transaction
        self._block_gas_limit: int | None = None     # read once, for gas limits
        self._batch: list[PendingTx] | None = None   # collecting, inside batch()

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
        receipt = self._submit(account, factory.constructor(*args), f"{contract_name}.constructor").wait()
        address = receipt["contractAddress"]
        self._contract_names[address] = contract_name
        return address

    def submit(self, account: LocalAccount, fn: ContractFunction) -> PendingTx:
        """Sign `fn` with `account`'s key and send it, without waiting for it to be mined.

        A transaction that would revert, or that the node refuses, is not sent; its PendingTx
        raises the error on `wait`, and the account's next transaction reuses the nonce.
        """
        return self._submit(account, fn, self._label(fn))

    def transact(self, account: LocalAccount, fn: ContractFunction) -> TxReceipt | PendingTx:
        """Sign `fn` with `account`'s key, send it and wait for its receipt; inside `batch`, send
        it without waiting and return its PendingTx.

        Raises TransactionReverted with the contract's reason when the call would revert (inside
        a batch: when it is known before the transaction is sent, as on the embedded chain).
        """
        pending = self.submit(account, fn)
        if self._batch is None or pending.hash is None:
            return pending.wait()
        self._batch.append(pending)
        return pending

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Members acting in the same block: inside, `transact` sends without waiting (on the
        embedded chain the transactions share one block). Leaving waits for all of them and
        raises the first failure once every one was waited for."""
        if self._batch is not None:      # already collecting: the outer batch waits
            yield
            return
        pending: list[PendingTx] = []
        self._batch = pending
        try:
            yield
        finally:
            self._batch = None
        failures = []
        for tx in pending:
            try:
                tx.wait()
            except ChainError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def transact_all(self, calls: Sequence[tuple[LocalAccount, ContractFunction]]) -> list[TxReceipt]:
        """Send every call, then wait for all: on the embedded chain they share one block.

        Calls are sent in order and each is judged on its own: when some revert or are refused,
        the others still land, and the first failure is raised once all were waited for.
        """
        if not calls:
            return []
        fees = self._fee_params()    # one block's worth of calls: one fee quote
        pending = [self._submit(account, fn, self._label(fn), fees) for account, fn in calls]
        receipts, failures = [], []
        for index, tx in enumerate(pending):
            try:
                receipts.append(tx.wait())
            except ChainError as exc:
                failures.append((index, tx, exc))
        if failures:
            index, tx, exc = failures[0]
            others = f"; {len(failures) - 1} more of the batch failed" if len(failures) > 1 else ""
            raise type(exc)(f"{exc} (call {index + 1} of {len(calls)}, from {tx.account.address}{others})")
        return receipts

    def call(self, fn: ContractFunction) -> Any:
        """Evaluate a view function; a revert becomes TransactionReverted with its reason."""
        return self.read(("call", fn.address, fn.fn_name, repr(fn.args)), lambda: self._evaluate(fn))

    def view(self, contract: Contract, name: str, *args: Any) -> Any:
        """`call` of `contract`'s view function `name` on `args`, building web3's function object
        (which costs more than a read at hand) only when the read is not at hand."""
        return self.read(("call", contract.address, name, repr(args)),
                         lambda: self._evaluate(getattr(contract.functions, name)(*args)))

    def _evaluate(self, fn: ContractFunction) -> Any:
        try:
            return fn.call()
        except self.revert_errors as exc:
            raise TransactionReverted(f"{self._label(fn)} reverted: {revert_reason(exc)}") from None

    def contract_logs(self, address: str) -> list[Any]:
        """Every log the contract at `address` emitted, undecoded, in chain order."""
        return sorted(self.w3.eth.get_logs({"address": address, "fromBlock": 0, "toBlock": "latest"}), key=chain_order)

    def logs(self, event: Any, filters: dict[str, Any] | None, from_block: int) -> list[Any]:
        """The logs of contract event `event` (web3's `contract.events.Name`) matching
        `filters`, from block `from_block` to the latest, in chain order."""
        return sorted(event.get_logs(from_block=from_block, to_block="latest", argument_filters=filters),
                      key=chain_order)

    def read(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """`compute()`, a read of the latest block's state named by `key`. A chain that knows
        when its head moves (the embedded one) answers a read repeated at the same head from memory."""
        return compute()

    def block_number(self) -> int:
        """The number of the latest mined block."""
        return self.w3.eth.block_number

    def advance_blocks(self, n: int) -> None:
        """Mine `n` blocks (none if `n` <= 0), so that deadlines counted in blocks pass."""
        raise NotImplementedError

    def fund(self, addresses: Sequence[str], wei: int) -> None:
        """Make each address hold at least `wei`, for gas."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able description that `open_chain` reconnects from."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (and, embedded, flush the persisted chain)."""

    # --- sending ---------------------------------------------------------------------------

    def _label(self, fn: ContractFunction) -> str:
        """A call's "Contract.function", for messages."""
        return f"{self._contract_names.get(fn.address, 'contract')}.{fn.fn_name}"

    def _top_up(self, funder: LocalAccount, addresses: Sequence[str], wei: int) -> None:
        """Send each address what it lacks to hold `wei`, from `funder`."""
        pending = []
        for address in map(Web3.to_checksum_address, addresses):
            missing = wei - self.w3.eth.get_balance(address)
            if missing > 0:
                pending.append(self._submit(funder, {"to": address, "value": missing}, f"funding {address}"))
        for tx in pending:
            tx.wait()

    def _submit(self, account: LocalAccount, action: Action, label: str, fees: TxParams | None = None) -> PendingTx:
        base: TxParams = {"from": account.address, "chainId": self.chain_id}
        try:
            gas = self._gas_limit(account, action, label)
            tx = _build(action, {**base, **(fees or self._fee_params()), "gas": gas,
                                 "nonce": self._next_nonce(account.address)})
        except ChainError as exc:
            return PendingTx(self, label, account, base, None, exc)
        signed = account.sign_transaction(tx)
        try:
            tx_hash = self._send_raw(account, signed, label)
        except TransactionReverted as exc:
            # dropped before inclusion (embedded), or mined and failed (a node that executes at
            # once, like Hardhat): ask the node for the next nonce rather than guess
            self._nonces.pop(account.address, None)
            return PendingTx(self, label, account, tx, None, exc)
        except BaseException as exc:
            self._nonces.pop(account.address, None)   # unsure what the node kept: ask it next time
            if isinstance(exc, ChainError):
                return PendingTx(self, label, account, tx, None, exc)
            raise
        self._nonces[account.address] = tx["nonce"] + 1
        return PendingTx(self, label, account, tx, tx_hash, None)

    def _next_nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._nonces[address] = self._pending_nonce(address)
        return self._nonces[address]

    # --- what each kind of chain does its own way --------------------------------------------

    def _pending_nonce(self, address: str) -> int:
        """The node's count of `address`'s transactions, pending ones included."""
        return self.w3.eth.get_transaction_count(address, "pending")

    def _gas_limit(self, account: LocalAccount, action: Action, label: str) -> int:
        """Estimate, with a margin. Estimating first is what surfaces the revert reason: a mined
        failing transaction only says "status 0"."""
        try:
            if isinstance(action, dict):
                estimate = self.w3.eth.estimate_gas({**action, "from": account.address})
            else:
                estimate = action.estimate_gas({"from": account.address})
        except self.revert_errors as exc:
            raise TransactionReverted(f"{label} reverted: {revert_reason(exc)}") from None
        except self.refusal_errors as exc:
            raise self._refused(label, account, exc) from None
        if self._block_gas_limit is None:
            self._block_gas_limit = self.w3.eth.get_block("latest")["gasLimit"]
        return max(estimate, min(int(estimate * GAS_MARGIN) + GAS_HEADROOM, self._block_gas_limit))

    def _fee_params(self) -> TxParams:
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:    # a node without EIP-1559 (e.g. a free-gas private network)
            return {"gasPrice": self.w3.eth.gas_price}
        return dynamic_fees(base_fee, self.w3.eth.max_priority_fee)

    def _send_raw(self, account: LocalAccount, signed: SignedTransaction, label: str) -> HexBytes:
        try:
            return HexBytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except self.revert_errors as exc:
            raise TransactionReverted(f"{label} reverted: {revert_reason(exc)}") from None
        except self.refusal_errors as exc:
            # A node that runs the transaction at once (Hardhat's automine) reports one that the
            # state changed under since its gas estimate as an error: it reverted, not refused.
            message = _node_message(exc)
            if "reverted" in message:
                raise TransactionReverted(f"{label} reverted: {revert_reason(exc)}") from None
            raise self._refused(label, account, exc) from None

    def _receipt(self, pending: PendingTx) -> TxReceipt:
        try:
            return self.w3.eth.wait_for_transaction_receipt(pending.hash, timeout=RECEIPT_TIMEOUT_S,
                                                            poll_latency=0.05)
        except TimeExhausted:
            raise ChainError(f"{pending.label}: transaction {pending.hash.to_0x_hex()} not mined within "
                             f"{RECEIPT_TIMEOUT_S} s; is the node producing blocks?") from None

    def _reverted_on_chain(self, pending: PendingTx, receipt: TxReceipt) -> TransactionReverted:
        """The reason a mined transaction failed, from running it again on its parent block's
        state (a transaction before it in the same block may be what made it fail)."""
        where = f"in transaction {pending.hash.to_0x_hex()}"
        call: TxParams = {key: pending.tx[key] for key in ("from", "to", "data", "value", "gas") if key in pending.tx}
        try:
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)
        except self.revert_errors as exc:
            return TransactionReverted(f"{pending.label} reverted: {revert_reason(exc)} ({where})")
        except self.refusal_errors:
            pass
        return TransactionReverted(f"{pending.label} reverted on chain {where} (out of gas, or the state "
                                   "changed after the gas estimate)")

    def _refused(self, label: str, account: LocalAccount, exc: Exception) -> ChainError:
        message = _node_message(exc)
        # py-evm, Hardhat and geth word it differently; it is by far the usual refusal.
        if any(words in message.lower() for words in ("afford", "enough funds", "insufficient funds")):
            return ChainError(f"{label}: {account.address} holds too little ether to pay for gas "
                              f"({self.w3.eth.get_balance(account.address)} wei); fund it first")
        return ChainError(f"{label}: the node refused the transaction: {message}")


def _build(action: Action, params: TxParams) -> TxParams:
    """The complete transaction: with every field given, web3 asks the node nothing."""
    if isinstance(action, dict):
        return {**action, **params}
    return action.build_transaction(params)


def dynamic_fees(base_fee: int, tip: int) -> TxParams:
    # Twice the base fee rides out several full blocks in a row.
    return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip}


def _node_message(exc: Exception) -> str:
    """The first line of the node's own error message."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    message = str(message or getattr(exc, "message", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
