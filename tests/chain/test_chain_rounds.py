"""CommitteeStudy.vy and ConsensusStudy.vy (and the rounds.vy module they share): starting a
study, committing updates, closing phases, committee draws, result votes, reputation and rewards.

Everything runs on the real embedded EVM. Deadlines are block numbers: a transaction mines one
block, a refused one mines none, and `Run.next_tx_lands_at` mines empty blocks to reach a deadline.
"""

import re
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest
from eth_abi import abi
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain import (
    INITIAL_REPUTATION,
    SemiStudy,
    FullStudy,
    EmbeddedChain,
    Phase,
    Role,
    RoundStudy,
    StudyTerms,
    committee_seed,
    draw_committee,
    reputation_after,
    result_key,
)
from fedledger.errors import TransactionReverted

from .conftest import Study, digest, set_up_study

COMMIT_WINDOW = 10
RESULT_WINDOW = 10
KINDS = ("committee", "consensus")
# Reason codes (fedledger/validation/reasons.py; test_reason_codes_match_the_validation_module checks them).
ACCEPTED, NOT_MEMBER, SUSPENDED, WRONG_ROUND, DUPLICATE, INVALID_FORMAT, OUT_OF_RANGE = 0, 1, 2, 3, 4, 8, 11
COPIED = 17
NORM_ABOVE_BOUND, OUTLIER, LOW_SCORE, MISSING = 12, 13, 14, 6


# --- harness -----------------------------------------------------------------------------------


def set_up_consortium(backend, institutions: int) -> Study:
    """A funded consortium as conftest.set_up_study makes it, without the LooseStudy these tests
    do not use."""
    return set_up_study(backend, institutions=institutions, ledger=False)


def make_terms(s: Study, roster=None, *, commit_window=COMMIT_WINDOW, result_window=RESULT_WINDOW,
               min_participants=2, suspension_threshold=0) -> StudyTerms:
    roster = [m.address for m in s.institutions] if roster is None else roster
    return StudyTerms(config_digest=digest("config"), initial_model=digest("model 0"), roster=tuple(roster),
                      commit_window=commit_window, result_window=result_window, min_participants=min_participants,
                      suspension_threshold=suspension_threshold)


def deploy(s: Study, kind: str, terms: StudyTerms, *, sponsor=None, consortium=None, committee_size=3,
           weighted=False) -> RoundStudy:
    sponsor = s.coordinator if sponsor is None else sponsor
    consortium = s.consortium if consortium is None else consortium
    if kind == "committee":
        return SemiStudy.deploy(s.backend, sponsor, consortium, terms, committee_size)
    return FullStudy.deploy(s.backend, sponsor, consortium, terms, weighted)


def submit(run: "Run", member: LocalAccount, round: int, attempt: int, model: str, manifest: str, reasons=None):
    """A committee result; reasons: every committed update aggregated (0) unless given."""
    reasons = [ACCEPTED] * len(run.study.committers(round)) if reasons is None else reasons
    return run.study.submit_result(member, round, attempt, model, manifest, reasons)


def refused(label: str, reason: str):
    """Expect `label` ("Contract.function") to revert with exactly `reason`."""
    return pytest.raises(TransactionReverted, match=rf"^{re.escape(label)} reverted: {re.escape(reason)}$")


@dataclass
class Run:
    """A deployed study and the consortium around it; `members` is the roster, in roster order."""
    s: Study
    study: RoundStudy
    members: list[LocalAccount]

    @property
    def backend(self):
        return self.s.backend

    @property
    def name(self) -> str:
        return self.study.contract_name

    def account(self, address: str) -> LocalAccount:
        return next(m for m in self.s.institutions if m.address == address)

    def update(self, member: LocalAccount, round: int) -> str:
        return digest(f"update {round} {member.address}")

    def commit(self, member: LocalAccount, round: int | None = None, *, parent: str | None = None,
               update: str | None = None, samples: int = 10, metrics: str | None = None):
        round = self.study.open_round() if round is None else round
        return self.study.commit_update(
            member, round, self.study.latest_model() if parent is None else parent,
            self.update(member, round) if update is None else update, samples,
            digest(f"metrics {round} {member.address}") if metrics is None else metrics)

    def commit_all(self, members=None) -> list:
        round, parent = self.study.open_round(), self.study.latest_model()
        return [self.commit(m, round, parent=parent) for m in (self.members if members is None else members)]

    def next_tx_lands_at(self, block: int) -> None:
        """Mine empty blocks so that the next transaction is mined in block `block`."""
        head = self.backend.block_number()
        assert head < block, f"block {block} is already mined (head {head})"
        self.backend.advance_blocks(block - 1 - head)

    def pass_deadline(self) -> None:
        """The next transaction lands in the first block past the phase deadline."""
        self.next_tx_lands_at(self.study.phase_deadline() + 1)

    def reputations(self) -> dict[str, int]:
        return {m.address: self.study.reputation(m.address) for m in self.members}

    def changes(self, round: int, from_block: int = 0) -> list[tuple[str, int, int, str]]:
        """ReputationChanged events of `round` as (member, before, after, reason)."""
        return [(e["member"], e["before"], e["after"], e["reason"])
                for e in self.study.events("ReputationChanged", round, from_block)]


def start(embedded, kind: str, *, institutions=4, committee_size=3, weighted=False, **terms) -> Run:
    s = set_up_consortium(embedded, institutions)
    study = deploy(s, kind, make_terms(s, **terms), committee_size=committee_size, weighted=weighted)
    return Run(s, study, list(s.institutions))


@pytest.fixture
def committee(embedded) -> Run:
    """CommitteeStudy: 5 members, committees of 3, min_participants 2."""
    return start(embedded, "committee", institutions=5, committee_size=3)


@pytest.fixture
def consensus(embedded) -> Run:
    """ConsensusStudy, votes counted per member: 4 members, min_participants 2."""
    return start(embedded, "consensus", institutions=4)


@pytest.fixture(params=KINDS)
def either(request, embedded) -> Run:
    """Each architecture in turn: 4 members, min_participants 2 (committees of 3)."""
    return start(embedded, request.param, institutions=4)


def replay(run: Run, moves, since: dict[str, int] | None = None) -> list[tuple[str, int, int, str]]:
    """The ReputationChanged events (member, before, after, reason) that `moves` ((member, reason)
    each) must log, starting from `since` (the current reputations unless given)."""
    reputations = dict(run.reputations() if since is None else since)
    expected = []
    for member, reason in moves:
        before = reputations[member.address]
        reputations[member.address] = reputation_after(before, reason)
        expected.append((member.address, before, reputations[member.address], reason))
    return expected


def close_and_draw(run: Run) -> tuple[dict, dict]:
    """Close the commit phase of the open round; the CommitteeDrawn event and the receipt."""
    round = run.study.open_round()
    receipt = run.study.close_commits(run.members[0], round)
    (drawn,) = run.study.events("CommitteeDrawn", round, receipt["blockNumber"])
    return drawn, receipt


def expected_draw(run: Run, seed: bytes) -> list[str]:
    """The committee the draw must give now: reputation-weighted, 0 for inactive institutions and
    suspended members."""
    roster = run.study.roster()
    weights = [run.study.reputation(m) if run.s.consortium.has_role(m, Role.INSTITUTION) and not run.study.suspended(m)
               else 0 for m in roster]
    return draw_committee(seed, roster, weights, run.study.committee_size())


def block_hash(run: Run, number: int) -> bytes:
    return bytes(run.backend.w3.eth.get_block(number)["hash"])


def result(round: int, tag: str = "") -> tuple[str, str]:
    return digest(f"model {round}{tag}"), digest(f"manifest {round}{tag}")


def to_scoring_and_voting(run: Run, committers=None) -> None:
    """ConsensusStudy: commit (everyone, or `committers`), close, everyone scores, close the scores."""
    committers = run.members if committers is None else committers
    round = run.study.open_round()
    run.commit_all(committers)
    if len(committers) < len(run.members):
        run.pass_deadline()
    run.study.close_commits(run.members[0], round)
    for member in run.members:
        run.study.submit_scores(member, round, [800_000] * len(committers))
    run.study.close_scores(run.members[0], round)
    assert run.study.phase() == Phase.VOTING


