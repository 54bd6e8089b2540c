"""`StudyContract`: what every study contract's wrapper shares (LooseStudy, SemiStudy, FullStudy):
the handle on the deployed contract, views, transactions, events and the chain's clock."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from fedledger.chain.backend import ChainBackend, PendingTx
from fedledger.chain.records import chain_order


class StudyContract:
    """The deployed contract `contract_name` at `address`."""

    contract_name: ClassVar[str]

    def __init__(self, backend: ChainBackend, address: str) -> None:
        self.backend = backend
        self.contract = backend.contract(self.contract_name, address)
        self.address: str = self.contract.address

    def _view(self, name: str, *args: Any) -> Any:
        return self.backend.view(self.contract, name, *args)

    def _send(self, account: LocalAccount, fn: Any) -> TxReceipt | PendingTx:
        return self.backend.transact(account, fn)

    @property
    def chain_id(self) -> int:
        return self.backend.chain_id

    def block_number(self) -> int:
        """The latest block: deadlines are counted in blocks."""
        return self.backend.block_number()

    def all_events(self) -> list[dict[str, Any]]:
        """Every event of this contract in chain order (`contract_events`)."""
        return contract_events(self.backend, self.contract)

    def events(self, name: str, round: int | None = None, from_block: int = 0) -> list[dict[str, Any]]:
        """Every `name` event of this contract (of one round, if given; from block `from_block`
        on) in chain order: its arguments plus "block". Bounding the blocks matters: log
        queries scan every block in the range."""
        filters = {"round_number": round} if round is not None else None
        logs = self.backend.logs(getattr(self.contract.events, name), filters, from_block)
        return [{**dict(log["args"]), "block": log["blockNumber"]} for log in logs]


def contract_events(backend: ChainBackend, contract: Any) -> list[dict[str, Any]]:
    """Every event of web3 contract `contract` in chain order: its arguments plus "event",
    "block" and "position" (chain_order; one log query, for replaying the history)."""
    by_topic = {}
    for item in contract.abi:
        if item["type"] == "event":
            event = getattr(contract.events, item["name"])
            by_topic[bytes.fromhex(event.topic[2:])] = event
    result = []
    for log in backend.contract_logs(contract.address):
        event = by_topic.get(bytes(log["topics"][0])) if log["topics"] else None
        if event is not None:
            decoded = event.process_log(log)
            result.append({**dict(decoded["args"]), "event": decoded["event"], "block": log["blockNumber"],
                           "position": chain_order(log)})
    return result
