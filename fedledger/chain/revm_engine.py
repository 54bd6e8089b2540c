"""The revm engine of the embedded chain: pyrevm (revm, a Rust EVM) behind a web3 provider.

pyrevm runs bytecode and nothing else; what a ledger needs around it is supplied here:

- transactions are raw and signed: each is decoded and its signature, chain id, nonce, fees,
  gas and balance checked before it runs, as a node would;
- gas is a node's: pyrevm's journal is never finalised, so every account and slot once touched
  would stay warm (EIP-2929) and later transactions would pay less than on any node. Each
  transaction therefore runs in a journal checkpoint that is reverted afterwards, and what it
  changed is written into revm's database, where it is cold to the next transaction;
- blocks, receipts and logs are kept here, and block hashes chain them (keccak of an RLP list
  holding the parent hash, the number, the timestamp, the base fee, the raw transactions and
  the receipts), so the block log persisted by `EmbeddedChain` is checked on replay as before.

The hardfork is Cancun, the one the contracts are compiled for and Hardhat runs (hardhat.config.js).
Reads (eth_call, balances, nonces, code) see the transactions of the block being built, as a
node's "pending" state does: revm holds one state, not one per block.

pyrevm 0.3.7 cannot be told block hashes: BLOCKHASH inside revm answers keccak of the block
number written in decimal, not the hash of that block here. Contracts that draw randomness from
blockhash (CommitteeStudy) see those numbers, which an auditor reading block hashes cannot match.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyrevm
import rlp
from eth.vm.forks.cancun.transactions import CancunTransactionBuilder
from eth_typing import Address
from eth_utils import ValidationError, keccak, to_canonical_address, to_checksum_address
from web3.providers import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from fedledger.chain.backend import decode_revert_data

SPEC_ID = "Cancun"                  # pyrevm's name for revm's SpecId::CANCUN
BLOCK_GAS_LIMIT = 30_029_122        # eth-tester's, so both engines fill blocks alike
GENESIS_BASE_FEE = 1_000_000_000    # EIP-1559's initial base fee, as eth-tester's genesis
_ZERO = "0x" + "00" * 20
_EMPTY_CODE_HASH = keccak(b"")
_CODE_PADDING = 33
# In pyrevm's debug dump of the journaled state: the accounts a transaction loaded and the slots it wrote.
_ACCOUNT = re.compile(r"(0x[0-9a-f]{40}): Account \{")
_STORAGE_CHANGE = re.compile(r"StorageChange \{ address: (0x[0-9a-f]{40}), key: (\d+),")
_REVERT_OUTPUT = re.compile(r"output: 0x([0-9a-f]*)")


@dataclass
class Receipt:
    """What a mined (or staged) transaction did."""
    tx_hash: bytes
    sender: bytes
    to: bytes | None
    status: int
    gas_used: int
    effective_gas_price: int
    logs: list[tuple[bytes, list[bytes], bytes]]        # (address, topics, data)
    contract_address: bytes | None
    tx_type: int


@dataclass
class Block:
    """A block: what its hash covers, and the receipts of its transactions."""
    number: int
    timestamp: int
    parent_hash: bytes
    base_fee: int
    raw_transactions: list[bytes] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    hash: bytes = b""

    @property
    def gas_used(self) -> int:
        return sum(r.gas_used for r in self.receipts)

    def seal(self) -> bytes:
        """Fix the block's hash: over its parent, header fields, raw transactions and what they did."""
        receipts = [[r.status, r.gas_used, r.contract_address or b"",
                     [[address, topics, data] for address, topics, data in r.logs]] for r in self.receipts]
        self.hash = keccak(rlp.encode([self.parent_hash, self.number, self.timestamp, self.base_fee,
                                       self.raw_transactions, receipts]))
        return self.hash


@dataclass
class Outcome:
    """One transaction run on revm: what a receipt and an error message need."""
    success: bool
    gas_used: int
    output: bytes                       # return data, or revert data
    logs: list[tuple[bytes, list[bytes], bytes]]
    contract_address: bytes | None
    halt: str | None = None             # why it stopped, when not by RETURN or REVERT

    def failure(self) -> str:
        """Why it failed, in the contract's own words where it gave any."""
        if self.halt:
            return self.halt
        return decode_revert_data(self.output) or (f"revert data 0x{self.output.hex()}" if self.output
                                                   else "no reason given")


