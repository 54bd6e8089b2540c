"""The ledger-off stand-ins of fedledger/chain/local.py against the contracts they mirror.

Each differential test drives one scripted scenario through a `Twin`: the real contract on the
embedded EVM and its stand-in receive the same transactions, which must land in the same block
(counted from deployment) or revert with the same message, and every read of the wrappers'
interface must agree, as must the whole event history.

Committees are drawn from block hashes on chain and from a seed off it, so the semi scenarios
draw the whole roster (the same members, in another order) and compare what does not depend on
the draw order; test_the_draw_is_the_documented_one checks the stand-in's own draw.
"""

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import MismatchedABI

from fedledger.chain import (
    NO_SPEND,
    EmbeddedChain,
    FullStudy,
    LooseStudy,
    Phase,
    PrivacySpend,
    SemiStudy,
    StudyTerms,
    committee_seed,
    draw_committee,
)
from fedledger.chain.backend import PendingTx
from fedledger.chain.local import LOCAL_STUDIES, LocalClock, LocalFullStudy, LocalLooseStudy, LocalSemiStudy
from fedledger.chain.records import NO_DIGEST
from fedledger.chain.rules import Closing, commit_closing, full_quorum, quorum_total, score_closing, semi_majority
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM, MAX_DATA, REVEAL, SHARES, Posted
from fedledger.errors import TransactionReverted
from fedledger.validation.reasons import Reason

from .conftest import Study, digest, set_up_study

WINDOW = 15
BUDGET, DELTA = 3_000_000, 10**13
SEED = 7
JUDGED = {"agreed", "disagreed", "absent"}   # reputation moves a semi committee makes in draw order


def spend(epsilon: int, noise: int = 1_100_000) -> PrivacySpend:
    return PrivacySpend(noise_multiplier=noise, sample_rate=10**9, steps=1, epsilon=epsilon)


def key(tag: str) -> bytes:
    return hashlib.sha256(f"key {tag}".encode()).digest()


def result(round: int, tag: str = "") -> tuple[str, str]:
    return digest(f"model {round}{tag}"), digest(f"manifest {round}{tag}")


# --- harness -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _judgements_in_any_order(events: list[dict]) -> list[dict]:
    """A semi committee is judged in draw order, which differs between the two: sort each run of
    judgements (each with the suspension it may bring) by member."""
    ordered: list[dict] = []
    run: list[list[dict]] = []
    for event in [*events, None]:
        if event is not None and event["event"] == "ReputationChanged" and event["reason"] in JUDGED:
            run.append([event])
        elif (event is not None and event["event"] == "MemberSuspended" and run
              and run[-1][0]["member"] == event["member"]):
            run[-1].append(event)
        else:
            ordered += [e for unit in sorted(run, key=lambda u: u[0]["member"]) for e in unit]
            run = []
            if event is not None:
                ordered.append(event)
    return ordered