# --- starting a study ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_deploying_starts_the_study_and_opens_round_one(embedded, kind):
    s = set_up_consortium(embedded, 4)
    terms = make_terms(s, min_participants=3, commit_window=7, result_window=9, suspension_threshold=40)
    study = deploy(s, kind, terms, committee_size=2, weighted=True)
    deployed_at = embedded.block_number()
    roster = [m.address for m in s.institutions]

    assert study.roster() == roster
    assert (study.config_digest(), study.initial_model(), study.latest_model()) == \
        (digest("config"), digest("model 0"), digest("model 0"))
    assert study._view("sponsor") == s.coordinator.address
    assert study._view("consortium") == s.consortium.address
    assert (study._view("commit_window"), study._view("result_window"), study._view("min_participants")) == \
        (7, 9, 3)
    assert all(study._view("on_roster", m) for m in roster) and not study._view("on_roster", s.outsider.address)
    assert [study.reputation(m) for m in roster] == [INITIAL_REPUTATION] * 4
    assert study.reputation(s.outsider.address) == 0
    assert study.suspension_threshold() == 40 and study._view("suspended_count") == 0
    assert not any(study.suspended(m) for m in roster)
    assert (study.round_count(), study.open_round(), study.phase()) == (0, 1, Phase.COMMITTING)
    assert study.phase_deadline() == deployed_at + 7
    assert study.committers(1) == [] and study.finalized(1) is None
    if kind == "committee":
        assert (study.committee_size(), study.attempt()) == (2, 0)
    else:
        assert study.weight_by_reputation() is True

    (started,) = study.events("StudyStarted")
    assert started["sponsor"] == s.coordinator.address
    assert (started["config_digest"].hex(), started["initial_model"].hex()) == (digest("config"), digest("model 0"))
    assert list(started["members"]) == roster and started["block"] == deployed_at
    (opened,) = study.events("RoundOpened")
    assert (opened["round_number"], opened["parent_model"].hex(), opened["deadline"], opened["block"]) == \
        (1, digest("model 0"), deployed_at + 7, deployed_at)
    assert [e["event"] for e in study.all_events()] == ["StudyStarted", "RoundOpened"]


@pytest.fixture(scope="module")
def deployer():
    """A consortium (4 institutions, one of them removed, one auditor) for refused deployments,
    which leave no trace, so it is shared."""
    chain = EmbeddedChain.create(None)
    s = set_up_consortium(chain, 5)
    s.consortium.remove_member(s.admin, s.institutions[4].address)
    auditor = Account.create()
    s.consortium.add_member(s.admin, auditor.address, "auditor", Role.AUDITOR)
    yield s, auditor
    chain.close()


def _roster(s, *extra, n=4):
    return [m.address for m in s.institutions[:n]] + list(extra)


DEPLOY_REFUSED = {   # case: (kind or None for both, (s, auditor) -> deploy kwargs, reason)
    "sponsor is an institution": (None, lambda s, a: {"sponsor": s.institutions[0]}, "caller is not a coordinator"),
    "sponsor is the consortium admin": (None, lambda s, a: {"sponsor": s.admin}, "caller is not a coordinator"),
    "sponsor is an outsider": (None, lambda s, a: {"sponsor": s.outsider}, "caller is not a coordinator"),
    "consortium is an account": (None, lambda s, a: {"consortium": SimpleNamespace(address=s.outsider.address)},
                                 "consortium is not a contract"),
    "empty config digest": (None, lambda s, a: {"terms": {"config_digest": "00" * 32}}, "empty config digest"),
    "empty initial model": (None, lambda s, a: {"terms": {"initial_model": "00" * 32}}, "empty initial model"),
    "one member": (None, lambda s, a: {"terms": {"roster": _roster(s, n=1), "min_participants": 1},
                                       "committee_size": 1}, "a study needs at least two members"),
    "no members": ("consensus", lambda s, a: {"terms": {"roster": [], "min_participants": 0}, "committee_size": 0},
                   "a study needs at least two members"),
    "outsider on the roster": (None, lambda s, a: {"terms": {"roster": _roster(s, s.outsider.address)}},
                               "member is not an institution"),
    "coordinator on the roster": (None, lambda s, a: {"terms": {"roster": _roster(s, s.coordinator.address)}},
                                  "member is not an institution"),
    "auditor on the roster": (None, lambda s, a: {"terms": {"roster": _roster(s, a.address)}},
                              "member is not an institution"),
    "removed member on the roster": (None, lambda s, a: {"terms": {"roster": _roster(s, s.institutions[4].address)}},
                                     "member is not an institution"),
    "member listed twice": (None, lambda s, a: {"terms": {"roster": _roster(s, s.institutions[1].address)}},
                            "member listed twice"),
    "min_participants 0": (None, lambda s, a: {"terms": {"min_participants": 0}}, "min_participants out of range"),
    "min_participants above roster": (None, lambda s, a: {"terms": {"min_participants": 5}},
                                      "min_participants out of range"),
    "commit window 0": (None, lambda s, a: {"terms": {"commit_window": 0}}, "windows must be at least one block"),
    "result window 0": (None, lambda s, a: {"terms": {"result_window": 0}}, "windows must be at least one block"),
    "suspension threshold 101": (None, lambda s, a: {"terms": {"suspension_threshold": 101}},
                                 "suspension threshold above the initial reputation"),
    "committee of 0": ("committee", lambda s, a: {"committee_size": 0}, "committee_size must be 1..16"),
    "committee of 17": ("committee", lambda s, a: {"committee_size": 17}, "committee_size must be 1..16"),
    "committee larger than roster": ("committee", lambda s, a: {"committee_size": 5},
                                     "committee larger than the roster"),
}


@pytest.mark.parametrize("case, kind", [(case, kind) for case, (only, _, _) in DEPLOY_REFUSED.items()
                                        for kind in KINDS if only in (None, kind)])
def test_refused_deployment_surfaces_the_reason(deployer, case, kind):
    _, make, reason = DEPLOY_REFUSED[case]
    s, auditor = deployer
    args = make(s, auditor)
    overrides = args.pop("terms", {})
    terms = replace(make_terms(s, _roster(s)), **{k: tuple(v) if k == "roster" else v for k, v in overrides.items()})
    name = "CommitteeStudy" if kind == "committee" else "ConsensusStudy"
    head = s.backend.block_number()
    with refused(f"{name}.constructor", reason):
        deploy(s, kind, terms, **args)
    assert s.backend.block_number() == head


@pytest.mark.parametrize("kind", KINDS)
def test_boundary_terms_are_accepted(deployer, kind):
    """Two members, min_participants = roster, one-block windows, a committee of the whole roster,
    the highest suspension threshold."""
    s, _ = deployer
    terms = make_terms(s, _roster(s, n=2), commit_window=1, result_window=1, min_participants=2,
                       suspension_threshold=INITIAL_REPUTATION)
    study = deploy(s, kind, terms, committee_size=2)
    assert study.roster() == _roster(s, n=2) and study.phase() == Phase.COMMITTING
    assert study.suspension_threshold() == INITIAL_REPUTATION


def test_a_committee_of_sixteen_is_accepted(embedded):
    run = start(embedded, "committee", institutions=16, committee_size=16)
    assert run.study.committee_size() == 16
    run.commit_all()
    drawn, _ = close_and_draw(run)
    assert sorted(drawn["committee"]) == sorted(m.address for m in run.members)


# --- committing updates ----------------------------------------------------------------------


def test_commits_are_recorded_in_commit_order(either):
    run = either
    order = [run.members[2], run.members[0], run.members[3]]
    receipts = [run.commit(m, samples=100 + i, metrics=digest(f"metrics of {i}")) for i, m in enumerate(order)]

    assert run.study.committers(1) == [m.address for m in order]
    assert [(c.member, c.update, c.num_samples) for c in run.study.commitments(1)] == \
        [(m.address, run.update(m, 1), 100 + i) for i, m in enumerate(order)]
    assert run.study._view("commitment", 1, run.members[1].address) == (b"\0" * 32, 0)
    events = run.study.events("UpdateCommitted", 1)
    assert [(e["member"], e["update"].hex(), e["num_samples"], e["metrics_digest"].hex(), e["block"])
            for e in events] == [(m.address, run.update(m, 1), 100 + i, digest(f"metrics of {i}"), r["blockNumber"])
                                 for i, (m, r) in enumerate(zip(order, receipts, strict=True))]
    assert run.study.phase() == Phase.COMMITTING and run.study.committers(2) == []


