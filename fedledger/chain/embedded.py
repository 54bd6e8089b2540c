"""`EmbeddedChain`: an in-process EVM (py-evm through eth-tester), optionally persisted to disk.

Persistence is a block log, not a database dump. Genesis is fixed (timestamp, one funding
account), and the only other inputs that shape a block are its timestamp and the raw signed
transactions in it: prevrandao, which eth-tester draws at random, is derived from the parent
hash instead. So the state directory holds

    chain.json      format, chain id, genesis hash and, from the last close(), the head block
    blocks.jsonl    one line per mined block: number, timestamp, raw transactions, block hash

and `open` replays the log into a fresh EVM, checking every block hash against the recorded one.
Editing a transaction, a timestamp or the order changes a hash, and removing blocks from the end
leaves the log short of the recorded head: either way `open` raises ChainError naming the block.
Appending one line per block keeps the cost per transaction to one small write.

Transactions are executed once, when submitted, on top of the block being built; one that
reverts is dropped again at once (as a node's gas estimate would refuse it) and nothing
estimates gas. Blocks are mined only when a receipt is waited for, so a batch shares a block.

Two engines run the EVM: py-evm (the default) and revm (`fedledger.chain.revm_engine`, chosen by
`[chain] engine = "revm"` or FEDLEDGER_ENGINE=revm). Each has its own block log format, so a
chain is always reopened on the engine that made it.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, TextIO

from eth.abc import BlockAPI, BlockHeaderAPI, ComputationAPI, ReceiptAPI, SignedTransactionAPI, VirtualMachineAPI
from eth.exceptions import Revert, TransactionNotFound
from eth.vm.forks.cancun import get_total_blob_gas
from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.serializers import serialize_transaction_receipt
from eth_tester.exceptions import TransactionFailed
from eth_utils import ValidationError, keccak, to_canonical_address, to_checksum_address
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.datastructures import AttributeDict
from web3.providers import BaseProvider
from web3.types import TxParams, TxReceipt

from fedledger.chain.backend import MIDDLEWARE, Action, ChainBackend, PendingTx, decode_revert_data, dynamic_fees
from fedledger.chain.records import chain_order
from fedledger.chain.revm_engine import RevmEngine
from fedledger.errors import ChainError, TransactionReverted

LOG_FORMATS = {"py-evm": "fedledger-embedded-chain/1", "revm": "fedledger-embedded-chain/revm-1"}
DEFAULT_ENGINE = "py-evm"
ENGINE_ENV = "FEDLEDGER_ENGINE"     # picks the engine of chains created without naming one (tests, benchmarks)
CHAIN_ID = 131_277_322_940_537      # eth-tester's: both engines' chains have the same id
GENESIS_TIMESTAMP = 1_704_067_200                     # 2024-01-01T00:00:00Z
GENESIS_BALANCE = 10**9 * 10**18                       # a billion ether: fund() never runs dry
# A well-known key, on purpose: the embedded chain is a local simulation, and anyone replaying
# it must be able to rebuild the same genesis. Never use this key on a real network.
FUNDER: LocalAccount = Account.from_key(keccak(b"fedledger embedded chain: genesis funding account"))

# Every transaction is offered this much gas instead of an estimate: more than any FedLedger call
# or deployment needs, a third of the block gas limit, and 0.02 ether at most at the fee offered.
TX_GAS_LIMIT = 10_000_000

_ZERO_ADDRESS = b"\x00" * 20


class _Engine(Protocol):
    """What EmbeddedChain needs of an EVM: blocks built from raw signed transactions, mined on demand."""

    mined: int                                          # blocks mined by this process
    on_block: Callable[[dict[str, Any]], None] | None   # told of each mined block, for the log

    def provider(self) -> BaseProvider: ...

    def stage(self, raw_transaction: bytes, keep_failed: bool = False) -> tuple[bytes, str | None]:
        """Run a transaction on top of the block being built: its hash and, if it failed, why
        (dropped unless `keep_failed`); ValidationError when it cannot be included at all."""

    def building(self) -> bool: ...

    def holds(self, tx_hash: bytes) -> bool: ...

    def gas_left(self) -> int: ...

    def pending_nonce(self, address: bytes) -> int: ...

    def base_fee(self) -> int: ...

    def mine_blocks(self, num_blocks: int = 1) -> tuple[bytes, ...]: ...

    def head_number(self) -> int: ...

    def hash_at(self, number: int) -> bytes: ...

    def set_next_timestamp(self, timestamp: int) -> None: ...

    def logs(self, address: str, first: int, last: int) -> list[Any] | None:
        """Contract `address`'s logs in blocks `first`..`last`, as web3's get_logs gives them;
        None if the engine keeps no index of them (they are then asked of its provider)."""


class _BlockBuilder:
    """The transactions of the block being built, executed on one live state.

    py-evm's MiningChain.apply_transaction merkelizes the state and rebuilds the transaction and
    receipt tries after every transaction; here that happens once, in `seal`, which leaves the
    chain's pending header exactly as applying the same transactions one by one would.
    """

    def __init__(self, vm: VirtualMachineAPI) -> None:
        self.vm = vm
        self.header = vm.get_header()
        self.transactions: list[SignedTransactionAPI] = []
        self.receipts: list[ReceiptAPI] = []

    def apply(self, transaction: SignedTransactionAPI, keep_failed: bool) -> ComputationAPI:
        """Execute `transaction`; unless `keep_failed`, one that fails leaves no trace.

        ValidationError (bad nonce, too little ether...) when it cannot be included at all.
        """
        vm, state = self.vm, self.vm.state
        vm.validate_transaction_against_header(self.header, transaction)
        state.lock_changes()    # as VirtualMachine.apply_transaction: a new transaction starts
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(transaction)
        except BaseException:
            state.revert(snapshot)
            raise
        if computation.is_error and not keep_failed:
            state.revert(snapshot)
            return computation
        receipt = vm.make_receipt(self.header, transaction, computation, state)
        vm.validate_receipt(receipt)
        self.header = vm.add_receipt_to_header(self.header, receipt)
        self.transactions.append(transaction)
        self.receipts.append(receipt)
        return computation

    def seal(self) -> BlockHeaderAPI:
        """The pending header holding the transactions, their receipts and the state after them."""
        self.vm.state.persist()
        header = self.header.copy(state_root=self.vm.state.state_root)
        return self.vm.set_block_transactions_and_withdrawals(
            self.vm.get_block(), header, self.transactions, self.receipts).header


class _DeterministicBackend(PyEVMBackend):
    """eth-tester's py-evm backend with reproducible blocks, reporting each block it mines."""

    def __init__(self) -> None:
        self.on_block: Callable[[dict[str, Any]], None] | None = None
        self.mined = 0      # blocks mined by this process: the head moved when it changes
        self._pending_raw: list[bytes] = []
        self._builder: _BlockBuilder | None = None
        self._last_block: dict[bytes, tuple[BlockAPI, list[ReceiptAPI], int]] = {}   # tx hash -> where
        self._read_block: tuple[BlockAPI, list[ReceiptAPI]] | None = None       # the last block looked up by index
        # every log mined, by contract address, as web3's get_logs gives it: eth-tester's get_logs
        # decodes every block in range and serializes every receipt in it, recovering each sender
        self._logs: dict[str, list[AttributeDict]] = {}
        super().__init__(
            genesis_parameters=PyEVMBackend.generate_genesis_params({"timestamp": GENESIS_TIMESTAMP}),
            genesis_state={to_canonical_address(FUNDER.address): {
                "balance": GENESIS_BALANCE, "nonce": 0, "code": b"", "storage": {}}},
        )

    def provider(self) -> BaseProvider:
        return EthereumTesterProvider(EthereumTester(self))

    def stage(self, raw_transaction: bytes, keep_failed: bool = False) -> tuple[bytes, str | None]:
        """Add a signed transaction to the block being built (see _BlockBuilder.apply); returns
        its hash and, if it failed, why."""
        if self._builder is None:
            self._builder = _BlockBuilder(self.chain.get_vm(self.chain.header))
        transaction = self._builder.vm.get_transaction_builder().decode(raw_transaction)
        computation = self._builder.apply(transaction, keep_failed)
        if keep_failed or not computation.is_error:
            self._pending_raw.append(bytes(raw_transaction))
        return transaction.hash, _failure(computation) if computation.is_error else None

    def base_fee(self) -> int:
        return self.chain.header.base_fee_per_gas

    def head_number(self) -> int:
        return self.chain.get_canonical_head().block_number

    def hash_at(self, number: int) -> bytes:
        return self.chain.get_canonical_block_by_number(number).hash

    def set_next_timestamp(self, timestamp: int) -> None:
        self.chain.set_header_timestamp(timestamp)

    def building(self) -> bool:
        """Whether transactions wait in the block being built."""
        return self._builder is not None and bool(self._builder.transactions)

    def gas_left(self) -> int:
        """Gas still free in the block being built."""
        header = self._builder.header if self._builder else self.chain.header
        return header.gas_limit - header.gas_used

    def pending_nonce(self, address: bytes) -> int:
        vm = self._builder.vm if self._builder else self.chain.get_vm(self.chain.header)
        return vm.state.get_nonce(address)

    def holds(self, tx_hash: bytes) -> bool:
        """Whether the transaction is in the block being built (not mined yet)."""
        return self._builder is not None and any(tx.hash == tx_hash for tx in self._builder.transactions)

    def send_raw_transaction(self, raw_transaction: bytes) -> bytes:
        # eth-tester's route (web3 callers): included even if it fails, as a node would.
        return self.stage(raw_transaction, keep_failed=True)[0]

    def get_transaction_receipt(self, transaction_hash: bytes) -> dict[str, Any]:
        # eth-tester decodes blocks from the head back to find a transaction (every log query
        # asks for each matching transaction's receipt, so an audit grew with the square of the
        # chain's length), then every receipt of its block. A mined transaction is found through
        # py-evm's transaction-hash index instead, and the last block read is kept at hand: a
        # batch, or a log query, asks for one block's receipts in turn.
        found = self._last_block.get(transaction_hash) or self._indexed(transaction_hash)
        if found is None:
            return super().get_transaction_receipt(transaction_hash)
        block, receipts, index = found
        return serialize_transaction_receipt(block, receipts, block.transactions[index], index, False,
                                             self.chain.get_vm())

    def _indexed(self, transaction_hash: bytes) -> tuple[BlockAPI, list[ReceiptAPI], int] | None:
        """A mined transaction's block, that block's receipts and its index, by hash."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
        except TransactionNotFound:
            return None
        if self._read_block is None or self._read_block[0].number != number:
            block = self.chain.get_canonical_block_by_number(number)
            self._read_block = (block, list(block.get_receipts(self.chain.chaindb)))
        block, receipts = self._read_block
        return block, receipts, index

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = _ZERO_ADDRESS) -> tuple[bytes, ...]:
        self.mined += num_blocks
        receipts = []
        if self._builder is not None:
            receipts = self._builder.receipts
            self.chain.header, self._builder = self._builder.seal(), None
        hashes = []
        for _ in range(num_blocks):
            # As eth-tester mines, except that prevrandao comes from the parent, not os.urandom.
            blob_gas = sum(get_total_blob_gas(tx) for tx in self.chain.get_block().transactions)
            block = self.chain.mine_block(coinbase=coinbase, mix_hash=keccak(self.chain.header.parent_hash),
                                          blob_gas_used=blob_gas)
            if self.on_block is not None:
                self.on_block({"number": block.number, "timestamp": block.header.timestamp,
                               "transactions": [raw.hex() for raw in self._pending_raw],
                               "hash": block.hash.hex()})
            if block.transactions and len(receipts) == len(block.transactions):
                self._last_block = {tx.hash: (block, receipts, i) for i, tx in enumerate(block.transactions)}
            elif block.transactions:    # not built here (no such path today): its receipts from the database
                receipts = list(block.get_receipts(self.chain.chaindb))
            self._index_logs(block, receipts)
            self._pending_raw, receipts = [], []
            hashes.append(block.hash)
        return tuple(hashes)

    def _index_logs(self, block: BlockAPI, receipts: list[ReceiptAPI]) -> None:
        for tx_index, (transaction, receipt) in enumerate(zip(block.transactions, receipts)):
            for log_index, log in enumerate(receipt.logs):     # numbered within its transaction, as eth-tester does
                address = to_checksum_address(log.address)
                self._logs.setdefault(address, []).append(AttributeDict({
                    "type": "mined", "logIndex": log_index, "transactionIndex": tx_index,
                    "transactionHash": HexBytes(transaction.hash), "blockHash": HexBytes(block.hash),
                    "blockNumber": block.number, "address": address, "data": HexBytes(log.data),
                    "topics": [HexBytes(topic.to_bytes(32, "big")) for topic in log.topics]}))

    def logs(self, address: str, first: int, last: int) -> list[Any] | None:
        # every block of this EVM was mined by this process (a persisted chain is replayed), so
        # the index holds every log, in block order: a query for the newest blocks skips the rest
        logs = self._logs.get(to_checksum_address(address), [])
        number = itemgetter("blockNumber")
        return logs[bisect_left(logs, first, key=number):bisect_right(logs, last, key=number)]


class EmbeddedChain(ChainBackend):
    """An EVM inside this process; with a state directory, it outlives the process."""

    kind = "embedded"
    revert_errors = (*ChainBackend.revert_errors, TransactionFailed)
    refusal_errors = (*ChainBackend.refusal_errors, ValidationError)   # py-evm's, raised in process

    def __init__(self, evm: _Engine, engine: str, state_dir: Path | None) -> None:
        """Use `create` or `open`."""
        self._evm = evm
        self.engine = engine
        self.state_dir = state_dir
        self._reads: dict[Hashable, Any] = {}
        self._reads_at = evm.mined
        self._raw_logs: dict[str, tuple[int, list[Any]]] = {}     # contract -> (last block scanned, its logs)
        self._decoded_logs: dict[tuple[str, str], tuple[int, list[Any]]] = {}   # (contract, topic) -> decoded
        self._log: TextIO | None = None
        super().__init__(Web3(evm.provider(), middleware=MIDDLEWARE))
        # eth-tester runs calls without a sender from an unfunded account and charges it gas.
        self.w3.eth.default_account = FUNDER.address
        if state_dir is not None:
            evm.on_block = self._append

    @classmethod
    def create(cls, state_dir: Path | None, engine: str = "") -> EmbeddedChain:
        """A new chain at genesis on `engine` ("py-evm" or "revm"; empty: $FEDLEDGER_ENGINE, else
        py-evm), persisted under `state_dir` (None: in memory only)."""
        engine = resolve_engine(engine)
        chain = cls(_new_engine(engine), engine, Path(state_dir) if state_dir is not None else None)
        if chain.state_dir is not None:
            if (chain.state_dir / "chain.json").exists():
                raise ChainError(f"{chain.state_dir} already holds a chain; open it with EmbeddedChain.open")
            chain.state_dir.mkdir(parents=True, exist_ok=True)
            (chain.state_dir / "blocks.jsonl").touch()
            chain._write_meta()
        return chain

    @classmethod
    def open(cls, state_dir: Path) -> EmbeddedChain:
        """Rebuild a persisted chain by replaying its block log; ChainError if it was altered."""
        state_dir = Path(state_dir)
        try:
            meta = json.loads((state_dir / "chain.json").read_text())
            lines = (state_dir / "blocks.jsonl").read_text().splitlines()
        except (OSError, ValueError) as exc:
            raise ChainError(f"no readable embedded chain in {state_dir}: {exc}") from None
        engine = next((name for name, format in LOG_FORMATS.items()
                       if isinstance(meta, dict) and meta.get("format") == format), None)
        if engine is None:
            raise ChainError(f"{state_dir}/chain.json is not a {' or '.join(LOG_FORMATS.values())} chain")
        evm = _new_engine(engine)
        if meta.get("genesis_hash") != evm.hash_at(0).hex():
            raise ChainError(f"persisted chain in {state_dir} differs at block 0 (genesis): "
                             "made by another FedLedger version, or altered")
        for index, line in enumerate(lines):
            _replay(evm, state_dir, index + 1, line)
        head = meta.get("head")
        if not isinstance(head, dict) or _hash_at(evm, head.get("number")) != head.get("hash"):
            recorded = head.get("number") if isinstance(head, dict) else None
            raise ChainError(f"persisted chain in {state_dir} ends at block {len(lines)} but was closed at "
                             f"block {recorded} with another hash: blocks were removed or altered")
        return cls(evm, engine, state_dir)

    @classmethod
    def rebuild(cls, state_dir: Path, engine: str) -> EmbeddedChain:
        """An in-memory chain on `engine` holding the persisted chain's transactions in the same
        blocks, to compare engines: block hashes are each engine's own, so none is checked."""
        chain = cls.create(None, engine)
        for line in (Path(state_dir) / "blocks.jsonl").read_text().splitlines():
            _mine_logged(chain._evm, json.loads(line))
        return chain

    def read(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        # Reads see the latest mined block, which only this process mines: until it mines
        # again, the same read gives the same answer (a failed read is not kept).
        if self._reads_at != self._evm.mined:
            self._reads, self._reads_at = {}, self._evm.mined
        if key not in self._reads:
            self._reads[key] = compute()
        return self._reads[key]

    def contract_logs(self, address: str) -> list[Any]:
        # This chain only grows (no reorganisations), so each contract's logs are read once,
        # from the blocks mined since the last query: from the engine's index where it keeps one.
        head = self.block_number()
        scanned, raw = self._raw_logs.get(address, (-1, []))
        if scanned < head:
            found = self._evm.logs(address, scanned + 1, head)
            if found is None:
                found = self.w3.eth.get_logs({"address": address, "fromBlock": scanned + 1, "toBlock": head})
            raw = raw + sorted(found, key=chain_order)
            self._raw_logs[address] = (head, raw)
        return raw

    def logs(self, event: Any, filters: dict[str, Any] | None, from_block: int) -> list[Any]:
        # each event's logs are decoded once
        address, topic = event.address, event.topic
        raw = self.contract_logs(address)
        seen, decoded = self._decoded_logs.get((address, topic), (0, []))
        if seen < len(raw):
            decoded = decoded + [event.process_log(log) for log in raw[seen:]
                                 if log["topics"] and log["topics"][0].to_0x_hex() == topic]
            self._decoded_logs[(address, topic)] = (len(raw), decoded)
        return [log for log in decoded if log["blockNumber"] >= from_block
                and all(log["args"][k] == v for k, v in (filters or {}).items())]

    def fund(self, addresses: Sequence[str], wei: int) -> None:
        """Top addresses up to `wei` from the genesis funding account."""
        self._top_up(FUNDER, addresses, wei)

    def block_number(self) -> int:
        return self._evm.head_number()

    def advance_blocks(self, n: int) -> None:
        """Mine `n` blocks (the first holds any transaction submitted and not yet mined)."""
        if n > 0:
            self._evm.mine_blocks(n)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rpc_url": None, "chain_id": self.chain_id, "engine": self.engine}

    def close(self) -> None:
        """Flush the block log and record the head, so that truncating the log is detected.

        Transactions submitted and never waited for are mined first, as a node would mine them.
        A chain only read since it was opened is left untouched (an auditor may lack write access).
        """
        if self._evm.building():
            self._evm.mine_blocks()
        if self._log is not None:
            self._log.close()
            self._log = None
            self._write_meta()

    # --- sending: straight to the EVM, executed once, no estimate ---------------------------

    def _pending_nonce(self, address: str) -> int:
        return self._evm.pending_nonce(to_canonical_address(address))

    def _gas_limit(self, account: LocalAccount, action: Action, label: str) -> int:
        return TX_GAS_LIMIT

    def _fee_params(self) -> TxParams:
        # The block being built has its base fee already; there is nobody to tip.
        return dynamic_fees(self._evm.base_fee(), 0)

    def _send_raw(self, account: LocalAccount, signed: SignedTransaction, label: str) -> HexBytes:
        if self._evm.gas_left() < TX_GAS_LIMIT:
            self._evm.mine_blocks()     # the block is full: start the next one
        try:
            tx_hash, failure = self._evm.stage(signed.raw_transaction)
        except ValidationError as exc:
            raise self._refused(label, account, exc) from None
        if failure is not None:
            raise TransactionReverted(f"{label} reverted: {failure}")
        return HexBytes(tx_hash)

    def _receipt(self, pending: PendingTx) -> TxReceipt:
        if self._evm.holds(pending.hash):
            self._evm.mine_blocks()
        return self.w3.eth.get_transaction_receipt(pending.hash)

    def _append(self, block: dict[str, Any]) -> None:
        if self._log is None:   # opened lazily: an auditor that only reads never writes
            self._log = (self.state_dir / "blocks.jsonl").open("a")
        self._log.write(json.dumps(block, separators=(",", ":")) + "\n")
        self._log.flush()

    def _write_meta(self) -> None:
        head = self._evm.head_number()
        meta = {"format": LOG_FORMATS[self.engine], "chain_id": self.chain_id,
                "genesis_hash": self._evm.hash_at(0).hex(),
                "head": {"number": head, "hash": self._evm.hash_at(head).hex()}}
        tmp = self.state_dir / "chain.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, self.state_dir / "chain.json")


def _failure(computation: ComputationAPI) -> str:
    """Why an execution failed: the contract's own message where it gave one."""
    error = computation.error
    if isinstance(error, Revert):
        output = computation.output
        return decode_revert_data(output) or (f"revert data 0x{output.hex()}" if output else "no reason given")
    return str(error) or type(error).__name__


def resolve_engine(engine: str) -> str:
    """The engine a chain created with `engine` runs on (empty: $FEDLEDGER_ENGINE, else py-evm)."""
    engine = engine or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
    if engine not in LOG_FORMATS:
        raise ChainError(f"unknown embedded chain engine {engine!r} (expected one of {', '.join(LOG_FORMATS)})")
    return engine


def _new_engine(engine: str) -> _Engine:
    if engine == "revm":
        return RevmEngine(CHAIN_ID, GENESIS_TIMESTAMP, {FUNDER.address.lower(): GENESIS_BALANCE})
    return _DeterministicBackend()


def _replay(evm: _Engine, state_dir: Path, line_number: int, line: str) -> None:
    """Re-mine one logged block and insist it hashes as recorded."""
    expected_number = evm.head_number() + 1
    where = f"persisted chain in {state_dir} differs at block {expected_number} (blocks.jsonl line {line_number})"
    try:
        block = json.loads(line)
        if block["number"] != expected_number:
            raise ValueError(f"the line is for block {block['number']}")
        mined = _mine_logged(evm, block)
    # Anything at all may go wrong replaying an altered log (bad JSON, undecodable or invalid
    # transactions, impossible timestamps); each is the same finding for the user.
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ChainError(f"{where}: {type(exc).__name__} {detail}".rstrip()) from None
    if mined.hex() != block["hash"]:
        raise ChainError(f"{where}: replaying it gives another block hash")


def _mine_logged(evm: _Engine, block: dict[str, Any]) -> bytes:
    """Mine a block of the log (its timestamp and raw transactions); returns its hash."""
    evm.set_next_timestamp(block["timestamp"])
    for raw in block["transactions"]:
        evm.stage(bytes.fromhex(raw), keep_failed=True)     # included even if it fails, as a node would
    (mined,) = evm.mine_blocks()
    return mined


def _hash_at(evm: _Engine, number: Any) -> str | None:
    if not isinstance(number, int) or not 0 <= number <= evm.head_number():
        return None
    return evm.hash_at(number).hex()