@dataclass
class Twin:
    """A real study contract and its stand-in, driven alike; `s` is the consortium around the real
    one (its roster: s.institutions)."""
    s: Study
    real: Any
    local: Any

    def __post_init__(self) -> None:
        self.offset = self.s.backend.block_number() - self.local.block_number()   # both just deployed
        self.batching = False

    @property
    def members(self):
        return self.s.institutions

    @property
    def semi(self) -> bool:
        return isinstance(self.local, LocalSemiStudy)

    def do(self, name: str, *args: Any) -> str | None:
        """Send the same transaction to both: both land in the same block, or both revert with the
        same message (returned), or both refuse malformed input before sending ("malformed")."""
        outcomes = []
        for study in (self.real, self.local):
            try:
                receipt = getattr(study, name)(*args)
            except TransactionReverted as exc:
                outcomes.append(str(exc))
            except (ValueError, MismatchedABI):      # refused by the wrapper, before sending
                outcomes.append("malformed")
            else:
                outcomes.append(None if self.batching or isinstance(receipt, PendingTx) else receipt["blockNumber"])
        real, local = outcomes
        if isinstance(real, int):
            real -= self.offset
        assert real == local, f"{name}{args}: contract {real!r}, stand-in {local!r}"
        return None if isinstance(local, int) else local

    def read(self, name: str, *args: Any) -> Any:
        """The same read of both, which must agree (blocks counted from deployment)."""
        values = []
        for study, shift in ((self.real, self.offset), (self.local, 0)):
            try:
                value = getattr(study, name)(*args)
            except TransactionReverted as exc:
                value = str(exc)
            if name in ("phase_deadline", "first_commit_block", "block_number"):
                value -= shift
            elif name in ("key_adverts", "posts", "data_posts"):
                value = [replace(p, block=p.block - shift) for p in value]
            elif name == "anchored_rounds":
                value = [(record, block - shift) for record, block in value]
            elif name == "committee":
                value = sorted(value)
            values.append(value)
        assert values[0] == values[1], f"{name}{args}: contract {values[0]!r}, stand-in {values[1]!r}"
        return values[1]

    def history(self, logged: list[dict], shift: int) -> list[dict]:
        """`logged` (all_events) comparable between the two: plain values, blocks counted from
        deployment, committees in no particular order, no sponsor (a stand-in has none)."""
        events = []
        for event in logged:
            event = {k: _plain(v) for k, v in event.items() if k not in ("position", "sponsor")}
            for field in ("block", "deadline"):
                if field in event:
                    event[field] -= shift
            if event["event"] == "CommitteeDrawn":
                del event["seed"]
                event["committee"] = sorted(event["committee"])
            events.append(event)
        return _judgements_in_any_order(events) if self.semi else events

    def check(self) -> None:
        """Every read of the interface agrees, and so does the event history. Reads of state
        cover every round."""
        people = [m.address for m in self.members] + [self.s.outsider.address, self.s.coordinator.address]
        local = self.local
        rounds = range(1, local.round_count() + 2)
        reads: list[tuple] = [("block_number",), ("round_count",), ("latest_model",), ("config_digest",),
                              ("initial_model",), ("started",), ("suspension_threshold",), ("suspensions",),
                              ("epsilon_budget",), ("delta",)]
        reads += [(name, a) for a in people for name in ("reputation", "suspended", "epsilon_spent")]
        reads += [(name, r) for r in rounds for name in ("rejections", "privacy_spends", "key_adverts", "evaluations")]
        reads += [("evaluation_of", r, a) for r in rounds for a in people]
        reads += [("data_posts", r, step) for r in rounds for step in (SHARES, REVEAL)]
        reads += [("posts", r, step) for r in rounds for step in (CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM)]
        if isinstance(local, LocalLooseStudy):
            reads += [("coordinator",), ("institutions_among", people), ("anchored_rounds",)]
            reads += [("stored_reputation", a) for a in people]
            reads += [(name, r) for r in rounds for name in ("get_round", "round_manifest")]
        else:
            reads += [("open_round",), ("phase",), ("phase_deadline",), ("roster",), ("suspended_count",),
                      ("counted_members",)]
            reads += [(name, r) for r in rounds for name in (
                "committers", "commitments", "finalized", "round_manifest", "final_key", "finalized_reasons")]
            reads += [("commit_rejections", r) for r in rounds]
            reads += [("first_commit_block", r) for r in rounds if local.committers(r)]
        if self.semi:
            reads += [("committee_size",), ("attempt",)] + [("final_attempt", r) for r in rounds]
            reads += [("committee", r, a) for r in rounds for a in range(1, 4)] + [("results", r) for r in rounds]
        if isinstance(local, LocalFullStudy):
            reads += [("weight_by_reputation",)] + [("reward_balance", a) for a in people]
            reads += [(name, r) for r in rounds for name in ("score_count", "scores", "votes", "vote_epoch")]
            reads += [("may_vote", r, a) for r in rounds for a in people]
        with self.logs_read_once() as logged:
            for name, *args in reads:
                self.read(name, *args)
            assert self.history(logged, self.offset) == self.history(self.local.all_events(), 0)

    @contextmanager
    def logs_read_once(self):
        """The real contract's events, with the wrapper's event reads answered from them: one log
        query instead of one per read (the embedded chain answers each in time quadratic in its length)."""
        logged = self.real.all_events()

        def events(name, round=None, from_block=0):
            return [{k: v for k, v in e.items() if k not in ("event", "position")} for e in logged
                    if e["event"] == name and e["block"] >= from_block and round in (None, e.get("round_number"))]

        self.real.events = events
        try:
            yield logged
        finally:
            del self.real.events

    # --- moves --------------------------------------------------------------------------------

    def advance(self, n: int) -> None:
        self.s.backend.advance_blocks(n)
        self.local.advance_blocks(n)

    def pass_deadline(self) -> None:
        """The next transaction lands in the first block past the phase deadline."""
        self.advance(self.local.phase_deadline() - self.local.block_number())

    @contextmanager
    def batch(self):
        with self.s.backend.batch(), self.local.batch():
            self.batching = True
            try:
                yield
            finally:
                self.batching = False

    def commit(self, member, *, round=None, parent=None, update=None, samples=10, released=NO_SPEND):
        round = self.local.open_round() if round is None else round
        update = digest(f"update {round} {member.address}") if update is None else update
        return self.do("commit_update", member, round, self.local.latest_model() if parent is None else parent,
                       update, samples, digest(f"metrics {round} {member.address}"), released)

    def active(self) -> list:
        return [m for m in self.members if not self.local.suspended(m.address)]

    def still_active(self, members):
        """`members` one by one, leaving out any suspended by then."""
        return (m for m in members if not self.local.suspended(m.address))

    def play_round(self, rejected=()) -> None:
        """Every active member commits (with no privacy spend), the round is closed and `finish`ed
        by the active members; the updates of `rejected` get OUTLIER."""
        round = self.local.open_round()
        for member in self.active():
            self.commit(member)
        assert self.do("close_commits", self.members[0], round) is None
        reasons = [int(Reason.OUTLIER) if c in {m.address for m in rejected} else 0
                   for c in self.local.committers(round)]
        self.finish(round, reasons, self.active())

    def finish(self, round: int, reasons: list[int], voters) -> None:
        """Finalize `round` with `reasons`: `voters`, in order, answer on the committee (semi), or
        score, then vote (full), as long as they are not suspended."""
        if self.semi:
            attempt = self.local.attempt()
            committee = self.local.committee(round, attempt)
            for member in self.still_active(voters):
                if member.address in committee:
                    assert self.do("submit_result", member, round, attempt, *result(round), reasons) is None
        else:
            for member in voters:
                assert self.do("submit_scores", member, round, [800_000] * len(reasons)) is None
            assert self.do("close_scores", self.members[0], round) is None
            rewards = [0 if code else 10 for code in reasons]
            for member in self.still_active(voters):
                assert self.do("submit_vote", member, round, *result(round), rewards, reasons) is None
        assert self.local.round_count() == round


def round_twin(embedded, kind: str, *, n=4, min_participants=2, threshold=0, budget=0, delta=0,
               committee_size=None, weighted=False) -> Twin:
    """A SemiStudy (committee of the whole roster unless `committee_size`) or FullStudy, with
    its stand-in, round 1 open."""
    s = set_up_study(embedded, institutions=n, ledger=False)
    terms = StudyTerms(digest("config"), digest("model 0"), tuple(m.address for m in s.institutions), WINDOW,
                       WINDOW, min_participants, threshold, budget, delta)
    common = (list(terms.roster), terms.config_digest, terms.initial_model, WINDOW, WINDOW, min_participants)
    if kind == "semi":
        size = committee_size or n
        real = SemiStudy.deploy(s.backend, s.coordinator, s.consortium, terms, size)
        local = LocalSemiStudy(*common, size, threshold, budget, delta, seed=SEED)
    else:
        real = FullStudy.deploy(s.backend, s.coordinator, s.consortium, terms, weighted)
        local = LocalFullStudy(*common, threshold, budget, delta, weight_by_reputation=weighted)
    return Twin(s, real, local)


def loose_twin(embedded, *, threshold=0, budget=0, delta=0, start=True) -> Twin:
    s = set_up_study(embedded, ledger=False)
    real = LooseStudy.deploy(s.backend, s.admin, s.consortium, threshold, budget, delta)
    local = LocalLooseStudy([m.address for m in s.institutions], threshold, budget, delta)
    # the stand-in takes the real contract's identity, so that one signed commitment (s.record's
    # evidence, signed for s.ledger) is evidence for both
    s.ledger, local.chain_id, local.address = real, s.backend.chain_id, real.address
    twin = Twin(s, real, local)
    if start:
        assert twin.do("start_study", s.coordinator, digest("config"), digest("model 0")) is None
    return twin