@pytest.fixture(scope="module", params=KINDS)
def committing(request):
    """A study with round 1 open, member 0 committed, member 3 removed from the consortium, member 2
    demoted to auditor and an institution that is not on the roster; refused commits leave it
    unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    s = set_up_consortium(chain, 5)
    run = Run(s, deploy(s, request.param, make_terms(s, _roster(s))), s.institutions[:4])
    run.commit(run.members[0])
    s.consortium.remove_member(s.admin, run.members[3].address)
    s.consortium.set_roles(s.admin, run.members[2].address, Role.AUDITOR)
    yield run
    chain.close()


COMMIT_REJECTED = {   # case: (run -> (sender, commit kwargs), reason code)
    "outsider": (lambda r: (r.s.outsider, {}), NOT_MEMBER),
    "coordinator": (lambda r: (r.s.coordinator, {}), NOT_MEMBER),
    "institution not on the roster": (lambda r: (r.s.institutions[4], {}), NOT_MEMBER),
    "member removed from the consortium": (lambda r: (r.members[3], {}), NOT_MEMBER),
    "member no longer an institution": (lambda r: (r.members[2], {}), NOT_MEMBER),
    "outsider, wrong round": (lambda r: (r.s.outsider, {"round": 2}), NOT_MEMBER),   # checked in that order
    "round 0": (lambda r: (r.members[1], {"round": 0}), WRONG_ROUND),
    "round 2": (lambda r: (r.members[1], {"round": 2}), WRONG_ROUND),
    "parent is not the latest model": (lambda r: (r.members[1], {"parent": digest("model 1")}), WRONG_ROUND),
    "empty update digest": (lambda r: (r.members[1], {"update": "00" * 32}), INVALID_FORMAT),
    "zero samples": (lambda r: (r.members[1], {"samples": 0}), OUT_OF_RANGE),
    "zero samples, empty digest": (lambda r: (r.members[1], {"samples": 0, "update": "00" * 32}), OUT_OF_RANGE),
    "second commit": (lambda r: (r.members[0], {}), DUPLICATE),
    "second commit, other update": (lambda r: (r.members[0], {"update": digest("other")}), DUPLICATE),
    "second commit, no samples": (lambda r: (r.members[0], {"samples": 0}), DUPLICATE),
    "second commit, old parent": (lambda r: (r.members[0], {"parent": digest("model 1")}), WRONG_ROUND),
    # issue 14, finding 10: another member's update digest, committed again (the first one keeps it)
    "a copy of another's update": (lambda r: (r.members[1], {"update": r.update(r.members[0], 1)}), COPIED),
}


@pytest.mark.parametrize("case", COMMIT_REJECTED)
def test_refused_commit_is_recorded_with_its_reason(committing, case):
    """A refusal that is the sender's own is no revert: the transaction lands with a CommitRejected
    record, stores nothing and costs no reputation."""
    run = committing
    make, code = COMMIT_REJECTED[case]
    sender, kwargs = make(run)
    round = kwargs.get("round", 1)
    update = kwargs.get("update", run.update(sender, round))
    reputations = run.reputations()
    receipt = run.commit(sender, **kwargs)
    assert receipt["status"] == 1
    (event,) = run.study.events("CommitRejected", round, receipt["blockNumber"])
    assert (event["member"], event["update"].hex(), event["reason"]) == (sender.address, update, code)
    assert run.study.commit_rejections(round, receipt["blockNumber"]) == \
        [(sender.address, None if update == "00" * 32 else update, code)]
    assert run.study.events("UpdateCommitted", from_block=receipt["blockNumber"]) == []
    assert run.study.committers(1) == [run.members[0].address] and run.study.committers(2) == []
    assert run.study.commitments(1)[0].update == run.update(run.members[0], 1)
    assert run.reputations() == reputations
    assert run.study.events("ReputationChanged", from_block=receipt["blockNumber"]) == []


def test_an_empty_metrics_digest_is_allowed(either):
    either.commit(either.members[0], metrics="00" * 32)
    (event,) = either.study.events("UpdateCommitted", 1)
    assert event["metrics_digest"] == b"\0" * 32


# --- closing the commit phase ----------------------------------------------------------------


def test_commit_phase_closes_at_once_when_everyone_committed(either):
    run = either
    run.commit_all()
    deadline = run.study.phase_deadline()
    receipt = run.study.close_commits(run.s.outsider, 1)   # anyone may close
    assert receipt["blockNumber"] < deadline
    assert run.study.phase() == 2   # AGGREGATING / SCORING
    assert run.study.phase_deadline() == receipt["blockNumber"] + RESULT_WINDOW
    assert run.study.events("CommitWindowExtended") == []


def test_commit_phase_stays_open_until_the_deadline(either):
    run = either
    run.commit_all(run.members[:2])
    deadline = run.study.phase_deadline()
    with refused(f"{run.name}.close_commits", "commit window still open"):
        run.study.close_commits(run.members[0], 1)
    run.next_tx_lands_at(deadline)                         # the deadline block itself is still inside
    with refused(f"{run.name}.close_commits", "commit window still open"):
        run.study.close_commits(run.members[0], 1)
    for wrong in (0, 2):
        with refused(f"{run.name}.close_commits", "not the open round"):
            run.study.close_commits(run.members[0], wrong)
    run.backend.advance_blocks(1)                          # refusals mined nothing
    receipt = run.study.close_commits(run.members[0], 1)   # min_participants = 2 committed
    assert receipt["blockNumber"] == deadline + 1
    assert run.study.phase() == 2
    assert run.study.committers(1) == [m.address for m in run.members[:2]]

    late = run.commit(run.members[2])                      # too late: recorded, not committed
    assert run.study.commit_rejections(1, late["blockNumber"]) == [(run.members[2].address,
                                                                   run.update(run.members[2], 1), WRONG_ROUND)]
    assert run.study.committers(1) == [m.address for m in run.members[:2]]
    with refused(f"{run.name}.close_commits", "round is not committing"):
        run.study.close_commits(run.members[0], 1)


def test_too_few_commitments_extend_the_window(embedded):
    for kind in KINDS:
        run = start(embedded, kind, institutions=4, min_participants=3)
        run.commit_all(run.members[:2])
        run.pass_deadline()
        receipt = run.study.close_commits(run.members[1], 1)
        block = receipt["blockNumber"]
        (extended,) = run.study.events("CommitWindowExtended", 1)
        assert (extended["committed"], extended["deadline"], extended["block"]) == (2, block + COMMIT_WINDOW, block)
        assert (run.study.phase(), run.study.phase_deadline()) == (Phase.COMMITTING, block + COMMIT_WINDOW)

        run.commit(run.members[2])                        # a latecomer gets in
        with refused(f"{run.name}.close_commits", "commit window still open"):
            run.study.close_commits(run.members[1], 1)
        run.pass_deadline()
        run.study.close_commits(run.members[1], 1)
        assert run.study.phase() == 2
        assert run.study.committers(1) == [m.address for m in run.members[:3]]
        assert len(run.study.events("CommitWindowExtended", 1)) == 1


def test_nobody_committed_extends_the_window_again_and_again(either):
    run = either
    for _ in range(2):
        run.pass_deadline()
        run.study.close_commits(run.members[0], 1)
        assert run.study.phase() == Phase.COMMITTING
    assert [e["committed"] for e in run.study.events("CommitWindowExtended", 1)] == [0, 0]


# --- SemiStudy: drawing the committee ---------------------------------------------------


def test_committee_is_the_documented_reputation_draw(committee):
    """Three rounds: each committee and seed recomputed off chain from the closing block's parent."""
    run = committee
    for round in (1, 2, 3):
        run.commit_all()
        reputations_before = run.reputations()
        drawn, receipt = close_and_draw(run)
        block = receipt["blockNumber"]
        seed = committee_seed(block_hash(run, block - 1), round, 1)
        assert run.reputations() == reputations_before      # drawing changes no reputation
        assert (drawn["round_number"], drawn["attempt"], drawn["seed"], drawn["deadline"]) == \
            (round, 1, seed, block + RESULT_WINDOW)
        assert list(drawn["committee"]) == expected_draw(run, seed)
        assert len(drawn["committee"]) == 3 and len(set(drawn["committee"])) == 3
        assert run.study.committee(round, 1) == list(drawn["committee"])
        assert run.study._view("seed_of", round, 1) == seed
        assert (run.study.attempt(), run.study.phase(), run.study.phase_deadline()) == \
            (1, Phase.AGGREGATING, block + RESULT_WINDOW)

        # The first committee member dissents, so reputations drift apart from round to round.
        first, *others = map(run.account, drawn["committee"])
        submit(run, first, round, 1, *result(round, " dissent"))
        for member in others:
            submit(run, member, round, 1, *result(round))
        assert run.study.round_count() == round


def test_a_removed_member_gets_no_weight_in_the_draw(embedded):
    """Committee of 4 from 5 with one member removed: it must be the 4 others, every round."""
    run = start(embedded, "committee", institutions=5, committee_size=4)
    removed = run.members[1]
    run.s.consortium.remove_member(run.s.admin, removed.address)
    for round in (1, 2, 3):
        run.commit_all([m for m in run.members if m is not removed])
        run.pass_deadline()
        drawn, _ = close_and_draw(run)
        assert sorted(drawn["committee"]) == sorted(m.address for m in run.members if m is not removed)
        assert list(drawn["committee"]) == expected_draw(run, drawn["seed"])
        for address in drawn["committee"][:3]:              # 3 of 4 is a majority
            submit(run, run.account(address), round, 1, *result(round))
        assert run.study.round_count() == round
    assert run.study.reputation(removed.address) == INITIAL_REPUTATION   # kept, just not drawn


