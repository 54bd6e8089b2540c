"""A whole study simulated in one process: every member's roles stepped by one scheduler, on one
chain (or the ledger-off stand-in) and one store."""

from fedledger.simulation.study import StudyResult, run_study

__all__ = ["StudyResult", "run_study"]