# --- loose: StudyLedger.vy ---------------------------------------------------------------------


def test_loose_anchors_rejections_suspension_and_reinstatement(embedded):
    twin = loose_twin(embedded, threshold=50, start=False)
    s, (i0, i1, i2, i3) = twin.s, twin.members
    label = "StudyLedger.anchor_round reverted: "
    assert twin.do("anchor_round", s.coordinator, s.record(1, digest("model 0"))) == label + "study not started"
    twin.check()
    assert twin.do("start_study", s.coordinator, digest("config"), digest("model 0")) is None
    assert twin.do("start_study", s.coordinator, digest("config"), digest("model 0")) == \
        "StudyLedger.start_study reverted: study already started"

    # Round 1: participants in any order, rejections of an institution, an outsider, a duplicate.
    participants = [i.address.lower() for i in (i2, i0, i1)]
    rejected = [(i3.address, digest("far"), Reason.OUTLIER), (s.outsider.address, None, Reason.NOT_MEMBER),
                (i0.address, digest("again"), Reason.DUPLICATE)]
    assert twin.do("anchor_round", s.coordinator, s.record(1, digest("model 0"), participants, rejected)) is None

    round2 = s.record(2, digest("model 1"))
    refused = [
        (i0, round2, label + "only the study coordinator"),
        (s.coordinator, replace(round2, round=3), label + "wrong round number"),
        (s.coordinator, replace(round2, parent_model=digest("model 0")), label + "parent is not the latest model"),
        (s.coordinator, replace(round2, participants=(i0.address, s.outsider.address)),
         label + "participant is not an institution"),
        (s.coordinator, replace(round2, participants=(i0.address, i1.address, i0.address)),
         label + "participants not strictly increasing (duplicate?)"),
        (s.coordinator, replace(round2, model=NO_DIGEST), label + "empty model digest"),
        (s.coordinator, replace(round2, rejected=((i3.address, None, 0),)), label + "reason code must be 1..18"),
        (s.coordinator, replace(round2, rejected=((i3.address, None, 19),)), label + "reason code must be 1..18"),
        (s.coordinator, replace(round2, model="AB" * 32), "malformed"),
        (s.coordinator, replace(round2, rejected=((i3.address, digest("unsigned"), Reason.OUTLIER),)),
         label + "a penalty needs the institution's signature over the rejected update"),
        (s.coordinator, s.record(2, digest("model 1"), rejected=[(i3.address, digest(f"bad {k}"), Reason.OUTLIER)
                                                                 for k in range(2)]),
         label + "member already penalized this round"),
    ]
    for sender, record, reason in refused:
        assert twin.do("anchor_round", sender, record) == reason
    twin.check()

    # i3 is rejected twice more: 80 -> 60 -> 40, below 50: suspended.
    others = [i.address for i in (i0, i1, i2)]
    for n in (2, 3):
        bad = [(i3.address, digest(f"bad {n}"), Reason.NORM_ABOVE_BOUND)]
        assert twin.do("anchor_round", s.coordinator, s.record(n, digest(f"model {n - 1}"), others, bad)) is None
    assert twin.read("suspended", i3.address) is True
    assert twin.do("anchor_round", s.coordinator, s.record(4, digest("model 3"))) == label + "participant is suspended"
    suspended = [(i3.address, digest("while suspended"), Reason.SUSPENDED)]      # recorded, not penalized
    assert twin.do("anchor_round", s.coordinator, s.record(4, digest("model 3"), others, suspended)) is None
    assert twin.do("reinstate", s.admin, i0.address) == "StudyLedger.reinstate reverted: member is not suspended"
    assert twin.do("reinstate", s.admin, i3.address) is None
    assert twin.do("reinstate", s.admin, i3.address) == "StudyLedger.reinstate reverted: member is not suspended"
    assert twin.do("anchor_round", s.coordinator, s.record(5, digest("model 4"))) is None
    twin.check()


def test_loose_privacy_budget(embedded):
    twin = loose_twin(embedded, budget=BUDGET, delta=DELTA)
    s, (i0, i1, i2, i3) = twin.s, twin.members
    label = "StudyLedger.anchor_round reverted: "

    def anchored(n, spends, rejected=(), rejected_spends=()):
        people = [p for p, _ in spends]
        return replace(s.record(n, digest(f"model {n - 1}"), people, rejected),
                       spends=tuple(spends), rejected_spends=tuple(rejected_spends))

    everyone = [(i.address, spend(1_000_000)) for i in (i0, i1, i2)]
    refused = {
        label + "one privacy spend per participant and rejection": s.record(1, digest("model 0")),
        label + "participant past its privacy budget": anchored(1, everyone[:2] + [(i2.address, spend(BUDGET + 1))]),
        label + "malformed privacy spend": anchored(1, everyone[:2] + [(i2.address, spend(1_000_000, noise=0))]),
        label + "privacy spend of a non-institution": anchored(
            1, everyone, [(s.outsider.address, None, Reason.NOT_MEMBER)], [(s.outsider.address, spend(1))]),
        label + "rejected member past its privacy budget": anchored(
            1, everyone, [(i3.address, digest("x"), Reason.PRIVACY_BUDGET)], [(i3.address, spend(BUDGET + 1))]),
        "malformed": replace(anchored(1, everyone), spends=tuple(everyone[:2])),   # a participant without one
    }
    for reason, record in refused.items():
        assert twin.do("anchor_round", s.coordinator, record) == reason
    rejected = [(i3.address, digest("x"), Reason.PRIVACY_BUDGET), (i3.address, digest("y"), Reason.OUTLIER)]
    assert twin.do("anchor_round", s.coordinator, anchored(1, everyone, rejected, [(i3.address, spend(500_000))])) \
        is None
    stale = [(i0.address, spend(1_000_000))] + everyone[1:]                     # a total that does not grow
    assert twin.do("anchor_round", s.coordinator, anchored(2, [(i.address, spend(3_000_000)) for i in (i1, i2)]
                                                           + stale[:1])) == label + "malformed privacy spend"
    assert twin.do("set_privacy_budget", s.admin, 0) == \
        "StudyLedger.set_privacy_budget reverted: a privacy budget cannot be switched off"
    assert twin.do("set_privacy_budget", s.admin, 5_000_000) is None
    assert twin.do("anchor_round", s.coordinator, anchored(2, [(i.address, spend(4_000_000)) for i in (i0, i1)])) \
        is None
    twin.check()