def test_a_committee_of_the_whole_roster_shrinks_when_a_member_leaves(embedded):
    run = start(embedded, "committee", institutions=4, committee_size=4)
    run.s.consortium.remove_member(run.s.admin, run.members[0].address)
    run.commit_all(run.members[1:])
    run.pass_deadline()
    drawn, _ = close_and_draw(run)
    assert sorted(drawn["committee"]) == sorted(m.address for m in run.members[1:])
    submit(run, run.account(drawn["committee"][0]), 1, 1, *result(1))
    assert run.study.round_count() == 0
    submit(run, run.account(drawn["committee"][1]), 1, 1, *result(1))   # 2 of 3
    assert run.study.round_count() == 1


def test_the_draw_favours_high_reputation():
    """The draw the contract runs (checked against it above), over many seeds: a member with
    reputation 300 among three of 100 is drawn alone half the time, and 0 never."""
    members = ["a", "b", "c", "d", "e"]
    counts = dict.fromkeys(members, 0)
    trials = 3000
    for i in range(trials):
        (picked,) = draw_committee(Web3.keccak(text=f"seed {i}"), members, [300, 100, 100, 100, 0], 1)
        counts[picked] += 1
    assert counts["e"] == 0
    assert abs(counts["a"] / trials - 0.5) < 0.04
    for m in "bcd":
        assert abs(counts[m] / trials - 1 / 6) < 0.04
    pairs = {tuple(sorted(draw_committee(Web3.keccak(text=f"pair {i}"), members, [300, 100, 100, 100, 0], 2)))
             for i in range(200)}
    assert all(len(set(p)) == 2 and "e" not in p for p in pairs)


# --- SemiStudy: results and finalization ------------------------------------------------


def drawn_round(run: Run) -> list[LocalAccount]:
    """Commit everyone, close, return the drawn committee in draw order."""
    run.commit_all()
    drawn, _ = close_and_draw(run)
    return [run.account(a) for a in drawn["committee"]]


def test_a_committee_majority_finalizes_the_round(committee):
    run = committee
    a, b, c = drawn_round(run)
    outside = next(m for m in run.members if m not in (a, b, c))
    model, manifest = result(1)
    rejected = run.members[3]
    reasons = [ACCEPTED, ACCEPTED, ACCEPTED, NORM_ABOVE_BOUND, ACCEPTED]   # in commit (= roster) order

    submit(run, a, 1, 1, model, manifest, reasons)
    submit(run, b, 1, 1, *result(1, " other"), reasons)
    assert (run.study.round_count(), run.study.phase()) == (0, Phase.AGGREGATING)
    assert run.changes(1) == []
    with refused("CommitteeStudy.submit_result", "already submitted"):
        submit(run, a, 1, 1, model, manifest, [ACCEPTED] * 5)
    assert run.study.finalized_reasons(1) == []

    start = run.reputations()
    receipt = submit(run, c, 1, 1, model, manifest, reasons)
    block = receipt["blockNumber"]
    assert run.study.finalized(1) == (model, manifest)
    assert run.study.finalized_reasons(1) == reasons
    assert (run.study.round_count(), run.study.latest_model(), run.study.final_attempt(1)) == (1, model, 1)
    assert run.study._view("final_key", 1) == Web3.keccak(
        bytes.fromhex(model) + bytes.fromhex(manifest) + Web3.keccak(abi.encode(["uint8[]"], [reasons])))
    assert run.study._view("final_key", 1) == result_key(model, manifest, reasons)
    (final,) = run.study.events("RoundFinalized")
    assert (final["round_number"], final["parent_model"].hex(), final["model"].hex(),
            final["manifest_digest"].hex(), final["block"]) == (1, digest("model 0"), model, manifest, block)
    submitted = run.study.events("ResultSubmitted", 1)
    assert [(e["member"], e["attempt"], e["model"].hex(), list(e["reasons"])) for e in submitted] == \
        [(a.address, 1, model, reasons), (b.address, 1, result(1, " other")[0], reasons),
         (c.address, 1, model, reasons)]
    # Votes judged in committee order when the majority is reached, then updates in commit order.
    assert run.changes(1) == replay(run, [(a, "agreed"), (b, "disagreed"), (c, "agreed")] + [
        (m, "update rejected" if m is rejected else "update accepted") for m in run.members], start)
    assert run.study.rejections(1) == [(rejected.address, run.update(rejected, 1), NORM_ABOVE_BOUND)]
    (event,) = run.study.events("UpdateRejected")
    assert (event["round_number"], event["block"]) == (1, block)
    assert run.study.reputation(outside.address) == (80 if outside is rejected else 101)   # its update only

    # Round 2 is open on the new model.
    assert (run.study.phase(), run.study.phase_deadline()) == (Phase.COMMITTING, block + COMMIT_WINDOW)
    opened = run.study.events("RoundOpened", 2)
    assert [(e["parent_model"].hex(), e["deadline"], e["block"]) for e in opened] == \
        [(model, block + COMMIT_WINDOW, block)]
    stale = run.commit(a, parent=digest("model 0"))
    assert run.study.commit_rejections(2, stale["blockNumber"]) == [(a.address, run.update(a, 2), WRONG_ROUND)]
    with refused("CommitteeStudy.submit_result", "not on this committee"):
        submit(run, a, 2, 1, model, manifest)    # round 2 has no committee yet
    run.commit(a)
    assert run.study.committers(2) == [a.address]
    assert run.study.finalized_reasons(2) == []


@pytest.mark.parametrize("size, needed", [(1, 1), (2, 2), (4, 3)])
def test_majority_means_more_than_half_of_the_committee(embedded, size, needed):
    run = start(embedded, "committee", institutions=5, committee_size=size)
    members = drawn_round(run)
    for i, member in enumerate(members[:needed]):
        assert run.study.round_count() == 0, f"finalized after {i} of {size}"
        submit(run, member, 1, 1, *result(1))
    assert run.study.round_count() == 1


@pytest.mark.parametrize("late", ["agrees", "dissents", "other reasons"])
def test_a_late_committee_result_is_judged_against_the_final_one(committee, late):
    run = committee
    a, b, c = drawn_round(run)
    submit(run, a, 1, 1, *result(1))
    submit(run, b, 1, 1, *result(1))
    assert run.study.round_count() == 1
    finalized_at = run.backend.block_number()
    run.commit(a)                                            # round 2 goes on meanwhile

    before = run.study.reputation(c.address)                 # 101: its update was aggregated
    if late == "other reasons":                              # same model and manifest, another judgement
        submit(run, c, 1, 1, *result(1), [ACCEPTED, OUTLIER, ACCEPTED, ACCEPTED, ACCEPTED])
    else:
        submit(run, c, 1, 1, *(result(1) if late == "agrees" else result(1, " late")))
    reason = "agreed" if late == "agrees" else "disagreed"
    assert run.changes(1, finalized_at + 1) == [(c.address, before, reputation_after(before, reason), reason)]
    assert run.study.rejections(1) == []                     # a late result judges no update
    assert run.study.finalized(1) == result(1) and run.study.round_count() == 1
    with refused("CommitteeStudy.submit_result", "already submitted"):
        submit(run, c, 1, 1, *result(1))
    outside = next(m for m in run.members if m not in (a, b, c))
    with refused("CommitteeStudy.submit_result", "not on this committee"):
        submit(run, outside, 1, 1, *result(1))


