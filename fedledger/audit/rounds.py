"""Audit of the chain-coordinated architectures (semi and full), from the chain and the store.

The contract's event history is replayed in order: the roster, every commitment, committee draw,
result, score and vote, every reputation change and reward. For each finalized round the auditor
checks that the finalized result had its quorum, recomputes the committee draws (semi) or the
exclusion rule and rewards (full), recomputes the aggregation, and derives which reputation
changes the round should have caused; the replayed reputations and suspensions must match the
contract's. Every update's outcome is checked: the finalized reason codes are the manifest's and
the chain's rejection records, and screening the updates again gives the same verdicts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

from web3 import Web3

from fedledger.aggregation import Strategy
from fedledger.audit.base import Auditor
from fedledger.audit.policy import (
    ReputationReplay,
    penalty_reason,
    verify_rejections,
    verify_screening,
)
from fedledger.audit.privacy import verify_privacy
from fedledger.audit.report import AuditReport
from fedledger.audit.secure import study_scheme, verify_record
from fedledger.chain import (
    INITIAL_REPUTATION,
    ChainBackend,
    Commitment,
    SemiStudy,
    FullStudy,
    Role,
    committee_seed,
    draw_committee,
    result_key,
)
from fedledger.chain import Rejection as ChainRejection
from fedledger.protocol import MANIFEST_FORMAT, RoundTask, exclusion_rule, rewards, updates_root
from fedledger.protocol.aggregate import reason_codes
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Rejection, ValidationRules


def _digest(value: bytes) -> str:
    return bytes(value).hex()


class RoundStudyAuditor(Auditor):
    def __init__(self, report: AuditReport, backend: ChainBackend, info: dict[str, Any], store: ArtifactStore) -> None:
        super().__init__(report, backend, info, store)
        self.architecture = info["architecture"]
        wrapper = SemiStudy if self.architecture == "semi" else FullStudy
        self.study = wrapper(backend, info["contracts"]["ledger"])
        self.events = self.study.all_events()
        self.by_round: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        # member -> positions (chain_order) of its reputation changes and the values after them
        self.positions: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        self.values: dict[str, list[int]] = defaultdict(list)
        # member -> positions of its suspensions and re-admissions, and whether each suspended it
        self.standing_positions: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        self.standing: dict[str, list[bool]] = defaultdict(list)
        for event in self.events:
            if "round_number" in event:
                self.by_round[event["round_number"]][event["event"]].append(event)
            if event["event"] == "ReputationChanged":
                self.positions[event["member"]].append(event["position"])
                self.values[event["member"]].append(event["after"])
            if event["event"] in ("MemberSuspended", "MemberReinstated"):
                self.standing_positions[event["member"]].append(event["position"])
                self.standing[event["member"]].append(event["event"] == "MemberSuspended")

    def verify(self) -> None:
        r = self.report
        config, strategy = self._study_config(self.study.config_digest(), self.study.initial_model())
        self.config = config
        self.margin = (config or {}).get("protocol", {}).get("exclusion_margin")
        self.rules = ValidationRules.from_config(config)
        started = [e for e in self.events if e["event"] == "StudyStarted"]
        if not r.record("study", "started once", len(started) == 1, f"{len(started)} StudyStarted events"):
            return
        self.roster = list(started[0]["members"])
        finalized = [e for e in self.events if e["event"] == "RoundFinalized"]
        r.rounds = len(finalized)
        r.record("study", "finalized rounds match contract storage", len(finalized) == self.study.round_count(),
                 f"{len(finalized)} RoundFinalized events but round_count() is {self.study.round_count()}")
        self.expected_changes: Counter = Counter()
        self.aggregated: dict[int, int] = {}
        parent, state = self.study.initial_model(), None
        for event in finalized:
            state = self._verify_round(event, parent, state, strategy)
            parent = _digest(event["model"])
        self._verify_reputation()
        samples = {(e["round_number"], e["member"]): e["num_samples"]
                   for e in self.events if e["event"] == "UpdateCommitted"}
        verify_privacy(r, config, self.study, samples, self.aggregated)
        if self.architecture == "full":
            self._verify_reward_balances()

    # --- one round ---------------------------------------------------------------------------

    def _verify_round(self, final: dict[str, Any], parent: str, state_before: str | None,
                      strategy: Strategy | None) -> str | None:
        n = final["round_number"]
        subject, r, events = f"round {n}", self.report, self.by_round[final["round_number"]]
        model, manifest_digest = _digest(final["model"]), _digest(final["manifest_digest"])
        r.record(subject, "parent is the previous round's model", _digest(final["parent_model"]) == parent,
                 f"parent {_digest(final['parent_model'])} but the previous model is {parent}")
        commitments = self._commitments(subject, events["UpdateCommitted"])
        reasons = self.study.finalized_reasons(n)
        if self.architecture == "semi":
            self._verify_committee(subject, n, events, model, manifest_digest, reasons)
            judged = None
        else:
            judged = self._verify_scores_and_votes(subject, n, events, commitments, model, manifest_digest, reasons)
        self._artifact(subject, "global model", model, self.store.get_params)
        manifest = self._artifact(subject, "manifest", manifest_digest, self.store.get_json)
        if manifest is None:
            return None
        try:
            entries = list(manifest["updates"])
            rejections = [Rejection.from_record(x) for x in manifest["rejected"]]
            rejected = {x.institution: x.reason for x in rejections}
            fields_match = (manifest["format"] == MANIFEST_FORMAT and manifest["round"] == n
                            and manifest["architecture"] == self.architecture
                            and manifest["parent_model"] == parent and manifest["model"] == model)
            root_ok = updates_root(entries) == manifest["updates_root"]
        except (KeyError, TypeError) as exc:
            r.record(subject, "manifest well-formed", False, f"missing field {exc}")
            return None
        r.record(subject, "manifest agrees with the chain", fields_match and root_ok,
                 "manifest's format, round, architecture, parent, model or updates root differ")
        r.record(subject, "server state continues from the previous round", manifest["state_before"] == state_before,
                 f"state_before {manifest['state_before']} but the previous round left {state_before}")
        committed = {c.member: c for c in commitments}
        self.aggregated[n] = len(entries)
        accounted = sorted(e["institution"] for e in entries) + sorted(rejected)
        r.record(subject, "every commitment aggregated or rejected with a reason",
                 sorted(accounted) == sorted(committed) and len(accounted) == len(set(accounted)),
                 f"manifest accounts for {sorted(accounted)}, the chain has commitments from {sorted(committed)}")
        r.record(subject, "aggregated updates are the committed ones",
                 all(e["institution"] in committed and (e["update"], e["num_samples"]) == (
                     committed[e["institution"]].update, committed[e["institution"]].num_samples) for e in entries),
                 "an aggregated update's digest or sample count differs from its on-chain commitment")
        task = RoundTask(n, parent, self.backend.chain_id, self.study.address)
        scheme = study_scheme(self.config, self.study)
        secure = verify_record(r, subject, scheme, task, manifest, [e["institution"] for e in entries])
        intact = all([self._artifact(f"{subject} update of {e['institution']}", "update", e["update"],
                                     lambda d: scheme.load(self.store, d)) is not None for e in entries])
        r.record(subject, "rejected updates are the committed ones",
                 all(x.institution in committed and (x.update, x.num_samples) == (
                     committed[x.institution].update, committed[x.institution].num_samples) for x in rejections),
                 "a rejection names a digest or sample count other than its on-chain commitment")
        self._verify_outcomes(subject, n, commitments, manifest, reasons)
        verify_screening(r, subject, scheme, self.store, task,
                         [Candidate(e["institution"], e["update"], e["num_samples"]) for e in entries],
                         rejections, self.rules, judged[1] if judged else None)
        if strategy is not None and intact:
            self._recompute(subject, parent, model, manifest, entries, strategy, secure)
        if judged is not None:
            self._verify_exclusions(subject, n, commitments, judged, rejected, manifest)
        return manifest["state_after"]

    def _verify_outcomes(self, subject: str, n: int, commitments: list[Commitment], manifest: dict[str, Any],
                         reasons: list[int]) -> None:
        """The finalized reason codes are the manifest's, each rejection is an UpdateRejected
        record, and each outcome moves its committer's reputation as the policy says."""
        self.report.record(subject, "finalized reason codes match the manifest",
                           reasons == reason_codes(commitments, manifest),
                           f"the chain finalized codes {reasons}, the manifest gives "
                           f"{reason_codes(commitments, manifest)}")
        verify_rejections(self.report, subject, [Rejection.from_record(x) for x in manifest["rejected"]],
                          [ChainRejection(e["member"], _digest(e["update"]), e["reason"])
                           for e in self.by_round[n]["UpdateRejected"]])
        for c, code in zip(commitments, reasons):
            change = penalty_reason(code)
            if change:
                self.expected_changes[(n, c.member, change)] += 1

    def _commitments(self, subject: str, committed: list[dict[str, Any]]) -> list[Commitment]:
        result = []
        for e in committed:
            member = e["member"]
            self.report.record(f"{subject} update of {member}", "committed by an active roster institution",
                               member in self.roster and self._held_role(member, e["block"], Role.INSTITUTION),
                               f"{member} is not on the roster or lacked the institution role at block {e['block']}")
            result.append(Commitment(member, _digest(e["update"]), e["num_samples"]))
        return result

    # --- semi: committee draws and results -----------------------------------------------------

    def _verify_committee(self, subject: str, n: int, events: dict[str, list], model: str, manifest: str,
                          reasons: list[int]) -> None:
        r = self.report
        draws = events["CommitteeDrawn"]
        results = events["ResultSubmitted"]
        size = self.study.committee_size()
        previous_seed = None
        for draw in draws:
            attempt = draw["attempt"]
            before = bytes(self.backend.w3.eth.get_block(draw["block"] - 1)["hash"])
            entropy = before if previous_seed is None else Web3.keccak(previous_seed + before)
            seed = committee_seed(entropy, n, attempt)
            weights = [self._reputation_at(m, draw) if self._held_role(m, draw["block"] - 1, Role.INSTITUTION)
                       and not self._suspended_at(m, draw) else 0 for m in self.roster]
            expected = draw_committee(seed, self.roster, weights, size)
            r.record(subject, f"committee draw {attempt} recomputed",
                     bytes(draw["seed"]) == seed and list(draw["committee"]) == expected,
                     f"the chain drew {list(draw['committee'])} with seed {bytes(draw['seed']).hex()}, "
                     f"recomputing gives {expected} with seed {seed.hex()}")
            previous_seed = bytes(draw["seed"])
            voters = {v["member"] for v in results if v["attempt"] == attempt}
            if draw is not draws[-1]:
                for member in draw["committee"]:
                    if member not in voters:
                        self.expected_changes[(n, member, "absent")] += 1
        final_votes = [v for v in results if draws and v["attempt"] == draws[-1]["attempt"]]
        final = (model, manifest, reasons)
        agreeing = [v for v in final_votes if _result(v) == final]
        committee = list(draws[-1]["committee"]) if draws else []
        r.record(subject, "finalized by a majority of the committee", 2 * len(agreeing) > len(committee),
                 f"{len(agreeing)} of {len(committee)} committee members submitted the finalized result")
        for v in final_votes:
            r.record(subject, "results come from the committee", v["member"] in committee,
                     f"{v['member']} submitted a result without being on the committee")
            self.expected_changes[(n, v["member"], "agreed" if _result(v) == final else "disagreed")] += 1

    def _reputation_at(self, member: str, point: dict[str, Any]) -> int:
        """Recorded reputation of `member` just before the event `point` (the changes themselves
        are checked against their rules by the replay)."""
        changes = bisect_left(self.positions[member], point["position"])
        return self.values[member][changes - 1] if changes else INITIAL_REPUTATION

    def _suspended_at(self, member: str, point: dict[str, Any]) -> bool:
        """Whether `member` was suspended just before the event `point`."""
        changes = bisect_left(self.standing_positions[member], point["position"])
        return self.standing[member][changes - 1] if changes else False

    # --- full: scores, exclusions, votes, rewards ------------------------------------------------

    def _verify_scores_and_votes(self, subject: str, n: int, events: dict[str, list], commitments: list[Commitment],
                                 model: str, manifest: str, reasons: list[int]
                                 ) -> tuple[dict[str, int], dict[str, Rejection]] | None:
        """Check the scores and votes; returns the exclusion rule's (medians, excluded)."""
        r = self.report
        scores = {}
        for e in events["ScoresSubmitted"]:
            ok = (e["validator"] in self.roster and e["validator"] not in scores
                  and len(e["scores"]) == len(commitments))
            r.record(subject, "scores from roster members, one per update", ok,
                     f"{e['validator']} submitted {len(e['scores'])} scores for {len(commitments)} updates, twice, "
                     "or is not on the roster")
            scores[e["validator"]] = list(e["scores"])
        if not scores or self.margin is None:
            r.record(subject, "scores on chain", False, "no scores, or no exclusion margin in the config")
            return None
        judged = exclusion_rule(commitments, scores, self.margin)
        votes = events["VoteSubmitted"]
        final_key = self.study.final_key(n)
        agreeing = [v for v in votes if _vote_key(v) == final_key]
        counted = [m for m in self.roster if not agreeing or not self._suspended_at(m, agreeing[-1])]
        if self.study.weight_by_reputation():
            weight = sum(self._reputation_at(v["validator"], v) for v in agreeing)
            total = sum(self._reputation_at(m, agreeing[-1]) for m in counted) if agreeing else 1
        else:
            weight, total = len(agreeing), len(counted)
        r.record(subject, "finalized vote is for the finalized round",
                 all((_digest(v["model"]), _digest(v["manifest_digest"]), list(v["reasons"])) == (model, manifest, reasons)
                     for v in agreeing), "the votes counted for the final key name another model, manifest or codes")
        r.record(subject, "finalized by two thirds of the members", 3 * weight >= 2 * total,
                 f"the finalized result has {weight} of {total} votes")
        for v in votes:
            agreed = _vote_key(v) == final_key
            self.expected_changes[(n, v["validator"], "agreed" if agreed else "disagreed")] += 1
        self.final_rewards = list(agreeing[0]["rewards"]) if agreeing else []
        return judged

    def _verify_exclusions(self, subject: str, n: int, commitments: list[Commitment],
                           judged: tuple[dict[str, int], dict[str, Rejection]], rejected: dict[str, str],
                           manifest: dict[str, Any]) -> None:
        r = self.report
        medians, excluded = judged
        r.record(subject, "exclusion rule recomputed from the on-chain scores",
                 manifest.get("scores") == medians and all(rejected.get(m) == x.reason for m, x in excluded.items()),
                 f"recomputed exclusions {sorted(excluded)}, the manifest rejects {sorted(rejected)}")
        accepted = [e["institution"] for e in manifest["updates"]]
        expected = rewards(commitments, medians, accepted)
        r.record(subject, "rewards recomputed", expected == self.final_rewards,
                 f"recomputed rewards {expected}, the finalized vote credits {self.final_rewards}")
        credited = [(e["member"], e["amount"]) for e in self.by_round[n]["RewardCredited"]]
        r.record(subject, "rewards credited as voted",
                 credited == [(c.member, a) for c, a in zip(commitments, self.final_rewards) if a > 0],
                 f"credited {credited}")

    # --- reputation and balances ------------------------------------------------------------------

    def _verify_reputation(self) -> None:
        replay = ReputationReplay(self.study.suspension_threshold(), self.roster)
        admin = self.consortium.admin()
        seen = replay.replay(self.events, lambda block: admin)
        replay.verify(self.report, seen, self.expected_changes, {m: self.study.reputation(m) for m in self.roster},
                      {m for m in self.roster if self.study.suspended(m)})

    def _verify_reward_balances(self) -> None:
        totals: Counter = Counter()
        for e in self.events:
            if e["event"] == "RewardCredited":
                totals[e["member"]] += e["amount"]
        on_chain = {m: self.study.reward_balance(m) for m in self.roster}
        self.report.record("rewards", "balances equal the credited rewards",
                           on_chain == {m: totals.get(m, 0) for m in self.roster},
                           f"contract {on_chain}, credited {dict(totals)}")


def _result(event: dict[str, Any]) -> tuple[str, str, list[int]]:
    """A committee result's (model, manifest, reason codes)."""
    return _digest(event["model"]), _digest(event["manifest_digest"]), list(event["reasons"])


def _vote_key(event: dict[str, Any]) -> bytes:
    """The key FullStudy counts a vote under."""
    return result_key(_digest(event["model"]), _digest(event["manifest_digest"]), event["reasons"], event["rewards"])