# --- semi: CommitteeStudy.vy ---------------------------------------------------------------------


def test_semi_commitments_window_and_majority(embedded):
    twin = round_twin(embedded, "semi")
    s, (a, b, c, d) = twin.s, twin.members
    close = "CommitteeStudy.close_commits reverted: "
    submit = "CommitteeStudy.submit_result reverted: "

    # Every kind of refused commitment is a CommitRejected record, not a revert.
    for sender, kwargs in [(s.outsider, {}), (s.coordinator, {}), (a, {"round": 0}), (a, {"round": 2}),
                           (a, {"parent": digest("model 9")}), (a, {"update": NO_DIGEST}), (a, {"samples": 0}),
                           (a, {"released": spend(1)})]:
        assert twin.commit(sender, **kwargs) is None
    assert twin.commit(a, update="AB" * 32) == "malformed"
    twin.commit(a)
    twin.commit(b)
    twin.commit(a, update=digest("second"))                                     # DUPLICATE
    twin.commit(c, update=twin.read("commitments", 1)[0].update)               # COPIED
    assert twin.do("close_commits", a, 1) == close + "commit window still open"
    assert twin.do("close_commits", a, 2) == close + "not the open round"
    assert twin.do("submit_result", a, 1, 1, *result(1), [0, 0]) == submit + "not on this committee"
    assert [r.reason for r in twin.read("commit_rejections", 1)] == [1, 1, 3, 8, 11, 8, 4, 17]
    assert [r.reason for r in twin.read("commit_rejections", 0) + twin.read("commit_rejections", 2)] == [3, 3]
    twin.check()

    # Everyone eligible committed: the window closes before its deadline.
    twin.commit(c)
    twin.commit(d)
    assert twin.do("close_commits", s.outsider, 1) is None
    assert twin.read("phase") == Phase.AGGREGATING
    twin.commit(c, update=digest("late"))                                       # WRONG_ROUND
    assert twin.do("close_commits", a, 1) == close + "round is not committing"
    reasons = [0, 0, 0, int(Reason.OUTLIER)]
    refused = {
        submit + "not on this committee": (s.outsider, 1, 1, *result(1), reasons),
        submit + "no round 0": (a, 0, 0, *result(0), reasons),
        submit + "empty digest": (a, 1, 1, NO_DIGEST, result(1)[1], reasons),
        submit + "one reason per committed update": (a, 1, 1, *result(1), reasons[:3]),
        submit + "reason code above 18": (a, 1, 1, *result(1), [0, 0, 0, 19]),
    }
    for reason, args in refused.items():
        assert twin.do("submit_result", *args) == reason
    # b dissents; three of the four (a majority) agree; b answers late and is judged again.
    assert twin.do("submit_result", b, 1, 1, *result(1, " other"), reasons) is None
    for member in (a, c):
        assert twin.do("submit_result", member, 1, 1, *result(1), reasons) is None
    assert twin.read("round_count") == 0
    assert twin.do("submit_result", d, 1, 1, *result(1), reasons) is None
    assert twin.read("finalized", 1) == result(1) and twin.read("finalized_reasons", 1) == reasons
    assert twin.do("submit_result", b, 1, 1, *result(1), reasons) == submit + "already submitted"
    twin.check()

    # Round 2: too few commitments past the deadline extend the window; then it closes at the deadline.
    twin.commit(a)
    twin.pass_deadline()
    assert twin.do("close_commits", a, 2) is None
    assert twin.read("phase") == Phase.COMMITTING
    twin.commit(b)
    assert twin.do("close_commits", a, 2) == close + "commit window still open"
    twin.pass_deadline()
    assert twin.do("close_commits", a, 2) is None
    assert twin.read("committers", 2) == [a.address, b.address]
    twin.finish(2, [0, 0], [a, b, c])
    twin.check()


def test_semi_redraw_penalizes_the_absent(embedded):
    twin = round_twin(embedded, "semi")
    s, (a, b, c, d) = twin.s, twin.members
    redraw, submit = "CommitteeStudy.redraw reverted: ", "CommitteeStudy.submit_result reverted: "
    assert twin.do("redraw", a, 1) == redraw + "round is not aggregating"
    for member in twin.members:
        twin.commit(member)
    assert twin.do("close_commits", a, 1) is None
    assert twin.do("submit_result", a, 1, 1, *result(1), [0] * 4) is None      # b, c and d stay silent
    assert twin.do("redraw", s.outsider, 1) == redraw + "result window still open"
    assert twin.do("redraw", s.outsider, 2) == redraw + "not the open round"
    twin.pass_deadline()
    assert twin.do("redraw", s.outsider, 1) is None
    assert [twin.read("reputation", m.address) for m in (a, b, c, d)] == [100, 80, 80, 80]
    assert twin.read("attempt") == 2
    assert twin.do("submit_result", b, 1, 1, *result(1), [0] * 4) == submit + "that committee was replaced"
    assert twin.do("submit_result", a, 1, 1, *result(1), [0] * 4) == submit + "already submitted"
    for member in (a, b, c):
        assert twin.do("submit_result", member, 1, 2, *result(1), [0] * 4) is None
    assert twin.read("final_attempt", 1) == 2
    assert twin.do("submit_result", d, 1, 1, *result(1), [0] * 4) == submit + "that committee was replaced"
    assert twin.do("submit_result", d, 1, 2, *result(1, " late"), [0] * 4) is None   # judged: disagreed
    twin.check()


def test_a_redraw_that_finds_no_one_changes_nothing(embedded):
    """Any loss suspends: the absent penalties would suspend the whole committee, leaving no one to
    draw, so the redraw reverts, penalties included."""
    twin = round_twin(embedded, "semi", threshold=100)
    for member in twin.members:
        twin.commit(member)
    assert twin.do("close_commits", twin.members[0], 1) is None
    twin.pass_deadline()
    assert twin.do("redraw", twin.members[0], 1) == \
        "CommitteeStudy.redraw reverted: no member with reputation left to draw"
    assert twin.read("suspended_count") == 0 and twin.read("attempt") == 1
    twin.check()


