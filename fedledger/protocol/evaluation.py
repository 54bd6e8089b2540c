"""Institutions' evaluations of models, signed: the figures a model scores on one institution's
own test set (counts and scores; no record leaves the site), bound to the study's ledger, its
chain and the model by the institution's signature, so that anyone can check who said what.

Every figure a user reads (metrics.jsonl, results.json, the plot, the anchored round metrics) is
summarized from such documents, and `audit verify` re-derives it from them. Evaluations are
untrusted input where they come from others: `read_evaluation` bounds, parses and checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.crypto import EvaluationStatement, recover_signer, sign_commitment
from fedledger.errors import FedLedgerError
from fedledger.learning import BINARY, Task
from fedledger.report import evaluation_problem
from fedledger.store import ArtifactStore, canonical_json, sha256_hex

MAX_EVALUATION_BYTES = 32768     # a binary one is about 1.5 KB, a 32-class confusion matrix about 4 KB
KEYS = {"institution", "chain_id", "ledger", "model", "figures", "signature"}


def sign_evaluation(account: LocalAccount, chain_id: int, ledger: str, model: str,
                    figures: Mapping[str, float]) -> dict[str, Any]:
    """The signed evaluation document of `model` scoring `figures` on `account`'s institution's
    test set, for the study at `ledger` on chain `chain_id` (deterministic: the same inputs give
    the same document and digest)."""
    figures = dict(figures)
    statement = EvaluationStatement(chain_id, ledger, model, sha256_hex(canonical_json(figures)))
    return {"institution": account.address, "chain_id": chain_id, "ledger": ledger, "model": model,
            "figures": figures, "signature": sign_commitment(account, statement)}


def signed_evaluation_problem(doc: Any, institution: str, model: str, chain_id: int, ledger: str,
                              task: Task = BINARY) -> str | None:
    """Why `doc` is not `institution`'s signed evaluation of `model` in the study at `ledger`
    on chain `chain_id` with figures that make sense for the study's `task`; None if it is."""
    if not isinstance(doc, dict) or set(doc) != KEYS:
        return f"not a signed evaluation (it needs exactly the keys {', '.join(sorted(KEYS))})"
    if not all(isinstance(doc[k], str) for k in KEYS - {"chain_id", "figures"}):
        return "a field that should be text is not"
    if (doc["institution"].lower(), doc["model"], doc["chain_id"], doc["ledger"].lower()) != (
            institution.lower(), model, chain_id, ledger.lower()):
        return "it is another institution's, of another model, or of another study"
    problem = evaluation_problem(doc["figures"], task)
    if problem is not None:
        return problem
    statement = EvaluationStatement(chain_id, Web3.to_checksum_address(ledger), model,
                                    sha256_hex(canonical_json(doc["figures"])))
    if recover_signer(statement, doc["signature"]) != Web3.to_checksum_address(institution):
        return "the signature is not the institution's"
    return None


def read_evaluation(store: ArtifactStore, digest: str, institution: str, model: str, chain_id: int,
                    ledger: str, task: Task = BINARY) -> dict[str, Any] | str:
    """The figures of `institution`'s signed evaluation of `model` stored under `digest`, or why
    there are none to use (missing, too large, not JSON, unsigned, or nonsense)."""
    try:
        doc = store.get_json(digest, MAX_EVALUATION_BYTES)
    except FedLedgerError as exc:   # missing everywhere, corrupt, too large, or not a digest
        return f"unavailable: {str(exc)[:200]}"
    problem = signed_evaluation_problem(doc, institution, model, chain_id, ledger, task)
    return doc["figures"] if problem is None else f"not a signed evaluation: {problem}"
