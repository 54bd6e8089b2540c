"""Ledger-off stand-ins for the study contracts, for a study run with `[chain] enabled = false`.

`LocalLooseStudy`, `LocalSemiStudy` and `LocalFullStudy` offer the interface of the typed
wrappers `LooseStudy` (StudyLedger.vy), `SemiStudy` (CommitteeStudy.vy) and `FullStudy`
(ConsensusStudy.vy) and apply the contracts' rules in memory, so that the protocol's roles run
unchanged without a chain. The classes follow the Vyper modules: `_Reputation`
(reputation_policy.vy), `_Privacy` (privacy_budget.vy), `_Board` (secagg_board.vy) and `_Rounds`
(rounds.vy), each holding that module's state.

As on chain, a transaction is all or nothing: a failed check raises TransactionReverted with the
contract's own reason ("CommitteeStudy.close_commits reverted: commit window still open") and
leaves no trace; one that lands takes one block of the study's `LocalClock`. Every event the
contract would log is kept, with its block, and read back by `events` as the wrappers read the
chain's (digests stay hex strings, NO_DIGEST for the empty bytes32).

What there is no chain for:
- no consortium: the roster given to the constructor stands for the consortium's active
  institutions, and the calls only a coordinator or the consortium's admin may make on chain
  take any sender; no signatures are checked, the sender is the account passed;
- no block hashes: committees are drawn from the constructor's `seed` (`LocalSemiStudy`);
- no gas: a transaction returns {"status": 1, "blockNumber": its block}.
"""

from fedledger.chain.local.base import LocalClock
from fedledger.chain.local.full import LocalFullStudy
from fedledger.chain.local.loose import LocalLooseStudy
from fedledger.chain.local.semi import LocalSemiStudy

LOCAL_STUDIES: dict[str, type[LocalLooseStudy | LocalSemiStudy | LocalFullStudy]] = {
    "loose": LocalLooseStudy, "semi": LocalSemiStudy, "full": LocalFullStudy}


__all__ = ["LOCAL_STUDIES", "LocalClock", "LocalFullStudy", "LocalLooseStudy", "LocalSemiStudy"]
