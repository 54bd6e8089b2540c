"""The full architecture's audit (ConsensusStudy.vy): the scores, the exclusion rule recomputed
from them, the votes, their epochs and electorates and the deciding epoch's two-thirds quorum,
and the rewards voted, credited and held."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.audit.base import Changes, Study
from fedledger.audit.manifest import Manifest
from fedledger.audit.history import Events, digest, result_of
from fedledger.audit.rounds import Finalization, RoundsAuditor
from fedledger.chain import Commitment, FullStudy, result_key
from fedledger.chain.rules import full_quorum, quorum_total, vote_weight
from fedledger.protocol import exclusion_rule, rewards


class FullAuditor(RoundsAuditor):
    """A full study: every member scores and votes; two thirds finalize and credit rewards."""

    architecture = "full"
    contract: FullStudy

    def _verify_finalization(self, study: Study, subject: str, n: int, events: Events,
                             commitments: Sequence[Commitment], final: tuple[str, str, list[int]]) -> Finalization:
        """The scores, one per validator and update; the votes for the final key had two thirds;
        every vote agreed or disagreed. Without scores (or a margin) nothing else can be judged."""
        r = self.report
        scores: dict[str, list[int]] = {}
        for e in events["ScoresSubmitted"]:
            ok = (e["validator"] in study.roster and e["validator"] not in scores
                  and len(e["scores"]) == len(commitments))
            r.record(subject, "scores from roster members, one per update", ok,
                     f"{e['validator']} submitted {len(e['scores'])} scores for {len(commitments)} updates, twice, "
                     "or is not on the roster")
            scores[e["validator"]] = list(e["scores"])
        margin = (study.config or {}).get("protocol", {}).get("exclusion_margin")
        if not scores or margin is None:
            r.record(subject, "scores on chain", False, "no scores, or no exclusion margin in the config")
            return Finalization()
        medians, excluded = exclusion_rule(commitments, scores, margin)
        deciding, electorates = self._verify_epochs(study, subject, n, events)
        votes = [v for v in events["VoteSubmitted"] if v["epoch"] == deciding]
        final_key = self.contract.final_key(n)
        agreeing = [v for v in votes if _vote_key(v) == final_key]
        r.record(subject, "finalized vote is for the finalized round",
                 all(result_of(v) == final for v in agreeing),
                 "the votes counted for the final key name another model, manifest or codes")
        if agreeing:
            weight, total = self._quorum(study, agreeing, electorates[deciding])
            quorum, why = full_quorum(weight, total), f"the finalized result has {weight} of {total} votes"
        else:
            quorum, why = False, "no vote is for the finalized result"
        r.record(subject, "finalized by two thirds of the electorate", quorum, why)
        # only the deciding epoch's votes are judged: an abandoned epoch's count for nothing
        changes: Changes = Counter((n, v["validator"], "agreed" if _vote_key(v) == final_key else "disagreed")
                                   for v in votes)
        return Finalization(changes, excluded, medians, list(agreeing[0]["rewards"]) if agreeing else [])

    def _verify_epochs(self, study: Study, subject: str, n: int, events: Events) -> tuple[int, list[set[str]]]:
        """The round's vote epochs: reopened one at a time, the deciding one the contract's; each
        epoch's electorate (epoch 0: the roster, later: the last epoch's voters, or the same
        electorate if no one voted) and every vote cast by a member of its epoch's electorate,
        once. Returns the deciding epoch and the electorates."""
        r = self.report
        reopened = [e["epoch"] for e in events["VoteReopened"]]
        deciding = self.contract.vote_epoch(n)
        r.record(subject, "vote epochs reopened in turn", reopened == list(range(1, deciding + 1)),
                 f"epochs reopened {reopened}, the contract decided in epoch {deciding}")
        electorates, voters = [set(study.roster)], [set[str]() for _ in range(deciding + 1)]
        for epoch in range(1, deciding + 1):
            cast = {v["validator"] for v in events["VoteSubmitted"] if v["epoch"] == epoch - 1}
            electorates.append(cast or electorates[-1])
        for v in events["VoteSubmitted"]:
            epoch, voter = v["epoch"], v["validator"]
            ok = 0 <= epoch <= deciding and voter in electorates[epoch] and voter not in voters[epoch]
            r.record(subject, "votes from the epoch's electorate, once each", ok,
                     f"{voter} voted in epoch {epoch}: outside its electorate, twice, or in no epoch of the round")
            if ok:
                voters[epoch].add(voter)
        return deciding, electorates

    def _quorum(self, study: Study, agreeing: Sequence[Mapping[str, Any]], electorate: set[str]) -> tuple[int, int]:
        """What the `agreeing` votes weigh, and the total two thirds of which finalize a round:
        the electorate's members that could take part (institutions, not suspended) as of the
        last of them."""
        by_reputation, last = self.contract.weight_by_reputation(), agreeing[-1]
        weight = sum(vote_weight(self.history.reputation_at(v["validator"], v), by_reputation) for v in agreeing)
        standings = [(self.history.reputation_at(m, last),
                      self.history.suspended_at(m, last) or not self._held_role(m, last["block"]))
                     for m in study.roster if m in electorate]
        return weight, quorum_total(standings, by_reputation)

    def _verify_outcome(self, subject: str, n: int, commitments: Sequence[Commitment], manifest: Manifest,
                        finalization: Finalization) -> None:
        """The manifest's exclusions and scores are the rule's, and the voted rewards are the
        ones the rule gives and were credited."""
        if finalization.excluded is None:
            return
        r, medians = self.report, finalization.medians
        rejected = {x.institution: x.reason for x in manifest.rejections}
        r.record(subject, "exclusion rule recomputed from the on-chain scores",
                 manifest.doc.get("scores") == medians
                 and all(rejected.get(m) == x.reason for m, x in finalization.excluded.items()),
                 f"recomputed exclusions {sorted(finalization.excluded)}, the manifest rejects {sorted(rejected)}")
        expected = rewards(commitments, medians, manifest.institutions)
        voted = list(finalization.rewards)
        r.record(subject, "rewards recomputed", expected == voted,
                 f"recomputed rewards {expected}, the finalized vote credits {voted}")
        credited = [(e["member"], e["amount"]) for e in self.history.by_round[n]["RewardCredited"]]
        r.record(subject, "rewards credited as voted",
                 credited == [(c.member, a) for c, a in zip(commitments, voted) if a > 0], f"credited {credited}")

    def _verify_accounts(self, study: Study) -> None:
        """Each member's reward balance is the sum of the rewards credited to it."""
        totals: Counter[str] = Counter()
        for e in self.events:
            if e["event"] == "RewardCredited":
                totals[e["member"]] += e["amount"]
        on_chain = {m: self.contract.reward_balance(m) for m in study.roster}
        self.report.record("rewards", "balances equal the credited rewards",
                           on_chain == {m: totals.get(m, 0) for m in study.roster},
                           f"contract {on_chain}, credited {dict(totals)}")


def _vote_key(event: Mapping[str, Any]) -> bytes:
    """The key FullStudy counts a vote under."""
    return result_key(digest(event["model"]), digest(event["manifest_digest"]), event["reasons"], event["rewards"])
