"""Verify a run from the ledger and the artifact store alone."""

from fedledger.audit.report import AuditReport, Finding
from fedledger.audit.verify import verify_run

__all__ = ["AuditReport", "Finding", "verify_run"]