class RevmEngine:
    """An EVM chain on revm: blocks built from raw signed transactions, mined on demand."""

    def __init__(self, chain_id: int, genesis_timestamp: int, genesis_alloc: dict[str, int]) -> None:
        self.chain_id = chain_id
        self.evm = pyrevm.EVM(spec_id=SPEC_ID, env=pyrevm.Env(cfg=pyrevm.CfgEnv(chain_id=chain_id)))
        for address, balance in genesis_alloc.items():
            self.evm.insert_account_info(address, pyrevm.AccountInfo(balance=balance, nonce=0))
        genesis = Block(0, genesis_timestamp, b"\x00" * 32, GENESIS_BASE_FEE)
        # the funded accounts take the place of genesis's transactions, so its hash covers them
        genesis.raw_transactions = [rlp.encode([to_canonical_address(a), b]) for a, b in sorted(genesis_alloc.items())]
        genesis.seal()
        self.blocks: list[Block] = [genesis]
        self.receipts: dict[bytes, tuple[int, int]] = {}      # tx hash -> (block number, index)
        self.pending: Block | None = None
        self.next_timestamp: int | None = None                # set by a replay
        self.on_block: Callable[[dict[str, Any]], None] | None = None
        self.mined = 0
        self._codes: set[bytes] = set()     # hashes of the code revm's database holds

    # --- the block being built -----------------------------------------------------------------

    @property
    def head(self) -> Block:
        return self.blocks[-1]

    def _building(self) -> Block:
        if self.pending is None:
            parent = self.head
            timestamp = self.next_timestamp or max(int(time.time()), parent.timestamp + 1)
            self.next_timestamp = None
            self.pending = Block(parent.number + 1, timestamp, parent.hash, _next_base_fee(parent))
            self.evm.set_block_env(pyrevm.BlockEnv(
                number=self.pending.number, timestamp=timestamp, coinbase=_ZERO, gas_limit=BLOCK_GAS_LIMIT,
                prevrandao=keccak(parent.hash), basefee=self.pending.base_fee))
        return self.pending

    def stage(self, raw: bytes, keep_failed: bool = False) -> tuple[bytes, str | None]:
        """Validate and run a raw signed transaction on top of the block being built; returns its
        hash and, if it failed, why. One that fails is dropped unless `keep_failed` (a node would
        include it; FedLedger's own sends are refused instead, as a gas estimate would).

        ValidationError when it cannot be included at all (bad signature, nonce, fees, funds...).
        """
        block = self._building()
        tx = CancunTransactionBuilder.decode(raw)
        tx.validate()       # signature and fields; the sender is recovered from the signature
        sender = tx.sender
        dynamic = hasattr(tx, "max_fee_per_gas")     # EIP-1559 fees, or a legacy gas price (also the tip)
        max_fee = tx.max_fee_per_gas if dynamic else tx.gas_price
        tip_cap = tx.max_priority_fee_per_gas if dynamic else max_fee
        if getattr(tx, "chain_id", self.chain_id) != self.chain_id:
            raise ValidationError(f"transaction for chain {tx.chain_id}, this is chain {self.chain_id}")
        account = self.account(to_checksum_address(sender))
        if tx.nonce != account.nonce:
            raise ValidationError(f"invalid nonce: expected {account.nonce}, got {tx.nonce}")
        if max_fee < block.base_fee:
            raise ValidationError(f"max fee per gas {max_fee} below the block's base fee {block.base_fee}")
        if tip_cap > max_fee:
            raise ValidationError("max priority fee per gas above max fee per gas")
        if tx.gas > BLOCK_GAS_LIMIT - block.gas_used:
            raise ValidationError(f"transaction gas {tx.gas} exceeds the gas left in the block")
        if tx.gas < tx.intrinsic_gas:
            raise ValidationError(f"insufficient gas: {tx.gas} below the intrinsic {tx.intrinsic_gas}")
        if account.balance < tx.gas * max_fee + tx.value:
            raise ValidationError(f"Sender {to_checksum_address(sender)} cannot afford txn: balance "
                                  f"{account.balance} below {tx.gas * max_fee + tx.value}")
        price = min(max_fee, block.base_fee + tip_cap)
        outcome = self._execute(sender, tx.to or None, tx.data, tx.value, tx.gas, tx.nonce, price, keep_failed)
        if outcome.success or keep_failed:
            block.raw_transactions.append(bytes(raw))
            block.receipts.append(Receipt(
                tx.hash, sender, tx.to or None, int(outcome.success), outcome.gas_used, price, outcome.logs,
                outcome.contract_address, tx.type_id or 0))
            self.receipts[tx.hash] = (block.number, len(block.receipts) - 1)
        return tx.hash, None if outcome.success else outcome.failure()

    def _execute(self, sender: Address, to: Address | None, data: bytes, value: int, gas: int, nonce: int,
                 price: int, keep: bool) -> Outcome:
        """Run one transaction in a journal checkpoint, then move what it changed into revm's
        database (cold to the next transaction); the fee is charged here, as revm's message
        call charges none."""
        evm = self.evm
        checkpoint = evm.snapshot()
        outcome = self._run(evm, to_checksum_address(sender), to, data, value, gas)
        if not (outcome.success or keep):
            evm.revert(checkpoint)
            return outcome
        dump = evm.journal_str
        accounts = {address: evm.basic(address) for address in _ACCOUNT.findall(dump)}
        slots = {(address, int(key)) for address, key in _STORAGE_CHANGE.findall(dump)}
        values = {slot: evm.storage(*slot) for slot in slots}
        evm.revert(checkpoint)
        sender_key = to_checksum_address(sender).lower()
        for address, info in accounts.items():
            balance, account_nonce = info.balance, info.nonce
            if address == sender_key:
                balance -= outcome.gas_used * price     # the base fee is burnt, the tip (none) to nobody
                account_nonce = nonce + 1
            evm.insert_account_info(address, pyrevm.AccountInfo(balance=balance, nonce=account_nonce,
                                                                 code_hash=info.code_hash, code=self._new_code(info)))
        for (address, key), slot_value in values.items():
            # Inserting a slot loads its account into the journal: undo that, keep the database write.
            inserted = evm.snapshot()
            evm.insert_account_storage(address, key, slot_value)
            evm.revert(inserted)
        return outcome

    def _new_code(self, info: pyrevm.AccountInfo) -> bytes | None:
        """The code of a contract created by the transaction, for revm's database (which keeps
        code by hash: None for code it holds already, and for an account without code)."""
        if info.code_hash == _EMPTY_CODE_HASH or info.code_hash in self._codes:
            return None
        # revm hands out analysed code, padded with 33 zero bytes; the hash is of the code itself.
        code = info.code[:-_CODE_PADDING]
        if keccak(code) != info.code_hash:
            raise ValidationError("revm's code of a new contract does not match its code hash")
        self._codes.add(info.code_hash)
        return code

    @staticmethod
    def _run(evm: pyrevm.EVM, sender: str, to: Address | None, data: bytes, value: int, gas: int) -> Outcome:
        created = None
        try:
            if to is None:
                created = to_canonical_address(evm.deploy(sender, data, value=value, gas=gas))
                output = b""
            else:
                output = evm.message_call(sender, to_checksum_address(to), data, value=value, gas=gas)
        except (RuntimeError, ValueError) as exc:
            result = evm.result
            if result is None:      # refused before running: a validation failure
                raise ValidationError(str(exc)) from None
            found = _REVERT_OUTPUT.search(str(exc))
            return Outcome(False, result.gas_used, bytes.fromhex(found.group(1)) if found else b"", [], None,
                           None if not result.is_halt else f"halted: {result.reason}")
        result = evm.result
        logs = [(to_canonical_address(log.address), [bytes.fromhex(t[2:]) for t in log.topics],
                 bytes(log.data[1])) for log in result.logs]
        return Outcome(True, result.gas_used, bytes(output), logs, created)

    # --- mining ----------------------------------------------------------------------------------

    def mine_blocks(self, n: int = 1) -> tuple[bytes, ...]:
        hashes = []
        for _ in range(n):
            block = self._building()
            block.seal()
            self.blocks.append(block)
            self.pending = None
            self.mined += 1
            if self.on_block is not None:
                self.on_block({"number": block.number, "timestamp": block.timestamp,
                               "transactions": [raw.hex() for raw in block.raw_transactions],
                               "hash": block.hash.hex()})
            hashes.append(block.hash)
        return tuple(hashes)

    def provider(self) -> RevmProvider:
        return RevmProvider(self)

    def head_number(self) -> int:
        return self.head.number

    def hash_at(self, number: int) -> bytes:
        return self.blocks[number].hash

    def logs(self, address: str, first: int, last: int) -> None:
        """None: this engine's own provider answers eth_getLogs from the blocks it keeps."""
        return None

    def set_next_timestamp(self, timestamp: int) -> None:
        """The timestamp of the next block (a replay gives the recorded one)."""
        if self.pending is not None:
            raise ValidationError("a block is being built already")
        if timestamp <= self.head.timestamp:
            raise ValidationError(f"timestamp {timestamp} not after the parent's {self.head.timestamp}")
        self.next_timestamp = timestamp

    def building(self) -> bool:
        return self.pending is not None and bool(self.pending.receipts)

    def holds(self, tx_hash: bytes) -> bool:
        found = self.receipts.get(bytes(tx_hash))
        return found is not None and self.pending is not None and found[0] == self.pending.number

    def gas_left(self) -> int:
        return BLOCK_GAS_LIMIT - (self.pending.gas_used if self.pending else 0)

    def pending_nonce(self, address: bytes) -> int:
        return self.account(to_checksum_address(address)).nonce

    def base_fee(self) -> int:
        return self._building().base_fee

    def account(self, address: str) -> pyrevm.AccountInfo:
        """An account's state after the transactions run so far, leaving it cold."""
        checkpoint = self.evm.snapshot()
        info = self.evm.basic(address)
        self.evm.revert(checkpoint)
        return info

    def call(self, sender: str, to: str, data: bytes, value: int, gas: int) -> Outcome:
        """eth_call: run without keeping anything."""
        self._building()
        checkpoint = self.evm.snapshot()
        try:
            return self._run(self.evm, sender, to_canonical_address(to), data, value, gas)
        finally:
            self.evm.revert(checkpoint)

    def code(self, address: str) -> bytes:
        checkpoint = self.evm.snapshot()
        code = self.evm.get_code(address)
        self.evm.revert(checkpoint)
        return code or b""