def test_the_draw_is_the_documented_one():
    """Off chain the draw's entropy comes from the seed: sha256(f"{seed}:committee:{round}:{attempt}")
    stands for the block hash; the rest is CommitteeStudy's draw."""
    accounts = [Account.create() for _ in range(5)]
    roster = [a.address for a in accounts]

    def study(seed):
        local = LocalSemiStudy(roster, digest("config"), digest("model 0"), WINDOW, WINDOW, 2, 3, seed=seed)
        for account in accounts:
            local.commit_update(account, 1, digest("model 0"), digest(account.address), 10, digest("metrics"))
        local.close_commits(accounts[0], 1)
        return local

    local = study(11)
    entropy = hashlib.sha256(b"11:committee:1:1").digest()
    seed1 = committee_seed(entropy, 1, 1)
    assert local.committee(1, 1) == draw_committee(seed1, roster, [100] * 5, 3)
    assert local.events("CommitteeDrawn")[0]["seed"] == seed1
    assert study(11).committee(1, 1) == local.committee(1, 1)
    assert len({tuple(study(seed).committee(1, 1)) for seed in range(8)}) > 1

    first = local.committee(1, 1)
    local.submit_result(next(a for a in accounts if a.address == first[0]), 1, 1, *result(1), [0] * 5)
    local.advance_blocks(WINDOW)
    local.redraw(accounts[0], 1)
    seed2 = committee_seed(Web3.keccak(seed1 + hashlib.sha256(b"11:committee:1:2").digest()), 1, 2)
    weights = [80 if m in first[1:] else 100 for m in roster]
    assert local.committee(1, 2) == draw_committee(seed2, roster, weights, 3)
    assert local.events("CommitteeDrawn")[1]["seed"] == seed2


# --- full: ConsensusStudy.vy ---------------------------------------------------------------------


def test_full_scores_votes_and_a_wrong_vote_outvoted(embedded):
    twin = round_twin(embedded, "full")
    s, (a, b, c, d) = twin.s, twin.members
    scores, vote = "ConsensusStudy.submit_scores reverted: ", "ConsensusStudy.submit_vote reverted: "
    close = "ConsensusStudy.close_scores reverted: "
    for member in (c, a, b):
        twin.commit(member)
    assert twin.do("submit_scores", a, 1, [1] * 3) == scores + "round is not scoring"
    assert twin.do("close_commits", a, 1) == "ConsensusStudy.close_commits reverted: commit window still open"
    twin.pass_deadline()
    assert twin.do("close_commits", a, 1) is None

    for sender, marks, reason in [(s.outsider, [1] * 3, "not on the study's roster"),
                                  (a, [1] * 2, "one score per committed update"),
                                  (a, [1, 1, 1_000_001], "score above 1000000")]:
        assert twin.do("submit_scores", sender, 1, marks) == scores + reason
    assert twin.do("submit_scores", a, 1, [900_000, 100_000, 800_000]) is None
    assert twin.do("submit_scores", a, 1, [1] * 3) == scores + "already scored this round"
    assert twin.do("close_scores", a, 1) == close + "score window still open"
    twin.pass_deadline()
    assert twin.do("close_scores", a, 1) is None                               # 1 of 4: extended
    assert twin.read("phase") == Phase.SCORING
    for member in (b, c):
        assert twin.do("submit_scores", member, 1, [800_000] * 3) is None
    assert twin.do("close_scores", a, 1) == close + "score window still open"
    twin.pass_deadline()
    assert twin.do("close_scores", a, 1) is None                               # 3 of 4: closed
    assert twin.read("phase") == Phase.VOTING
    twin.check()

    rewards, reasons = [70, 0, 30], [0, int(Reason.LOW_SCORE), 0]              # a's update rejected
    refused = {
        "rejected update cannot be rewarded": (a, 1, *result(1), [1, 1, 1], reasons),
        "one reward per committed update": (a, 1, *result(1), rewards[:2], reasons),
        "one reason per committed update": (a, 1, *result(1), rewards, reasons[:2]),
        "empty digest": (a, 1, result(1)[0], NO_DIGEST, rewards, reasons),
        "not the open round": (a, 2, *result(2), rewards, reasons),
        "no round 0": (a, 0, *result(0), rewards, reasons),
        "not on the study's roster": (s.outsider, 1, *result(1), rewards, reasons),
    }
    for reason, args in refused.items():
        assert twin.do("submit_vote", *args) == vote + reason
    assert twin.do("submit_vote", d, 1, *result(1, " wrong"), rewards, reasons) is None   # outvoted
    for member in (a, b, c):
        assert twin.do("submit_vote", member, 1, *result(1), rewards, reasons) is None
    assert twin.read("round_count") == 1 and twin.read("reputation", d.address) == 50
    assert twin.do("submit_vote", d, 1, *result(1), rewards, reasons) == vote + "already voted this round"
    twin.check()

    # Round 2: three votes finalize, the fourth arrives late and is judged.
    for member in twin.members:
        twin.commit(member)
    assert twin.do("close_commits", a, 2) is None
    twin.finish(2, [0] * 4, twin.members)
    twin.check()


@pytest.mark.parametrize("weighted", [False, True], ids=["by count", "by reputation"])
def test_full_scores_close_after_one_extension_and_a_split_vote_is_reopened(embedded, weighted):
    twin = round_twin(embedded, "full", weighted=weighted)
    a, b, c, d = twin.members
    votes, close = "ConsensusStudy.submit_vote reverted: ", "ConsensusStudy.close_votes reverted: "
    for member in twin.members:
        twin.commit(member)
    assert twin.do("close_commits", a, 1) is None
    for member in (a, b):
        assert twin.do("submit_scores", member, 1, [800_000] * 4) is None
    for _ in range(2):                                                         # extended once, then closed
        twin.pass_deadline()
        assert twin.do("close_scores", a, 1) is None
    assert twin.read("phase") == Phase.VOTING
    assert twin.do("close_votes", a, 1) == close + "vote window still open"
    rewards, reasons = [1] * 4, [0] * 4
    assert twin.do("submit_vote", a, 1, *result(1), rewards, reasons) is None
    assert twin.do("submit_vote", b, 1, *result(1), rewards, reasons) is None
    assert twin.do("submit_vote", c, 1, *result(1, " other"), rewards, reasons) is None   # split, d silent
    twin.pass_deadline()
    assert twin.do("close_votes", d, 1) is None
    assert [twin.read("may_vote", 1, m.address) for m in twin.members] == [True, True, True, False]
    assert twin.do("submit_vote", d, 1, *result(1), rewards, reasons) == votes + "not in this vote's electorate"
    assert twin.do("submit_vote", a, 1, *result(1), rewards, reasons) is None
    assert twin.do("submit_vote", c, 1, *result(1), rewards, reasons) is None
    assert twin.read("round_count") == 1 and twin.read("vote_epoch", 1) == 1
    assert twin.do("submit_vote", b, 1, *result(1), rewards, reasons) is None                # late: judged
    assert twin.do("close_votes", a, 1) == close + "not the open round"
    twin.check()