@pytest.fixture(scope="module")
def aggregating():
    """Round 1 of a 5-member SemiStudy with its committee of 3 drawn (members in draw order).
    Refused results leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    run = start(chain, "committee", institutions=5, committee_size=3)
    yield run, drawn_round(run)
    chain.close()


RESULT_REFUSED = {   # case: (run, committee -> (sender, round, attempt, model, manifest[, reasons]), reason)
    "roster member off the committee": (
        lambda r, c: (next(m for m in r.members if m not in c), 1, 1, *result(1)), "not on this committee"),
    "outsider": (lambda r, c: (r.s.outsider, 1, 1, *result(1)), "not on this committee"),
    "attempt not drawn": (lambda r, c: (c[0], 1, 2, *result(1)), "not on this committee"),
    "attempt 0": (lambda r, c: (c[0], 1, 0, *result(1)), "not on this committee"),
    "round 2": (lambda r, c: (c[0], 2, 1, *result(1)), "not on this committee"),
    "round 0": (lambda r, c: (c[0], 0, 0, *result(1)), "no round 0"),
    "empty model": (lambda r, c: (c[0], 1, 1, "00" * 32, result(1)[1]), "empty digest"),
    "empty manifest": (lambda r, c: (c[0], 1, 1, result(1)[0], "00" * 32), "empty digest"),
    "too few reasons": (lambda r, c: (c[0], 1, 1, *result(1), [ACCEPTED] * 4), "one reason per committed update"),
    "too many reasons": (lambda r, c: (c[0], 1, 1, *result(1), [ACCEPTED] * 6), "one reason per committed update"),
    "no reasons": (lambda r, c: (c[0], 1, 1, *result(1), []), "one reason per committed update"),
    "reason code 19": (lambda r, c: (c[0], 1, 1, *result(1), [ACCEPTED, 19, ACCEPTED, ACCEPTED, ACCEPTED]),
                       "reason code above 18"),
}


@pytest.mark.parametrize("case", RESULT_REFUSED)
def test_refused_result_surfaces_the_reason(aggregating, case):
    run, members = aggregating
    make, reason = RESULT_REFUSED[case]
    with refused("CommitteeStudy.submit_result", reason):
        submit(run, *make(run, members))
    assert run.study.events("ResultSubmitted") == []


def test_no_result_before_the_committee_is_drawn(committee):
    run = committee
    run.commit_all()
    for member in run.members:
        with refused("CommitteeStudy.submit_result", "not on this committee"):
            submit(run, member, 1, 1, *result(1))


# --- SemiStudy: redrawing a silent committee -------------------------------------------


def test_a_silent_committee_is_redrawn_after_the_deadline(committee):
    run = committee
    a, b, c = drawn_round(run)
    seed1 = run.study._view("seed_of", 1, 1)
    submit(run, a, 1, 1, *result(1))             # b and c stay silent
    deadline = run.study.phase_deadline()

    with refused("CommitteeStudy.redraw", "result window still open"):
        run.study.redraw(run.s.outsider, 1)
    run.next_tx_lands_at(deadline)
    with refused("CommitteeStudy.redraw", "result window still open"):
        run.study.redraw(run.s.outsider, 1)
    for wrong in (0, 2):
        with refused("CommitteeStudy.redraw", "not the open round"):
            run.study.redraw(run.s.outsider, wrong)
    run.backend.advance_blocks(1)                            # refusals mined nothing

    receipt = run.study.redraw(run.s.outsider, 1)            # anyone may redraw
    block = receipt["blockNumber"]
    assert block == deadline + 1
    assert run.changes(1) == [(b.address, 100, 80, "absent"), (c.address, 100, 80, "absent")]
    assert run.study.reputation(a.address) == 100             # it answered; its result is never judged
    redrawn = run.study.events("CommitteeDrawn", 1)[-1]
    seed2 = committee_seed(Web3.keccak(seed1 + block_hash(run, block - 1)), 1, 2)
    assert (redrawn["attempt"], redrawn["seed"], redrawn["deadline"], redrawn["block"]) == \
        (2, seed2, block + RESULT_WINDOW, block)
    assert list(redrawn["committee"]) == expected_draw(run, seed2)   # with the lowered reputations
    assert run.study.committee(1, 2) == list(redrawn["committee"])
    assert run.study._view("seed_of", 1, 2) == seed2
    assert run.study.committee(1, 1) == [a.address, b.address, c.address]
    assert (run.study.attempt(), run.study.phase(), run.study.phase_deadline()) == \
        (2, Phase.AGGREGATING, block + RESULT_WINDOW)

    # The replaced committee can no longer answer.
    with refused("CommitteeStudy.submit_result", "that committee was replaced"):
        submit(run, b, 1, 1, *result(1))
    with refused("CommitteeStudy.submit_result", "already submitted"):
        submit(run, a, 1, 1, *result(1))
    with refused("CommitteeStudy.redraw", "result window still open"):
        run.study.redraw(run.s.outsider, 1)

    # The new committee finalizes; only its votes are judged (and every committed update, accepted).
    new = [run.account(x) for x in redrawn["committee"]]
    before = run.reputations()
    for member in new[:2]:
        submit(run, member, 1, 2, *result(1))
    assert (run.study.round_count(), run.study.final_attempt(1)) == (1, 2)
    after = run.reputations()
    assert {m: after[m] - before[m] for m in after} == {m.address: 2 if m in new[:2] else 1 for m in run.members}
    with refused("CommitteeStudy.submit_result", "that committee was replaced"):
        submit(run, c, 1, 1, *result(1))          # late, for the replaced committee
    submit(run, new[2], 1, 2, *result(1, " late"))   # late, for the final one: judged
    assert run.changes(1)[-1] == (new[2].address, after[new[2].address], after[new[2].address] - 50, "disagreed")
    with refused("CommitteeStudy.redraw", "round is not aggregating"):
        run.study.redraw(run.s.outsider, 2)


def test_a_split_committee_is_redrawn_without_penalties(embedded):
    run = start(embedded, "committee", institutions=4, committee_size=2)
    a, b = drawn_round(run)
    submit(run, a, 1, 1, *result(1))
    submit(run, b, 1, 1, *result(1, " other"))    # 1 of 2 each: no majority
    assert run.study.round_count() == 0
    run.pass_deadline()
    run.study.redraw(a, 1)
    assert run.changes(1) == [] and run.study.attempt() == 2
    assert run.reputations() == dict.fromkeys(run.reputations(), 100)


def test_redraw_is_refused_while_committing(committee):
    with refused("CommitteeStudy.redraw", "round is not aggregating"):
        committee.study.redraw(committee.members[0], 1)


def test_attempt_is_zero_while_the_next_round_commits(committee):
    run = committee
    a, b, _ = drawn_round(run)
    submit(run, a, 1, 1, *result(1))
    submit(run, b, 1, 1, *result(1))
    assert (run.study.round_count(), run.study.phase()) == (1, Phase.COMMITTING)
    assert run.study.attempt() == 0


def test_a_member_removed_after_the_draw_cannot_submit(committee):
    run = committee
    a, *_ = drawn_round(run)
    run.s.consortium.remove_member(run.s.admin, a.address)
    with refused("CommitteeStudy.submit_result", "not an active institution"):
        submit(run, a, 1, 1, *result(1))


# --- FullStudy: scores ------------------------------------------------------------------


def test_scores_are_recorded_per_validator(consensus):
    run = consensus
    a, b, c, d = run.members
    run.commit_all([c, a, b])
    with refused("ConsensusStudy.submit_scores", "round is not scoring"):
        run.study.submit_scores(a, 1, [1, 2, 3])
    run.pass_deadline()
    run.study.close_commits(a, 1)
    assert run.study.phase() == Phase.SCORING

    run.study.submit_scores(d, 1, [1_000_000, 0, 500_000])   # d did not commit, but validates
    run.study.submit_scores(a, 1, [1, 2, 3])
    assert run.study.scores(1) == {d.address: [1_000_000, 0, 500_000], a.address: [1, 2, 3]}
    assert run.study._view("score_count", 1) == 2
    events = run.study.events("ScoresSubmitted", 1)
    assert [(e["validator"], list(e["scores"])) for e in events] == \
        [(d.address, [1_000_000, 0, 500_000]), (a.address, [1, 2, 3])]


@pytest.fixture(scope="module")
def scoring():
    """ConsensusStudy round 1 in SCORING: 3 of 5 committed, member 4 removed after committing,
    member 0 scored. Refused scores leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    run = start(chain, "consensus", institutions=5)
    run.commit_all(run.members[:3])
    run.commit(run.members[4])
    run.s.consortium.remove_member(run.s.admin, run.members[4].address)
    run.pass_deadline()
    run.study.close_commits(run.members[0], 1)
    run.study.submit_scores(run.members[0], 1, [1, 2, 3, 4])
    yield run
    chain.close()


SCORES_REFUSED = {   # case: (run -> (sender, round, scores), reason)
    "outsider": (lambda r: (r.s.outsider, 1, [1, 2, 3, 4]), "not on the study's roster"),
    "coordinator": (lambda r: (r.s.coordinator, 1, [1, 2, 3, 4]), "not on the study's roster"),
    "removed member": (lambda r: (r.members[4], 1, [1, 2, 3, 4]), "not an active institution"),
    "scores twice": (lambda r: (r.members[0], 1, [1, 2, 3, 4]), "already scored this round"),
    "too few scores": (lambda r: (r.members[1], 1, [1, 2, 3]), "one score per committed update"),
    "too many scores": (lambda r: (r.members[1], 1, [1, 2, 3, 4, 5]), "one score per committed update"),
    "no scores": (lambda r: (r.members[1], 1, []), "one score per committed update"),
    "score above a million": (lambda r: (r.members[1], 1, [1, 2, 1_000_001, 4]), "score above 1000000"),
    "round 2": (lambda r: (r.members[1], 2, [1, 2, 3, 4]), "not the open round"),
    "round 0": (lambda r: (r.members[1], 0, [1, 2, 3, 4]), "not the open round"),
}


@pytest.mark.parametrize("case", SCORES_REFUSED)
def test_refused_scores_surface_the_reason(scoring, case):
    run = scoring
    make, reason = SCORES_REFUSED[case]
    with refused("ConsensusStudy.submit_scores", reason):
        run.study.submit_scores(*make(run))
    assert run.study._view("score_count", 1) == 1
    assert list(run.study.scores(1)) == [run.members[0].address]


