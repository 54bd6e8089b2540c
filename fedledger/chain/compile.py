"""Compile the Vyper contracts into the JSON artifacts committed in compiled/.

    python -m fedledger.chain.compile

Run it after editing a contract; a test fails while the artifacts lag behind the sources.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import vyper
from vyper.compiler.input_bundle import FilesystemInputBundle

from fedledger.chain.artifacts import COMPILED_DIR, CONTRACT_NAMES, CONTRACTS_DIR

# Vyper modules imported by the contracts (lowercase file names); they are part of every source digest.
MODULES = ("evaluations", "privacy_budget", "reputation_policy", "rounds", "secagg_board")


def compile_contract(name: str) -> dict[str, Any]:
    """Compile contracts/<name>.vy; the EVM version comes from the source's pragma."""
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    # A fixed contract_path keeps the bytecode's metadata independent of where the checkout lives.
    out = vyper.compile_code(source, contract_path=f"{name}.vy", output_formats=["abi", "bytecode"],
                             input_bundle=FilesystemInputBundle([CONTRACTS_DIR]))
    sources = hashlib.sha256(source.encode())
    for module in MODULES:   # a module edit must mark every contract stale, whether it imports it or not
        sources.update((CONTRACTS_DIR / f"{module}.vy").read_bytes())
    return {
        "contract": name,
        "compiler": f"vyper {vyper.__version__}",
        "source_sha256": sources.hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
    }


def main() -> None:
    COMPILED_DIR.mkdir(exist_ok=True)
    for name in CONTRACT_NAMES:
        path = COMPILED_DIR / f"{name}.json"
        path.write_text(json.dumps(compile_contract(name), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