@pytest.mark.parametrize("kind, weighted", [("semi", False), ("full", False), ("full", True)],
                         ids=["semi", "full by count", "full by reputation"])
def test_repeated_rejections_suspend_until_reinstated(embedded, kind, weighted):
    twin = round_twin(embedded, kind, threshold=70, weighted=weighted)
    s, victim = twin.s, twin.members[3]
    name = twin.local.contract_name
    for _ in range(2):      # -20 for its update, +1 for its late agreeing answer: 81, then 61
        twin.play_round(rejected=[victim])
    assert twin.read("suspensions") == {victim.address: 2}
    assert twin.commit(victim) is None                                         # SUSPENDED
    assert twin.read("commit_rejections", 3)[-1].reason == Reason.SUSPENDED
    assert twin.do("advertise_keys", victim, 3, key("c"), key("m")) == \
        f"{name}.advertise_keys reverted: member is suspended"
    assert twin.do("post_secagg_data", victim, 3, SHARES, b"shares") == \
        f"{name}.post_secagg_data reverted: member is suspended"
    assert twin.do("post_secagg_data", victim, 3, 0, b"") == f"{name}.post_secagg_data reverted: member is suspended"
    twin.play_round()                                                          # without it: quorums of three
    twin.check()
    assert twin.do("reinstate", s.admin, victim.address) is None
    assert twin.do("reinstate", s.admin, victim.address) == f"{name}.reinstate reverted: member is not suspended"
    twin.play_round()
    twin.check()


@pytest.mark.parametrize("kind", ["semi", "full"])
def test_privacy_budget_refusals(embedded, kind):
    twin = round_twin(embedded, kind, budget=BUDGET, delta=DELTA)
    s, (a, b, c, d) = twin.s, twin.members
    for released in (spend(BUDGET + 1), spend(1_000_000, noise=0), NO_SPEND):   # PRIVACY_BUDGET, INVALID_FORMAT
        twin.commit(b, released=released)
    for member, epsilon in ((a, 1_000_000), (b, BUDGET), (c, 2_000_000), (d, 2_000_000)):
        twin.commit(member, released=spend(epsilon))
    assert twin.do("close_commits", a, 1) is None
    twin.finish(1, [0] * 4, twin.members)
    twin.commit(a, released=spend(1_000_000))                                  # its total must grow
    twin.commit(b, released=spend(BUDGET + 1))
    label = f"{twin.local.contract_name}.set_privacy_budget reverted: "
    assert twin.do("set_privacy_budget", s.admin, 0) == label + "a privacy budget cannot be switched off"
    assert twin.do("set_privacy_budget", s.admin, 2 * BUDGET) is None
    twin.commit(b, released=spend(BUDGET + 1))
    assert [r.reason for r in twin.read("commit_rejections", 1)] == [15, 8, 8]
    assert twin.read("epsilon_spent", b.address) == BUDGET + 1
    twin.check()


def test_a_study_without_a_budget_takes_no_spends(embedded):
    twin = round_twin(embedded, "full")
    twin.commit(twin.members[0], released=spend(1))
    assert twin.read("commit_rejections", 1)[0].reason == Reason.INVALID_FORMAT
    assert twin.do("set_privacy_budget", twin.s.admin, BUDGET) == \
        "ConsensusStudy.set_privacy_budget reverted: the study has no privacy budget"
    twin.check()


# --- every contract: the secure-aggregation board, batches, deployment ------------------------------


@pytest.mark.parametrize("kind", ["loose", "semi", "full"])
def test_board_posting_rules(embedded, kind):
    twin = loose_twin(embedded) if kind == "loose" else round_twin(embedded, kind)
    s, (a, b, *_) = twin.s, twin.members
    name = twin.local.contract_name
    assert twin.do("advertise_keys", b, 1, key("b1"), key("b2")) is None
    assert twin.do("advertise_keys", a, 1, key("a1"), key("a2")) is None
    assert twin.do("advertise_keys", b, 1, key("b3"), key("b4")) is None      # logged; b's first keys count
    for step in (SHARES, REVEAL):                                              # logged as they are
        assert twin.do("post_secagg_data", a, 1, step, f"step {step}".encode()) is None
    for step in (CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM):                           # logged as a digest
        assert twin.do("post_secagg", a, 1, step, digest(f"step {step}")) is None
    with twin.batch():                                                         # one block for the three posts
        assert twin.do("post_secagg_data", b, 1, REVEAL, b"b reveal") is None
        assert twin.do("post_secagg_data", b, 1, REVEAL, b"b again") is None
        assert twin.do("post_secagg", b, 1, CKKS_SUM, digest("b sum")) is None
    outsider = "not an active institution" if kind == "loose" else "not on the study's roster"
    refused = [
        (("advertise_keys", s.outsider, 1, key("x"), key("y")), outsider),
        (("post_secagg", s.coordinator, 1, CKKS_SUM, digest("x")), outsider),
        (("post_secagg_data", s.coordinator, 1, SHARES, b"x"), outsider),
        (("advertise_keys", a, 0, key("x"), key("y")), "not the open round"),
        (("post_secagg", a, 2, CKKS_SUM, digest("x")), "not the open round"),
        (("post_secagg_data", a, 2, SHARES, b"x"), "not the open round"),
        (("advertise_keys", a, 1, bytes(32), key("y")), "empty key"),
        (("post_secagg", a, 1, SHARES, digest("x")), "step must be 3 to 5"),
        (("post_secagg", a, 1, REVEAL, digest("x")), "step must be 3 to 5"),
        (("post_secagg", a, 1, CKKS_SUM + 1, digest("x")), "step must be 3 to 5"),
        (("post_secagg", a, 1, CKKS_CONTEXT, NO_DIGEST), "empty digest"),
        (("post_secagg_data", a, 1, CKKS_CONTEXT, b"x"), "step must be 1 or 2"),
        (("post_secagg_data", a, 1, SHARES, b""), "empty data"),
    ]
    for (fn, *args), reason in refused:
        assert twin.do(fn, *args) == f"{name}.{fn} reverted: {reason}"
    assert twin.do("advertise_keys", a, 1, key("x")[:31], key("y")) == "malformed"
    assert twin.read("key_adverts", 1)[0] == Posted(b.address, (key("b1"), key("b2")), 1 + 1 + (kind == "loose"))
    assert twin.read("data_posts", 1, REVEAL) == [Posted(a.address, b"step 2", 6 + (kind == "loose")),
                                                   Posted(b.address, b"b reveal", 10 + (kind == "loose"))]
    assert list(twin.read("secagg_posts", 1, CKKS_SUM).values()) == [digest("step 5"), digest("b sum")]
    assert twin.read("advertised_keys", 1) == {b.address: (key("b1"), key("b2")), a.address: (key("a1"), key("a2"))}
    assert [e["data"] for e in twin.local.events("SecAggData", 1)] == [b"step 1", b"step 2", b"b reveal", b"b again"]
    twin.check()