def test_scores_close_at_once_when_everyone_scored(consensus):
    run = consensus
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    for member in run.members[:3]:
        run.study.submit_scores(member, 1, [5] * 4)
    with refused("ConsensusStudy.close_scores", "score window still open"):
        run.study.close_scores(run.members[0], 1)
    run.study.submit_scores(run.members[3], 1, [5] * 4)
    receipt = run.study.close_scores(run.s.outsider, 1)       # anyone may close
    block = receipt["blockNumber"]
    (closed,) = run.study.events("ScoresClosed", 1)
    assert (closed["validators"], closed["deadline"], closed["block"]) == (4, block + RESULT_WINDOW, block)
    assert (run.study.phase(), run.study.phase_deadline()) == (Phase.VOTING, block + RESULT_WINDOW)
    with refused("ConsensusStudy.submit_scores", "round is not scoring"):
        run.study.submit_scores(run.members[0], 1, [5] * 4)
    with refused("ConsensusStudy.close_scores", "round is not scoring"):
        run.study.close_scores(run.members[0], 1)


def test_close_scores_is_refused_outside_scoring(consensus):
    with refused("ConsensusStudy.close_scores", "round is not scoring"):
        consensus.study.close_scores(consensus.members[0], 1)
    with refused("ConsensusStudy.close_scores", "not the open round"):
        consensus.study.close_scores(consensus.members[0], 2)


def test_scores_past_the_deadline_need_two_thirds_of_the_roster(consensus):
    """4 members: 2 scores (6 < 8) extend the window, 3 (9 >= 8) close it."""
    run = consensus
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    for member in run.members[:2]:
        run.study.submit_scores(member, 1, [5] * 4)
    deadline = run.study.phase_deadline()
    run.next_tx_lands_at(deadline)
    with refused("ConsensusStudy.close_scores", "score window still open"):
        run.study.close_scores(run.members[0], 1)
    run.backend.advance_blocks(1)                            # the refusal mined nothing
    receipt = run.study.close_scores(run.members[0], 1)
    block = receipt["blockNumber"]
    assert block == deadline + 1
    (extended,) = run.study.events("ScoreWindowExtended", 1)
    assert (extended["validators"], extended["deadline"]) == (2, block + RESULT_WINDOW)
    assert (run.study.phase(), run.study.phase_deadline()) == (Phase.SCORING, block + RESULT_WINDOW)
    assert run.study.events("ScoresClosed") == []

    run.study.submit_scores(run.members[2], 1, [5] * 4)
    with refused("ConsensusStudy.close_scores", "score window still open"):
        run.study.close_scores(run.members[0], 1)
    run.pass_deadline()
    run.study.close_scores(run.members[0], 1)
    (closed,) = run.study.events("ScoresClosed", 1)
    assert closed["validators"] == 3 and run.study.phase() == Phase.VOTING
    with refused("ConsensusStudy.submit_scores", "round is not scoring"):
        run.study.submit_scores(run.members[3], 1, [5] * 4)


def test_past_the_extended_deadline_the_scores_close_with_whoever_scored(consensus):
    """4 members, 2 silent: the window is extended once, then the 2 scores close it (before, the
    window was extended for ever and the study stalled)."""
    run = consensus
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    for member in run.members[:2]:
        run.study.submit_scores(member, 1, [5] * 4)
    run.pass_deadline()
    run.study.close_scores(run.members[0], 1)
    assert run.study.phase() == Phase.SCORING and len(run.study.events("ScoreWindowExtended", 1)) == 1
    run.pass_deadline()
    run.study.close_scores(run.members[0], 1)
    (closed,) = run.study.events("ScoresClosed", 1)
    assert closed["validators"] == 2 and run.study.phase() == Phase.VOTING


def test_without_any_score_the_window_is_extended_again(consensus):
    run = consensus
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    for _ in range(2):
        run.pass_deadline()
        run.study.close_scores(run.members[0], 1)
    assert run.study.phase() == Phase.SCORING and len(run.study.events("ScoreWindowExtended", 1)) == 2


def test_a_removed_member_does_not_count_in_the_score_quorum(embedded):
    """3 members, one removed from the consortium: the other two have all scored, so the scores
    close at once (before, the removed member still counted and they waited for the deadline)."""
    run = start(embedded, "consensus", institutions=3)
    run.s.consortium.remove_member(run.s.admin, run.members[2].address)
    assert run.study.counted_members() == 2
    run.commit_all(run.members[:2])
    run.study.close_commits(run.members[0], 1)
    for member in run.members[:2]:
        run.study.submit_scores(member, 1, [5, 5])
    run.study.close_scores(run.members[0], 1)
    assert run.study.phase() == Phase.VOTING


# --- FullStudy: votes, finalization, rewards --------------------------------------------


def vote(run: Run, member: LocalAccount, round: int = 1, tag: str = "", rewards=None, reasons=None):
    """`member` votes for result(round, tag); rewards: 10 for every committer unless given;
    reasons: unless given, an unrewarded update is rejected as LOW_SCORE, the others aggregated."""
    rewards = [10] * len(run.study.committers(round)) if rewards is None else rewards
    reasons = [ACCEPTED if r > 0 else LOW_SCORE for r in rewards] if reasons is None else reasons
    return run.study.submit_vote(member, round, *result(round, tag), rewards, reasons)


@pytest.mark.parametrize("n, needed, weighted", [(3, 2, False), (4, 3, False), (5, 4, False), (3, 2, True)],
                         ids=["3 by count", "4 by count", "5 by count", "3 of equal reputation"])
def test_the_round_finalizes_at_two_thirds_of_the_roster(embedded, n, needed, weighted):
    """ceil(2n/3) identical votes; with equal reputations, weighting changes nothing (3 x 200 = 2 x 300
    is exactly two thirds)."""
    run = start(embedded, "consensus", institutions=n, weighted=weighted)
    to_scoring_and_voting(run)
    for i, member in enumerate(run.members[:needed]):
        assert run.study.round_count() == 0, f"finalized after {i} of {n} votes"
        vote(run, member)
    assert run.study.round_count() == 1
    assert run.study.finalized(1) == result(1) and run.study.latest_model() == result(1)[0]
    assert run.study.phase() == Phase.COMMITTING


def test_only_identical_votes_count_towards_the_threshold(consensus):
    run = consensus
    a, b, c, d = run.members
    to_scoring_and_voting(run)
    vote(run, a)
    vote(run, b, tag=" other")                              # another model
    vote(run, c, rewards=[10, 10, 10, 0])                   # same model, other rewards
    assert run.study.round_count() == 0
    receipt = vote(run, d)                                  # only 2 identical votes of the 3 needed
    assert run.study.round_count() == 0
    assert run.study.events("RoundFinalized") == []
    assert receipt["status"] == 1
    with refused("ConsensusStudy.submit_vote", "already voted this round"):
        vote(run, a)


def test_finalizing_credits_rewards_and_judges_everyone(consensus):
    run = consensus
    a, b, c, d = run.members
    to_scoring_and_voting(run, committers=[c, a, b])        # d does not contribute
    rewards = [70, 0, 30]
    reasons = [ACCEPTED, OUTLIER, ACCEPTED]                  # a's update is rejected
    vote(run, d, tag=" other", rewards=rewards, reasons=reasons)   # d dissents before the outcome
    vote(run, a, rewards=rewards, reasons=reasons)
    vote(run, b, rewards=rewards, reasons=reasons)
    assert run.study.round_count() == 0
    receipt = vote(run, c, rewards=rewards, reasons=reasons)
    block = receipt["blockNumber"]

    assert run.study.finalized(1) == result(1) and run.study.round_count() == 1
    assert run.study.finalized_reasons(1) == reasons
    assert run.study._view("final_key", 1) == Web3.keccak(
        bytes.fromhex(result(1)[0]) + bytes.fromhex(result(1)[1]) + Web3.keccak(abi.encode(["uint256[]"], [rewards]))
        + Web3.keccak(abi.encode(["uint8[]"], [reasons])))
    assert run.study._view("final_key", 1) == result_key(*result(1), reasons, rewards)
    votes = run.study.events("VoteSubmitted", 1)
    assert [(e["validator"], list(e["rewards"]), list(e["reasons"])) for e in votes] == \
        [(m.address, rewards, reasons) for m in (d, a, b, c)]
    credited = run.study.events("RewardCredited", 1)
    assert [(e["member"], e["amount"], e["block"]) for e in credited] == [(c.address, 70, block),
                                                                          (b.address, 30, block)]
    assert [run.study.reward_balance(m.address) for m in (a, b, c, d)] == [0, 30, 70, 0]
    assert run.changes(1) == [
        # the voters, in roster order
        (a.address, 100, 101, "agreed"), (b.address, 100, 101, "agreed"), (c.address, 100, 101, "agreed"),
        (d.address, 100, 50, "disagreed"),
        # the contributors, in commit order
        (c.address, 101, 102, "update accepted"), (a.address, 101, 81, "update rejected"),
        (b.address, 101, 102, "update accepted"),
    ]
    assert run.study.rejections(1) == [(a.address, run.update(a, 1), OUTLIER)]
    assert run.reputations() == {a.address: 81, b.address: 102, c.address: 102, d.address: 50}
    (final,) = run.study.events("RoundFinalized")
    assert (final["round_number"], final["parent_model"].hex(), final["model"].hex()) == \
        (1, digest("model 0"), result(1)[0])
    kinds = [e["event"] for e in run.study.all_events() if e["block"] == block]
    assert kinds[-2:] == ["RoundFinalized", "RoundOpened"]
    assert kinds.index("RewardCredited") < kinds.index("UpdateRejected") < kinds.index("RoundFinalized")

    # Rewards add up over rounds; an update may be accepted without a reward.
    to_scoring_and_voting(run, committers=[b, c])
    for member in (a, b, c):
        vote(run, member, round=2, rewards=[5, 0], reasons=[ACCEPTED, ACCEPTED])
    assert [run.study.reward_balance(m.address) for m in (a, b, c, d)] == [0, 35, 70, 0]
    assert run.study.committers(2) == [b.address, c.address]
    assert run.study.rejections(2) == [] and run.study.finalized_reasons(2) == [ACCEPTED, ACCEPTED]
    assert [r for m, _, _, r in run.changes(2) if m == c.address] == ["agreed", "update accepted"]


