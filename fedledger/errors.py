"""Errors FedLedger raises on purpose.

Every one carries a message meant for a person: the CLI prints it on one line and exits non-zero,
without a traceback. Anything else escaping is a bug.
"""


class FedLedgerError(Exception):
    """Base class: a failure the user can act on, described in one line."""


class ConfigError(FedLedgerError):
    """A study configuration is invalid (names the key and what is allowed)."""


class DataError(FedLedgerError):
    """A dataset is missing, unreadable or malformed."""


class ChainError(FedLedgerError):
    """The chain refused or failed an operation."""


class ChainUnreachable(ChainError):
    """No JSON-RPC node answers at the configured URL."""


class TransactionReverted(ChainError):
    """A contract call reverted; the message carries the revert reason."""


class StoreError(FedLedgerError):
    """The artifact store cannot serve an artifact."""


class ArtifactMissing(StoreError):
    """No artifact with that digest is in the store."""


class ArtifactCorrupt(StoreError):
    """An artifact's content no longer hashes to its digest, or cannot be decoded.

    `kind` says which: "digest" (the bytes hash to something else), "format" (not the canonical
    encoding), "layout" (wrong tensor names, shapes or dtypes) or "values" (NaN or infinite).
    """

    def __init__(self, message: str, kind: str = "digest") -> None:
        super().__init__(message)
        self.kind = kind


class UpdateRejected(FedLedgerError):
    """A client update failed validation (shape, dtype, non-finite values, bad signature...)."""
