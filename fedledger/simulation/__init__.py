"""A whole study simulated in one process: one node per institution, a coordinator, chain, store."""

from fedledger.protocol.setup import load_clients
from fedledger.simulation.rundir import RunDir
from fedledger.simulation.study import StudyResult, run_study

__all__ = ["RunDir", "StudyResult", "load_clients", "run_study"]
