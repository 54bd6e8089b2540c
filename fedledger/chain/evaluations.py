"""Institutions' evaluations of finalized models that every study contract logs
(contracts/evaluations.vy): `EvaluationBoard`, the submission and reads that the LooseStudy,
SemiStudy and FullStudy wrappers all offer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from fedledger.chain.backend import PendingTx
from fedledger.chain.records import NO_DIGEST, bytes32_to_digest, digest_to_bytes32


class EvaluationBoard:
    """Mixin of the study wrappers (StudyContract)."""

    contract: Any
    _send: Callable[[LocalAccount, Any], TxReceipt | PendingTx]
    _view: Callable[..., Any]
    events: Callable[..., list[dict[str, Any]]]

    def submit_evaluation(self, member: LocalAccount, round: int, evaluation: str) -> TxReceipt | PendingTx:
        """`member` logs the digest of its signed evaluation of finalized round `round`'s model."""
        return self._send(member, self.contract.functions.submit_evaluation(round, digest_to_bytes32(evaluation)))

    def evaluation_of(self, round: int, member: str) -> str | None:
        """The digest of `member`'s signed evaluation of round `round`'s model, if it submitted one."""
        digest = bytes32_to_digest(self._view("evaluation_of", round, Web3.to_checksum_address(member)))
        return None if digest == NO_DIGEST else digest

    def evaluations(self, round: int) -> dict[str, str]:
        """member -> the digest of its signed evaluation of round `round`'s model, as logged."""
        return {e["member"]: bytes32_to_digest(e["evaluation"]) for e in self.events("EvaluationSubmitted", round)}
