"""The chain: FedLedger's contracts on an EVM, in process (embedded) or over JSON-RPC.

Digests are lowercase 64-character hex strings (no 0x); addresses are checksum strings.
Every transaction is signed locally; nodes never hold keys.
"""

from fedledger.chain.backend import ChainBackend, PendingTx
from fedledger.chain.consortium import Consortium
from fedledger.chain.embedded import EmbeddedChain
from fedledger.chain.loose import LooseStudy
from fedledger.chain.privacy import (
    NO_SPEND,
    PrivacyBudget,
    PrivacySpend,
    SpendRecord,
    spend_problem,
)
from fedledger.chain.records import Member, Rejection, Role, RoundRecord, TxStats
from fedledger.chain.reopen import open_chain
from fedledger.chain.reputation import (
    INITIAL_REPUTATION,
    MAX_REPUTATION,
    REINSTATED,
    REPUTATION_DELTAS,
    ReputationPolicy,
    reputation_after,
)
from fedledger.chain.rounds import (
    Commitment,
    SemiStudy,
    FullStudy,
    Phase,
    RoundStudy,
    StudyTerms,
    Verdict,
    committee_seed,
    draw_committee,
    result_key,
)
from fedledger.chain.rpc import RpcChain
from fedledger.chain.studies import STUDY_CONTRACTS, study_contract

__all__ = [
    "INITIAL_REPUTATION", "STUDY_CONTRACTS", "study_contract", "MAX_REPUTATION", "NO_SPEND", "REINSTATED", "REPUTATION_DELTAS",
    "ChainBackend", "Commitment", "SemiStudy", "FullStudy", "Consortium", "EmbeddedChain", "Member",
    "PendingTx", "Phase", "PrivacyBudget", "PrivacySpend", "Rejection", "ReputationPolicy", "Role", "RoundRecord", "RoundStudy", "RpcChain",
    "SpendRecord", "LooseStudy", "StudyTerms", "TxStats", "Verdict", "committee_seed", "draw_committee", "open_chain", "reputation_after",
    "result_key", "spend_problem",
]
