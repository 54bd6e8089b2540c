"""`open_chain`: reconnect to the chain a run used, from what `ChainBackend.describe` wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedledger.chain.backend import ChainBackend
from fedledger.chain.embedded import EmbeddedChain
from fedledger.chain.rpc import RpcChain
from fedledger.errors import ChainError


def open_chain(description: dict[str, Any], state_dir: Path | None) -> ChainBackend:
    """Reopen an embedded chain from `state_dir`, or reconnect to the recorded RPC node.

    ChainError if the chain found is not the one described (another chain id).
    """
    kind = description.get("kind")
    if kind == "embedded":
        if state_dir is None:
            raise ChainError("the run used the embedded chain, but no chain directory was given to reopen it")
        backend: ChainBackend = EmbeddedChain.open(state_dir)
    elif kind == "rpc":
        backend = RpcChain(description["rpc_url"])
    else:
        raise ChainError(f"unknown chain kind {kind!r} (expected 'embedded' or 'rpc')")
    if backend.chain_id != description.get("chain_id"):
        backend.close()
        raise ChainError(f"the chain found has id {backend.chain_id}, the run was recorded on chain "
                         f"{description.get('chain_id')}")
    return backend