def _next_base_fee(parent: Block) -> int:
    """EIP-1559: the base fee moves by at most 1/8 toward keeping blocks half full."""
    target = BLOCK_GAS_LIMIT // 2
    if parent.number == 0 or parent.gas_used == target:
        return parent.base_fee
    if parent.gas_used > target:
        return parent.base_fee + max(parent.base_fee * (parent.gas_used - target) // target // 8, 1)
    return parent.base_fee - parent.base_fee * (target - parent.gas_used) // target // 8


# --- JSON-RPC ------------------------------------------------------------------------------------

def _hex(value: int) -> str:
    return hex(value)


def _data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class RevmProvider(BaseProvider):
    """The JSON-RPC methods web3 and FedLedger ask for, answered from a RevmEngine."""

    def __init__(self, engine: RevmEngine) -> None:
        super().__init__()
        self.engine = engine
        self._methods: dict[str, Callable[..., Any]] = {
            "eth_chainId": lambda: _hex(engine.chain_id),
            "eth_blockNumber": lambda: _hex(engine.head.number),
            "eth_getBlockByNumber": self._block_by_number,
            "eth_getBlockByHash": self._block_by_hash,
            "eth_getBalance": lambda address, block="latest": _hex(engine.account(address).balance),
            "eth_getTransactionCount": lambda address, block="latest": _hex(engine.account(address).nonce),
            "eth_getCode": lambda address, block="latest": _data(engine.code(address)),
            "eth_call": self._call,
            "eth_sendRawTransaction": lambda raw: _data(engine.stage(bytes.fromhex(raw[2:]), keep_failed=True)[0]),
            "eth_getTransactionReceipt": self._receipt,
            "eth_getLogs": self._logs,
            "eth_gasPrice": lambda: _hex(engine.base_fee()),
            "eth_maxPriorityFeePerGas": lambda: _hex(0),
        }

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        handler = self._methods.get(method)
        if handler is None:
            return {"jsonrpc": "2.0", "id": 0, "error": {"code": -32601, "message": f"method {method} not supported"}}
        try:
            return {"jsonrpc": "2.0", "id": 0, "result": handler(*params)}
        except _Reverted as exc:
            return {"jsonrpc": "2.0", "id": 0,
                    "error": {"code": 3, "message": f"execution reverted: {exc.outcome.failure()}",
                              "data": _data(exc.outcome.output)}}
        except ValidationError as exc:
            return {"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": str(exc)}}

    def _call(self, tx: dict[str, Any], block: Any = "latest") -> str:
        if block not in ("latest", "pending") and int(block, 16) != self.engine.head.number:
            raise ValidationError("the revm engine answers calls on the latest state only")
        outcome = self.engine.call(tx.get("from", _ZERO), tx["to"], bytes.fromhex(tx.get("data", "0x")[2:]),
                                   int(tx.get("value", "0x0"), 16), int(tx.get("gas", hex(BLOCK_GAS_LIMIT)), 16))
        if not outcome.success:
            raise _Reverted(outcome)
        return _data(outcome.output)

    def _find_block(self, identifier: Any) -> Block | None:
        if identifier in ("latest", "pending", "safe", "finalized"):
            return self.engine.head
        if identifier == "earliest":
            return self.engine.blocks[0]
        number = int(identifier, 16)
        return self.engine.blocks[number] if number < len(self.engine.blocks) else None

    def _block_by_number(self, identifier: Any, full: bool = False) -> dict[str, Any] | None:
        block = self._find_block(identifier)
        return None if block is None else self._block(block)

    def _block_by_hash(self, block_hash: str, full: bool = False) -> dict[str, Any] | None:
        wanted = bytes.fromhex(block_hash[2:])
        block = next((b for b in reversed(self.engine.blocks) if b.hash == wanted), None)
        return None if block is None else self._block(block)

    @staticmethod
    def _block(block: Block) -> dict[str, Any]:
        return {"number": _hex(block.number), "hash": _data(block.hash), "parentHash": _data(block.parent_hash),
                "timestamp": _hex(block.timestamp), "gasLimit": _hex(BLOCK_GAS_LIMIT),
                "gasUsed": _hex(block.gas_used), "baseFeePerGas": _hex(block.base_fee), "miner": _ZERO,
                "transactions": [_data(r.tx_hash) for r in block.receipts]}

    def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        found = self.engine.receipts.get(bytes.fromhex(tx_hash[2:]))
        if found is None or found[0] >= len(self.engine.blocks):
            return None         # unknown, or not mined yet
        block = self.engine.blocks[found[0]]
        receipt = block.receipts[found[1]]
        cumulative = sum(r.gas_used for r in block.receipts[:found[1] + 1])
        first_log = sum(len(r.logs) for r in block.receipts[:found[1]])
        return {"transactionHash": tx_hash, "transactionIndex": _hex(found[1]), "blockHash": _data(block.hash),
                "blockNumber": _hex(block.number), "from": to_checksum_address(receipt.sender),
                "to": to_checksum_address(receipt.to) if receipt.to else None,
                "cumulativeGasUsed": _hex(cumulative), "gasUsed": _hex(receipt.gas_used),
                "effectiveGasPrice": _hex(receipt.effective_gas_price),
                "contractAddress": to_checksum_address(receipt.contract_address) if receipt.contract_address else None,
                "logs": [self._log(block, found[1], first_log + i, log) for i, log in enumerate(receipt.logs)],
                "status": _hex(receipt.status), "type": _hex(receipt.tx_type), "logsBloom": "0x" + "00" * 256}

    @staticmethod
    def _log(block: Block, tx_index: int, log_index: int, log: tuple[bytes, list[bytes], bytes]) -> dict[str, Any]:
        address, topics, data = log
        return {"address": to_checksum_address(address), "topics": [_data(t) for t in topics], "data": _data(data),
                "blockNumber": _hex(block.number), "blockHash": _data(block.hash),
                "transactionHash": _data(block.receipts[tx_index].tx_hash), "transactionIndex": _hex(tx_index),
                "logIndex": _hex(log_index), "removed": False}

    def _logs(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        head = self.engine.head.number
        first = self._number(query.get("fromBlock", "latest"), head)
        last = self._number(query.get("toBlock", "latest"), head)
        addresses = query.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        wanted = {to_canonical_address(a) for a in addresses} if addresses else None
        topics = query.get("topics") or []
        found = []
        for block in self.engine.blocks[first:last + 1]:
            log_index = 0
            for tx_index, receipt in enumerate(block.receipts):
                for log in receipt.logs:
                    if (wanted is None or log[0] in wanted) and _topics_match(log[1], topics):
                        found.append(self._log(block, tx_index, log_index, log))
                    log_index += 1
        return found

    @staticmethod
    def _number(identifier: Any, head: int) -> int:
        if identifier in ("latest", "pending", "safe", "finalized"):
            return head
        if identifier == "earliest":
            return 0
        return int(identifier, 16) if isinstance(identifier, str) else int(identifier)


def _topics_match(topics: list[bytes], wanted: list[Any]) -> bool:
    for position, option in enumerate(wanted):
        if option is None:
            continue
        options = option if isinstance(option, list) else [option]
        if position >= len(topics) or _data(topics[position]) not in [o.lower() for o in options]:
            return False
    return True


class _Reverted(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.failure())
        self.outcome = outcome