@pytest.fixture
def voting(consensus):
    """Round 1 of `consensus` open for votes, everyone committed and scored."""
    to_scoring_and_voting(consensus)
    return consensus


@pytest.fixture(scope="module")
def voting_shared():
    """As `voting`, for refused votes, which leave it unchanged."""
    chain = EmbeddedChain.create(None)
    run = start(chain, "consensus", institutions=4)
    to_scoring_and_voting(run)
    yield run
    chain.close()


def test_votes_are_accepted_only_while_voting(consensus):
    run = consensus
    run.commit_all()
    with refused("ConsensusStudy.submit_vote", "round is not voting"):       # committing
        vote(run, run.members[0])
    run.study.close_commits(run.members[0], 1)
    with refused("ConsensusStudy.submit_vote", "round is not voting"):       # scoring
        vote(run, run.members[0])
    with refused("ConsensusStudy.submit_vote", "not the open round"):
        run.study.submit_vote(run.members[0], 2, *result(2), [], [])
    assert run.study.events("VoteSubmitted") == []


VOTE_REFUSED = {   # case: (run -> (sender, round, model, manifest, rewards[, reasons]), reason)
    "outsider": (lambda r: (r.s.outsider, 1, *result(1), [1] * 4), "not on the study's roster"),
    "coordinator": (lambda r: (r.s.coordinator, 1, *result(1), [1] * 4), "not on the study's roster"),
    "empty model": (lambda r: (r.members[0], 1, "00" * 32, result(1)[1], [1] * 4), "empty digest"),
    "empty manifest": (lambda r: (r.members[0], 1, result(1)[0], "00" * 32, [1] * 4), "empty digest"),
    "too few rewards": (lambda r: (r.members[0], 1, *result(1), [1] * 3), "one reward per committed update"),
    "too many rewards": (lambda r: (r.members[0], 1, *result(1), [1] * 5), "one reward per committed update"),
    "too few reasons": (lambda r: (r.members[0], 1, *result(1), [1] * 4, [0] * 3), "one reason per committed update"),
    "too many reasons": (lambda r: (r.members[0], 1, *result(1), [1] * 4, [0] * 5),
                         "one reason per committed update"),
    "reason code 19": (lambda r: (r.members[0], 1, *result(1), [1, 1, 1, 0], [0, 0, 0, 19]), "reason code above 18"),
    "reason code 255": (lambda r: (r.members[0], 1, *result(1), [1, 1, 1, 0], [255, 0, 0, 0]),
                        "reason code above 18"),
    "rejected update rewarded": (lambda r: (r.members[0], 1, *result(1), [1, 1, 1, 1], [0, 0, OUTLIER, 0]),
                                 "rejected update cannot be rewarded"),
    "round 2": (lambda r: (r.members[0], 2, *result(1), [1] * 4), "not the open round"),
}


@pytest.mark.parametrize("case", VOTE_REFUSED)
def test_refused_vote_surfaces_the_reason(voting_shared, case):
    run = voting_shared
    make, reason = VOTE_REFUSED[case]
    sender, round, model, manifest, rewards, *reasons = make(run)
    reasons = reasons[0] if reasons else [ACCEPTED] * len(rewards)
    with refused("ConsensusStudy.submit_vote", reason):
        run.study.submit_vote(sender, round, model, manifest, rewards, reasons)
    assert run.study.events("VoteSubmitted") == []


def test_the_highest_reason_code_and_an_unrewarded_acceptance_are_valid(voting):
    run = voting
    for member in run.members[:3]:
        vote(run, member, rewards=[0, 1, 0, 0], reasons=[ACCEPTED, ACCEPTED, LOW_SCORE, NOT_MEMBER])
    assert run.study.finalized_reasons(1) == [ACCEPTED, ACCEPTED, LOW_SCORE, NOT_MEMBER]
    assert [(m, code) for m, _, code in run.study.rejections(1)] == [(run.members[2].address, LOW_SCORE),
                                                                    (run.members[3].address, NOT_MEMBER)]


def test_a_removed_member_cannot_vote(voting):
    run = voting
    run.s.consortium.remove_member(run.s.admin, run.members[0].address)
    with refused("ConsensusStudy.submit_vote", "not an active institution"):
        vote(run, run.members[0])


@pytest.mark.parametrize("late", ["agrees", "dissents"])
def test_a_late_vote_is_judged_against_the_outcome(voting, late):
    run = voting
    a, b, c, d = run.members
    for member in (a, b, c):
        vote(run, member)
    assert run.study.round_count() == 1
    finalized_at = run.backend.block_number()
    run.commit(a)                                           # round 2 goes on meanwhile

    vote(run, d, tag="" if late == "agrees" else " late")
    expected = (d.address, 101, 102, "agreed") if late == "agrees" else (d.address, 101, 51, "disagreed")
    assert run.changes(1, finalized_at + 1) == [expected]
    assert run.study.events("RewardCredited", 1, finalized_at + 1) == []   # no second credit
    assert [run.study.reward_balance(m.address) for m in (a, b, c, d)] == [10] * 4
    assert run.study.round_count() == 1 and run.study.finalized(1) == result(1)
    with refused("ConsensusStudy.submit_vote", "already voted this round"):
        vote(run, d)


def test_removed_members_do_not_count_in_the_vote_quorum(consensus):
    """4 members, 2 removed before the vote opens: the 2 left (6 >= 4) finalize; before, the
    removed still counted (6 < 8) and the round could never finalize."""
    run = consensus
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    for member in run.members[2:]:
        run.s.consortium.remove_member(run.s.admin, member.address)
    for member in run.members[:2]:
        run.study.submit_scores(member, 1, [5] * 4)
    run.study.close_scores(run.members[0], 1)
    vote(run, run.members[0])
    assert run.study.round_count() == 0
    vote(run, run.members[1])
    assert run.study.round_count() == 1 and run.study.finalized(1) == result(1)


def test_a_member_removed_during_the_vote_weighs_until_it_is_reopened(consensus):
    run = consensus
    to_scoring_and_voting(run)
    for member in run.members[2:]:
        run.s.consortium.remove_member(run.s.admin, member.address)
    vote(run, run.members[0])
    vote(run, run.members[1])
    assert run.study.round_count() == 0                      # the electorate was fixed when the vote opened
    run.pass_deadline()
    run.study.close_votes(run.members[0], 1)
    vote(run, run.members[0])
    vote(run, run.members[1])
    assert run.study.round_count() == 1


# --- FullStudy: re-vote epochs ------------------------------------------------------------


def test_a_vote_silent_past_its_deadline_is_reopened_among_the_voters(consensus):
    """a and b vote, c and d stay silent (6 < 8): past the deadline the vote reopens with a and b
    as its electorate, and their two votes (6 >= 6) finalize the round once."""
    run = consensus
    a, b, c, d = run.members
    to_scoring_and_voting(run)
    vote(run, a)
    vote(run, b)
    with refused("ConsensusStudy.close_votes", "vote window still open"):
        run.study.close_votes(a, 1)
    run.pass_deadline()
    receipt = run.study.close_votes(run.s.outsider, 1)         # anyone may reopen
    (reopened,) = run.study.events("VoteReopened", 1)
    block = receipt["blockNumber"]
    assert (reopened["epoch"], reopened["electorate"], reopened["deadline"]) == (1, 2, block + RESULT_WINDOW)
    assert run.study.vote_epoch(1) == 1 and run.study.round_count() == 0
    assert [run.study.may_vote(1, m.address) for m in run.members] == [True, True, False, False]
    with refused("ConsensusStudy.submit_vote", "not in this vote's electorate"):
        vote(run, c)
    vote(run, a)
    assert run.study.round_count() == 0
    vote(run, b)
    assert run.study.round_count() == 1 and run.study.finalized(1) == result(1)
    # judged once, for the deciding epoch's votes only
    assert [(m, reason) for m, _, _, reason in run.changes(1) if "agreed" in reason] == [(a.address, "agreed"),
                                                                                          (b.address, "agreed")]
    assert [(v.member, v.attempt) for v in run.study.votes(1)] == [(a.address, 0), (b.address, 0), (a.address, 1),
                                                                  (b.address, 1)]
    with refused("ConsensusStudy.close_votes", "not the open round"):
        run.study.close_votes(a, 1)