@pytest.mark.parametrize("kind", ["loose", "semi", "full"])
def test_evaluations_of_finalized_models_are_logged_once_per_member(embedded, kind):
    """submit_evaluation (evaluations.vy): any member that may take part, once per finalized round."""
    twin = loose_twin(embedded) if kind == "loose" else round_twin(embedded, kind)
    s, (a, b, *_) = twin.s, twin.members
    name, fn = twin.local.contract_name, "submit_evaluation"
    not_yet = "round not anchored" if kind == "loose" else "round not finalized"
    assert twin.do(fn, a, 1, digest("a 1")) == f"{name}.{fn} reverted: {not_yet}"
    if kind == "loose":
        assert twin.do("anchor_round", s.coordinator, s.record(1, digest("model 0"))) is None
    else:
        twin.play_round()
    outsider = "not an active institution" if kind == "loose" else "not on the study's roster"
    refused = [((a, 0, digest("a 0")), not_yet), ((a, 2, digest("a 2")), not_yet),
               ((s.outsider, 1, digest("x")), outsider), ((a, 1, NO_DIGEST), "empty digest")]
    for args, reason in refused:
        assert twin.do(fn, *args) == f"{name}.{fn} reverted: {reason}"
    assert twin.do(fn, b, 1, digest("b 1")) is None
    assert twin.do(fn, a, 1, digest("a 1")) is None
    assert twin.do(fn, a, 1, digest("a again")) == f"{name}.{fn} reverted: already evaluated this round"
    assert twin.read("evaluations", 1) == {b.address: digest("b 1"), a.address: digest("a 1")}
    assert twin.read("evaluation_of", 1, a.address) == digest("a 1")
    assert twin.read("evaluation_of", 1, s.outsider.address) is None
    twin.check()


BAD_DATA_POSTS = {   # case: (twin -> (sender, round, step, data), reason, "outsider" for the kind's own)
    "step 0": (lambda t: (t.members[0], 1, 0, b"x"), "step must be 1 or 2"),
    "a CKKS step": (lambda t: (t.members[0], 1, CKKS_CONTEXT, b"x"), "step must be 1 or 2"),
    "step 6": (lambda t: (t.members[0], 1, CKKS_SUM + 1, b"x"), "step must be 1 or 2"),
    "step 255": (lambda t: (t.members[0], 1, 255, b"x"), "step must be 1 or 2"),
    "empty shares": (lambda t: (t.members[0], 1, SHARES, b""), "empty data"),
    "empty reveal": (lambda t: (t.members[0], 1, REVEAL, b""), "empty data"),
    "bad step and empty data": (lambda t: (t.members[0], 1, 0, b""), "step must be 1 or 2"),
    "outsider": (lambda t: (t.s.outsider, 1, SHARES, b"x"), "outsider"),
    "coordinator": (lambda t: (t.s.coordinator, 1, REVEAL, b"x"), "outsider"),
    "outsider, bad step, empty data": (lambda t: (t.s.outsider, 1, 0, b""), "outsider"),
    "outsider, wrong round": (lambda t: (t.s.outsider, 2, SHARES, b"x"), "outsider"),
    "round 0": (lambda t: (t.members[0], 0, SHARES, b"x"), "not the open round"),
    "next round": (lambda t: (t.members[0], 2, SHARES, b"x"), "not the open round"),
    "next round, bad step, empty data": (lambda t: (t.members[0], 2, 0, b""), "not the open round"),
    "text for data": (lambda t: (t.members[0], 1, SHARES, "step 1 shares"), "malformed"),
    "a number for data": (lambda t: (t.members[0], 1, SHARES, 1), "malformed"),
    "outsider, text for data": (lambda t: (t.s.outsider, 1, SHARES, "x"), "malformed"),
}


@pytest.mark.parametrize("kind", ["loose", "semi", "full"])
def test_bad_data_posts_are_refused_alike(embedded, kind):
    twin = loose_twin(embedded, start=False) if kind == "loose" else round_twin(embedded, kind)
    a, name = twin.members[0], twin.local.contract_name
    if kind == "loose":
        for args in ((a, 1, SHARES, b"x"), (a, 0, 0, b""), (twin.s.outsider, 1, REVEAL, b"x")):
            assert twin.do("post_secagg_data", *args) == f"{name}.post_secagg_data reverted: study not started"
        assert twin.do("start_study", twin.s.coordinator, digest("config"), digest("model 0")) is None
    outsider = "not an active institution" if kind == "loose" else "not on the study's roster"
    for case, (make, reason) in BAD_DATA_POSTS.items():
        expected = reason if reason == "malformed" else \
            f"{name}.post_secagg_data reverted: {outsider if reason == 'outsider' else reason}"
        assert twin.do("post_secagg_data", *make(twin)) == expected, case
    for client in (twin.real, twin.local):      # past MAX_DATA: refused before anything is sent
        with pytest.raises(ValueError, match=f"at most {MAX_DATA} bytes"):
            client.post_secagg_data(a, 1, SHARES, bytes(MAX_DATA + 1))
    assert twin.read("data_posts", 1, SHARES) == twin.read("data_posts", 1, REVEAL) == []
    assert twin.do("post_secagg_data", a, 1, SHARES, bytes(MAX_DATA)) is None     # the bound itself is taken
    assert twin.read("data_posts", 1, SHARES)[0].value == bytes(MAX_DATA)
    twin.check()


