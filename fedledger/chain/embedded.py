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
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from eth.abc import SignedTransactionAPI, StateAPI
from eth.vm.forks.cancun import get_total_blob_gas
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import ValidationError, keccak, to_canonical_address
from web3 import EthereumTesterProvider, Web3

from fedledger.chain.backend import ChainBackend
from fedledger.errors import ChainError

LOG_FORMAT = "fedledger-embedded-chain/1"
GENESIS_TIMESTAMP = 1_704_067_200                     # 2024-01-01T00:00:00Z
GENESIS_BALANCE = 10**9 * 10**18                       # a billion ether: fund() never runs dry
# A well-known key, on purpose: the embedded chain is a local simulation, and anyone replaying
# it must be able to rebuild the same genesis. Never use this key on a real network.
FUNDER: LocalAccount = Account.from_key(keccak(b"fedledger embedded chain: genesis funding account"))

_ZERO_ADDRESS = b"\x00" * 20


class _DeterministicBackend(PyEVMBackend):
    """eth-tester's py-evm backend with reproducible blocks, reporting each block it mines."""

    def __init__(self) -> None:
        self.on_block: Callable[[dict[str, Any]], None] | None = None
        self._pending_raw: list[bytes] = []
        super().__init__(
            genesis_parameters=PyEVMBackend.generate_genesis_params({"timestamp": GENESIS_TIMESTAMP}),
            genesis_state={to_canonical_address(FUNDER.address): {
                "balance": GENESIS_BALANCE, "nonce": 0, "code": b"", "storage": {}}},
        )
        self.chain.gas_estimator = _estimate_in_one_run

    def send_raw_transaction(self, raw_transaction: bytes) -> bytes:
        tx_hash = super().send_raw_transaction(raw_transaction)
        self._pending_raw.append(bytes(raw_transaction))   # only once py-evm has accepted it
        return tx_hash

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = _ZERO_ADDRESS) -> tuple[bytes, ...]:
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
            self._pending_raw = []
            hashes.append(block.hash)
        return tuple(hashes)


class EmbeddedChain(ChainBackend):
    """An EVM inside this process; with a state directory, it outlives the process."""

    kind = "embedded"
    revert_errors = (*ChainBackend.revert_errors, TransactionFailed)
    refusal_errors = (*ChainBackend.refusal_errors, ValidationError)   # py-evm's, raised in process

    def __init__(self, evm: _DeterministicBackend, state_dir: Path | None) -> None:
        """Use `create` or `open`."""
        self._evm = evm
        self.state_dir = state_dir
        self._log: TextIO | None = None
        super().__init__(Web3(EthereumTesterProvider(EthereumTester(evm))))
        # eth-tester runs calls without a sender from an unfunded account and charges it gas.
        self.w3.eth.default_account = FUNDER.address
        if state_dir is not None:
            evm.on_block = self._append

    @classmethod
    def create(cls, state_dir: Path | None) -> EmbeddedChain:
        """A new chain at genesis, persisted under `state_dir` (None: in memory only)."""
        chain = cls(_DeterministicBackend(), Path(state_dir) if state_dir is not None else None)
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
        if not isinstance(meta, dict) or meta.get("format") != LOG_FORMAT:
            raise ChainError(f"{state_dir}/chain.json is not a {LOG_FORMAT} chain")
        evm = _DeterministicBackend()
        genesis = evm.chain.get_canonical_block_by_number(0).hash.hex()
        if meta.get("genesis_hash") != genesis:
            raise ChainError(f"persisted chain in {state_dir} differs at block 0 (genesis): "
                             "made by another FedLedger version, or altered")
        for index, line in enumerate(lines):
            _replay(evm, state_dir, index + 1, line)
        head = meta.get("head")
        if not isinstance(head, dict) or _hash_at(evm, head.get("number")) != head.get("hash"):
            recorded = head.get("number") if isinstance(head, dict) else None
            raise ChainError(f"persisted chain in {state_dir} ends at block {len(lines)} but was closed at "
                             f"block {recorded} with another hash: blocks were removed or altered")
        return cls(evm, state_dir)

    def fund(self, addresses: Sequence[str], wei: int) -> None:
        """Top addresses up to `wei` from the genesis funding account."""
        self._top_up(FUNDER, addresses, wei)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rpc_url": None, "chain_id": self.chain_id}

    def close(self) -> None:
        """Flush the block log and record the head, so that truncating the log is detected.

        A chain only read since it was opened is left untouched (an auditor may lack write access).
        """
        if self._log is not None:
            self._log.close()
            self._log = None
            self._write_meta()

    def _append(self, block: dict[str, Any]) -> None:
        if self._log is None:   # opened lazily: an auditor that only reads never writes
            self._log = (self.state_dir / "blocks.jsonl").open("a")
        self._log.write(json.dumps(block, separators=(",", ":")) + "\n")
        self._log.flush()

    def _write_meta(self) -> None:
        head = self._evm.chain.get_canonical_head()
        meta = {"format": LOG_FORMAT, "chain_id": self.chain_id,
                "genesis_hash": self._evm.chain.get_canonical_block_by_number(0).hash.hex(),
                "head": {"number": head.block_number, "hash": head.hash.hex()}}
        tmp = self.state_dir / "chain.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, self.state_dir / "chain.json")


def _estimate_in_one_run(state: StateAPI, transaction: SignedTransactionAPI) -> int:
    """The gas a transaction consumes when offered all the gas its sender can pay for.

    py-evm's default estimator bisects (about 13 executions) and dominated the cost of a
    transaction here; one execution is enough because the client adds a margin, which also
    covers the 1/64 of gas withheld from nested calls. A revert raises, reason included.
    Capping the offer at the sender's means (as geth does) lets a modestly funded account
    estimate at all: py-evm makes the sender able to pay for the whole offer up front.
    """
    fee = getattr(transaction, "max_fee_per_gas", None) or transaction.gas_price
    means = max(0, state.get_balance(transaction.sender) - transaction.value)
    gas = min(state.gas_limit, means // fee) if fee else state.gas_limit
    if gas < transaction.intrinsic_gas:
        raise ValidationError("the sender cannot afford even the intrinsic gas")
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=gas))
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise computation.error
    return transaction.intrinsic_gas + computation.get_gas_used()


def _replay(evm: _DeterministicBackend, state_dir: Path, line_number: int, line: str) -> None:
    """Re-mine one logged block and insist it hashes as recorded."""
    expected_number = evm.chain.header.block_number
    where = f"persisted chain in {state_dir} differs at block {expected_number} (blocks.jsonl line {line_number})"
    try:
        block = json.loads(line)
        if block["number"] != expected_number:
            raise ValueError(f"the line is for block {block['number']}")
        evm.chain.set_header_timestamp(block["timestamp"])
        for raw in block["transactions"]:
            evm.send_raw_transaction(bytes.fromhex(raw))
        (mined,) = evm.mine_blocks()
    # Anything at all may go wrong replaying an altered log (bad JSON, undecodable or invalid
    # transactions, impossible timestamps); each is the same finding for the user.
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ChainError(f"{where}: {type(exc).__name__} {detail}".rstrip()) from None
    if mined.hex() != block["hash"]:
        raise ChainError(f"{where}: replaying it gives another block hash")


def _hash_at(evm: _DeterministicBackend, number: Any) -> str | None:
    if not isinstance(number, int) or not 0 <= number < evm.chain.header.block_number:
        return None
    return evm.chain.get_canonical_block_by_number(number).hash.hex()
