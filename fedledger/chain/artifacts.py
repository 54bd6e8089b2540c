"""The compiled contracts shipped with the package (produced by `python -m fedledger.chain.compile`).

Loading them needs no compiler, so a node or an auditor never depends on vyper at run time.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fedledger.errors import ChainError

CONTRACTS_DIR = Path(__file__).parent / "contracts"
COMPILED_DIR = Path(__file__).parent / "compiled"
CONTRACT_NAMES = ("Consortium", "StudyLedger", "CommitteeStudy", "ConsensusStudy", "AccessPolicy")


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The committed artifact of contract `name`: abi, bytecode, compiler and source digest."""
    path = COMPILED_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ChainError(f"no compiled contract {name} at {path}; run `python -m fedledger.chain.compile`") from None