def test_a_split_vote_is_reopened_and_a_dissent_in_an_abandoned_epoch_is_not_judged(consensus):
    """a and b vote one result, c another, d is silent: split (6 < 8). In epoch 1 (a, b, c) c
    votes with the others and the round finalizes; c's first vote costs nothing."""
    run = consensus
    a, b, c, d = run.members
    to_scoring_and_voting(run)
    vote(run, a)
    vote(run, b)
    vote(run, c, tag=" other")
    run.pass_deadline()
    run.study.close_votes(a, 1)
    assert [run.study.may_vote(1, m.address) for m in run.members] == [True, True, True, False]
    vote(run, c)
    vote(run, a)
    assert run.study.round_count() == 1
    assert {reason for m, _, _, reason in run.changes(1) if m == c.address} == {"agreed", "update accepted"}
    vote(run, b)                                             # late, in the deciding epoch: judged
    assert [(m, reason) for m, _, _, reason in run.changes(1)][-1] == (b.address, "agreed")


def test_an_epoch_without_voters_keeps_its_electorate(consensus):
    run = consensus
    to_scoring_and_voting(run)
    run.pass_deadline()
    run.study.close_votes(run.members[0], 1)
    assert run.study.vote_epoch(1) == 1 and all(run.study.may_vote(1, m.address) for m in run.members)
    with refused("ConsensusStudy.close_votes", "vote window still open"):
        run.study.close_votes(run.members[0], 1)
    for member in run.members[:3]:
        vote(run, member)
    assert run.study.round_count() == 1


def test_close_votes_is_refused_outside_voting(consensus):
    with refused("ConsensusStudy.close_votes", "round is not voting"):
        consensus.study.close_votes(consensus.members[0], 1)


def test_a_vote_for_round_zero_is_refused(consensus):
    run = consensus
    with refused("ConsensusStudy.submit_vote", "no round 0"):
        run.study.submit_vote(run.members[0], 0, *result(0), [], [])


# --- FullStudy: weighting by reputation -------------------------------------------------


def weighted_round_three(embedded) -> Run:
    """A reputation-weighted study with reputations a 104, b 104, c 62, d 10 (total 280: two thirds
    is 186.7) and round 3 open for votes. c and d had their updates rejected in rounds 1 and 2,
    and d voted late against round 1's outcome."""
    run = start(embedded, "consensus", institutions=4, weighted=True)
    a, b, c, d = run.members
    excluded = [1, 1, 0, 0]
    # Round 1: 100 + 100 (x3 = 600 < 800) does not finalize, 300 (900) does.
    to_scoring_and_voting(run)
    vote(run, a, rewards=excluded)
    vote(run, b, rewards=excluded)
    assert run.study.round_count() == 0
    vote(run, c, rewards=excluded)
    assert run.study.round_count() == 1
    vote(run, d, round=1, tag=" late", rewards=excluded)
    assert run.reputations() == {a.address: 102, b.address: 102, c.address: 81, d.address: 30}
    # Round 2: a + b = 204 (612 < 630) does not finalize, + c = 285 does.
    to_scoring_and_voting(run)
    vote(run, a, round=2, rewards=excluded)
    vote(run, b, round=2, rewards=excluded)
    assert run.study.round_count() == 1
    vote(run, c, round=2, rewards=excluded)
    assert run.study.round_count() == 2
    assert run.reputations() == {a.address: 104, b.address: 104, c.address: 62, d.address: 10}
    to_scoring_and_voting(run)
    return run


def test_by_reputation_the_threshold_is_two_thirds_of_the_reputation(embedded):
    run = weighted_round_three(embedded)
    a, b, c, d = run.members
    round3 = run.backend.block_number() + 1
    # c + d + a = 176 (x3 = 528 < 560): three of four, enough by count, are not enough by reputation.
    for member in (c, d, a):
        vote(run, member, round=3, rewards=[1, 1, 1, 0])
    assert run.study.round_count() == 2 and run.study.events("RoundFinalized", 3) == []
    vote(run, b, round=3, rewards=[1, 1, 1, 0])
    assert run.study.round_count() == 3
    # d (10 + 1 agreed) loses 20 for its rejected update: reputation stops at 0.
    assert (d.address, 11, 0, "update rejected") in run.changes(3, round3)
    assert run.reputations() == {a.address: 106, b.address: 106, c.address: 64, d.address: 0}

    # Round 4, total 276 (two thirds: 184): a alone (106) is not enough, a + b = 212 is: two of four,
    # which by count would take three.
    to_scoring_and_voting(run)
    vote(run, a, round=4, rewards=[1, 1, 1, 1])
    assert run.study.round_count() == 3
    vote(run, b, round=4, rewards=[1, 1, 1, 1])
    assert run.study.round_count() == 4 and run.study.finalized(4) == result(4)


def test_by_count_two_of_four_never_finalize(consensus):
    run = consensus
    for round in (1, 2):
        to_scoring_and_voting(run)
        vote(run, run.members[0], round=round)
        vote(run, run.members[1], round=round)
        assert run.study.round_count() == round - 1
        vote(run, run.members[2], round=round)
        assert run.study.round_count() == round


# --- gas -------------------------------------------------------------------------------------

GAS_BOUNDS = {   # loose upper bounds per call, for up to 10 members (measured: about 60% of these)
    "commit_update": 220_000, "close_commits": 600_000, "submit_result": 150_000,
    "submit_result (finalizing)": 600_000, "redraw": 600_000,   # finalizing judges every committed update
    "submit_scores": 160_000, "close_scores": 400_000, "submit_vote": 220_000,   # closing weighs the electorate
    "submit_vote (finalizing)": 1_000_000,
}


def committee_gas(embedded, n: int) -> dict[str, list[int]]:
    """gasUsed of each SemiStudy call in a round with a redraw (committees of 3)."""
    gas: dict[str, list[int]] = {}
    run = start(embedded, "committee", institutions=n, committee_size=3)
    calls = [("commit_update", lambda m=m: run.commit(m)) for m in run.members]
    calls.append(("close_commits", lambda: run.study.close_commits(run.members[0], 1)))
    for name, call in calls:
        gas.setdefault(name, []).append(call()["gasUsed"])
    first = run.account(run.study.committee(1, 1)[0])
    gas["submit_result"] = [submit(run, first, 1, 1, *result(1))["gasUsed"]]
    run.pass_deadline()
    gas["redraw"] = [run.study.redraw(run.members[0], 1)["gasUsed"]]
    a, b, _ = map(run.account, run.study.committee(1, 2))
    gas["submit_result"].append(submit(run, a, 1, 2, *result(1))["gasUsed"])
    gas["submit_result (finalizing)"] = [submit(run, b, 1, 2, *result(1))["gasUsed"]]
    assert run.study.round_count() == 1
    return gas


def consensus_gas(embedded, n: int) -> dict[str, list[int]]:
    """gasUsed of each FullStudy call in a round everyone commits to and scores."""
    gas: dict[str, list[int]] = {}
    run = start(embedded, "consensus", institutions=n)
    needed = -(-2 * n // 3)
    calls = [("commit_update", lambda m=m: run.commit(m)) for m in run.members]
    calls.append(("close_commits", lambda: run.study.close_commits(run.members[0], 1)))
    calls += [("submit_scores", lambda m=m: run.study.submit_scores(m, 1, [800_000] * n)) for m in run.members]
    calls.append(("close_scores", lambda: run.study.close_scores(run.members[0], 1)))
    calls += [("submit_vote", lambda m=m: vote(run, m)) for m in run.members[:needed - 1]]
    calls.append(("submit_vote (finalizing)", lambda: vote(run, run.members[needed - 1])))
    for name, call in calls:
        gas.setdefault(name, []).append(call()["gasUsed"])
    assert run.study.round_count() == 1
    return gas


@pytest.mark.parametrize("n", [4, 10])
def test_gas_per_call(embedded, n, capsys):
    tables = {"CommitteeStudy": committee_gas(embedded, n), "ConsensusStudy": consensus_gas(embedded, n)}
    with capsys.disabled():
        print(f"\ngas per call with {n} members (min..max)")
        for contract, table in tables.items():
            for name, used in table.items():
                print(f"  {contract:15} {name:27} {min(used):>9,} .. {max(used):>9,}")
    for table in tables.values():
        for name, used in table.items():
            assert all(21_000 < g < GAS_BOUNDS[name] for g in used), (name, used)
