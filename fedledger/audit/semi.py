"""The semi architecture's audit (CommitteeStudy.vy): each committee draw recomputed from its
seed and the recorded reputations, and the finalized result had a majority of the last draw."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from web3 import Web3

from fedledger.audit.base import Changes, Study
from fedledger.audit.history import Events, result_of
from fedledger.audit.rounds import Finalization, RoundsAuditor
from fedledger.chain import Commitment, Role, SemiStudy, committee_seed, draw_committee
from fedledger.chain.rules import semi_majority


class SemiAuditor(RoundsAuditor):
    """A semi study: rounds finalized by a committee drawn by reputation."""

    architecture = "semi"
    contract: SemiStudy

    def _verify_finalization(self, study: Study, subject: str, n: int, events: Events,
                             commitments: Sequence[Commitment], final: tuple[str, str, list[int]]) -> Finalization:
        """Every draw recomputed; a draw before the last that went without a majority counts
        its silent members absent, and the last draw's results agreed or disagreed."""
        r = self.report
        changes: Changes = Counter()
        draws, results = events["CommitteeDrawn"], events["ResultSubmitted"]
        size = self.contract.committee_size()
        previous_seed = None
        for draw in draws:
            attempt = draw["attempt"]
            before = bytes(self.backend.w3.eth.get_block(draw["block"] - 1)["hash"])
            entropy = before if previous_seed is None else Web3.keccak(previous_seed + before)
            seed = committee_seed(entropy, n, attempt)
            weights = [self.history.reputation_at(m, draw)
                       if self._held_role(m, draw["block"] - 1, Role.INSTITUTION)
                       and not self.history.suspended_at(m, draw) else 0 for m in study.roster]
            expected = draw_committee(seed, study.roster, weights, size)
            r.record(subject, f"committee draw {attempt} recomputed",
                     bytes(draw["seed"]) == seed and list(draw["committee"]) == expected,
                     f"the chain drew {list(draw['committee'])} with seed {bytes(draw['seed']).hex()}, "
                     f"recomputing gives {expected} with seed {seed.hex()}")
            previous_seed = bytes(draw["seed"])
            voters = {v["member"] for v in results if v["attempt"] == attempt}
            if draw is not draws[-1]:
                changes.update((n, member, "absent") for member in draw["committee"] if member not in voters)
        final_votes = [v for v in results if draws and v["attempt"] == draws[-1]["attempt"]]
        agreeing = [v for v in final_votes if result_of(v) == final]
        committee = list(draws[-1]["committee"]) if draws else []
        r.record(subject, "finalized by a majority of the committee", semi_majority(len(agreeing), len(committee)),
                 f"{len(agreeing)} of {len(committee)} committee members submitted the finalized result")
        for v in final_votes:
            r.record(subject, "results come from the committee", v["member"] in committee,
                     f"{v['member']} submitted a result without being on the committee")
            changes[(n, v["member"], "agreed" if result_of(v) == final else "disagreed")] += 1
        return Finalization(changes)