def test_batched_transactions_share_a_block(embedded):
    twin = round_twin(embedded, "semi")
    a, b, c, d = twin.members
    with twin.batch():
        pass
    assert twin.read("block_number") == 1                                      # an empty batch mines nothing
    with twin.batch():
        for member in (a, b, c):
            twin.commit(member)
        twin.commit(a)                                                         # DUPLICATE, in the same block
        assert twin.do("close_commits", a, 1) == "CommitteeStudy.close_commits reverted: commit window still open"
    assert twin.read("block_number") == 2 and twin.read("first_commit_block", 1) == 2
    twin.commit(d)
    assert twin.read("block_number") == 3
    twin.check()


DEPLOYMENT_REFUSED = {   # case: (terms, committee_size, reason); the semi ones are CommitteeStudy's alone
    "committee of 0": ({}, 0, "committee_size must be 1..16"),
    "committee of 17": ({}, 17, "committee_size must be 1..16"),
    "committee larger than the roster": ({}, 5, "committee larger than the roster"),
    "empty config digest": ({"config_digest": NO_DIGEST}, 2, "empty config digest"),
    "one member": ({"roster": 1, "min_participants": 1}, 1, "a study needs at least two members"),
    "min_participants 0": ({"min_participants": 0}, 2, "min_participants out of range"),
    "min_participants above the roster": ({"min_participants": 5}, 2, "min_participants out of range"),
    "window of 0": ({"commit_window": 0}, 2, "windows must be at least one block"),
    "threshold 101": ({"suspension_threshold": 101}, 2, "suspension threshold above the initial reputation"),
    "epsilon without delta": ({"epsilon_budget": 1}, 2, "a privacy budget needs both epsilon and delta"),
    "delta of 1": ({"epsilon_budget": 1, "delta": 10**18}, 2, "delta must be below 1"),
    "member listed twice": ({"roster": "twice"}, 2, "member listed twice"),
}


@pytest.fixture(scope="module")
def deployer():
    chain = EmbeddedChain.create(None)
    yield set_up_study(chain, ledger=False)
    chain.close()


@pytest.mark.parametrize("kind", ["semi", "full"])
def test_refused_deployments_agree(deployer, kind):
    s = deployer
    addresses = [m.address for m in s.institutions]
    for case, (changes, size, reason) in DEPLOYMENT_REFUSED.items():
        if kind == "full" and case.startswith("committee"):
            continue
        roster = {1: addresses[:1], "twice": addresses + addresses[:1]}.get(changes.get("roster"), addresses)
        terms = replace(StudyTerms(digest("config"), digest("model 0"), tuple(roster), WINDOW, WINDOW, 2),
                        **{k: v for k, v in changes.items() if k != "roster"})
        args = (list(terms.roster), terms.config_digest, terms.initial_model, terms.commit_window,
                terms.result_window, terms.min_participants)
        budget = (terms.suspension_threshold, terms.epsilon_budget, terms.delta)
        messages = []
        for deploy in ((lambda: SemiStudy.deploy(s.backend, s.coordinator, s.consortium, terms, size),
                        lambda: LocalSemiStudy(*args, size, *budget)) if kind == "semi" else
                       (lambda: FullStudy.deploy(s.backend, s.coordinator, s.consortium, terms),
                        lambda: LocalFullStudy(*args, *budget))):
            with pytest.raises(TransactionReverted) as refused:
                deploy()
            messages.append(str(refused.value))
        expected = f"{'CommitteeStudy' if kind == 'semi' else 'ConsensusStudy'}.constructor reverted: {reason}"
        assert messages == [expected, expected], case


# --- the stand-ins' own parts --------------------------------------------------------------------


def test_the_clock_mines_a_block_per_transaction_or_per_batch():
    clock = LocalClock()
    clock.landed()
    assert (clock.block_number(), clock.next_block()) == (1, 2)
    with clock.batch():
        clock.landed()
        with clock.batch():                                                    # nested: the outer one mines
            clock.landed()
        assert clock.block_number() == 1
    assert clock.block_number() == 2
    with clock.batch():
        clock.landed()
        clock.advance_blocks(3)                                                # the first block holds it
        clock.advance_blocks(0)
    assert clock.block_number() == 5


def test_the_stand_ins_by_architecture():
    assert LOCAL_STUDIES == {"loose": LocalLooseStudy, "semi": LocalSemiStudy, "full": LocalFullStudy}
    study = LocalLooseStudy([])
    assert (study.chain_id, study.address, study.block_number(), study.started()) == (0, "0x" + "00" * 20, 1, False)
    with pytest.raises(TransactionReverted, match=r"^StudyLedger\.get_round reverted: no such round$"):
        study.get_round(1)


def test_the_rules():
    assert [commit_closing(1, 2, True, True), commit_closing(2, 2, False, True), commit_closing(2, 2, False, False),
            commit_closing(2, 2, True, False)] == [Closing.EXTEND, Closing.CLOSE, Closing.WAIT, Closing.CLOSE]
    assert [score_closing(4, 4, False, False), score_closing(3, 4, False, False), score_closing(3, 4, True, False),
            score_closing(2, 4, True, False), score_closing(2, 4, True, True),
            score_closing(0, 4, True, True)] == [Closing.CLOSE, Closing.WAIT, Closing.CLOSE, Closing.EXTEND,
                                                  Closing.CLOSE, Closing.EXTEND]
    assert [semi_majority(k, 4) for k in (2, 3)] == [False, True] and semi_majority(1, 1)
    standings = [(104, False), (104, False), (62, False), (10, True)]
    assert quorum_total(standings, False) == 3 and quorum_total(standings, True) == 270
    assert full_quorum(2, 3) and not full_quorum(1, 3) and full_quorum(180, 270) and not full_quorum(179, 270)
