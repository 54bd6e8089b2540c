"""The study contract of each architecture: where the Python names (loose, semi, full) meet the
contracts' own (StudyLedger.vy, CommitteeStudy.vy, ConsensusStudy.vy)."""

from __future__ import annotations

from fedledger.chain.backend import ChainBackend
from fedledger.chain.loose import LooseStudy
from fedledger.chain.rounds import FullStudy, SemiStudy

STUDY_CONTRACTS: dict[str, type[LooseStudy | SemiStudy | FullStudy]] = {
    "loose": LooseStudy, "semi": SemiStudy, "full": FullStudy}


def study_contract(architecture: str, backend: ChainBackend, address: str) -> LooseStudy | SemiStudy | FullStudy:
    """A handle on the study contract of `architecture` at `address`."""
    return STUDY_CONTRACTS[architecture](backend, address)
