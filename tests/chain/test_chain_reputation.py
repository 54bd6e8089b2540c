"""The reputation policy of reputation_policy.vy in the chain-coordinated studies (SemiStudy,
FullStudy): rejected updates, suspension below the threshold, what a suspended member may no
longer do, quorums without it, and re-admission by the consortium's admin. StudyLedger's side is
in test_chain_ledger.py.

Everything runs on the real embedded EVM.
"""

import re

import pytest

from fedledger.chain import (
    INITIAL_REPUTATION,
    REPUTATION_DELTAS,
    Phase,
    reputation_after,
)
from fedledger.chain.artifacts import CONTRACTS_DIR

from .test_chain_rounds import (
    ACCEPTED,
    LOW_SCORE,
    MISSING,
    OUTLIER,
    SUSPENDED,
    Run,
    expected_draw,
    refused,
    result,
    start,
    submit,
    vote,
)

VARIANTS = [("committee", False), ("consensus", False), ("consensus", True)]
VARIANT_IDS = ["committee", "consensus by count", "consensus by reputation"]


def test_reason_codes_match_the_validation_module():
    """The contracts' reason codes are fedledger.validation.reasons' numbers."""
    from fedledger.validation.reasons import MAX_REASON, Reason

    source = (CONTRACTS_DIR / "reputation_policy.vy").read_text()
    codes = {name: int(value) for name, value in re.findall(r"^(\w+): constant\(uint8\) = (\d+)$", source, re.M)}
    assert codes.pop("MAX_REASON") == MAX_REASON == 18
    assert codes == {reason.name: reason.value for reason in Reason}


def test_replaying_reputation_follows_the_documented_rule():
    assert reputation_after(100, "update rejected") == 80 and reputation_after(10, "update rejected") == 0
    assert reputation_after(1000, "agreed") == 1000 and reputation_after(3, "reinstated") == INITIAL_REPUTATION
    assert "update excluded" not in REPUTATION_DELTAS and REPUTATION_DELTAS["update rejected"] == -20


# --- harness -----------------------------------------------------------------------------------


def active(run: Run) -> list:
    return [m for m in run.members if not run.study.suspended(m.address)]


def play_round(run: Run, rejected=(), abstain=()) -> dict:
    """Play the open round to its end: every member that is not suspended commits, scores (full)
    and, unless in `abstain`, votes or answers on the committee, until the round finalizes; the
    updates of `rejected` get reason OUTLIER, the others are aggregated. The finalizing receipt."""
    round = run.study.open_round()
    members = active(run)
    run.commit_all(members)
    run.study.close_commits(run.members[0], round)          # every member that may take part committed
    committers = run.study.committers(round)
    rejected = {m.address for m in rejected}
    reasons = [OUTLIER if c in rejected else ACCEPTED for c in committers]
    voters = [m for m in members if m not in abstain]
    receipt = None
    if run.name == "CommitteeStudy":
        attempt = run.study.attempt()
        for address in run.study.committee(round, attempt):
            member = run.account(address)
            if member in voters and run.study.round_count() < round:
                receipt = submit(run, member, round, attempt, *result(round), reasons)
    else:
        for member in members:
            run.study.submit_scores(member, round, [800_000] * len(committers))
        run.study.close_scores(run.members[0], round)
        rewards = [0 if r else 1 for r in reasons]
        for member in voters:
            if run.study.round_count() < round:
                receipt = vote(run, member, round, rewards=rewards, reasons=reasons)
    assert run.study.round_count() == round, "the round did not finalize"
    return receipt


def moves_of(run: Run, member) -> list[tuple[int, int, str]]:
    return [(e["before"], e["after"], e["reason"]) for e in run.study.events("ReputationChanged")
            if e["member"] == member.address]


# --- suspension ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, weighted", VARIANTS, ids=VARIANT_IDS)
def test_rejected_updates_suspend_a_member_until_the_admin_reinstates_it(embedded, kind, weighted):
    run = start(embedded, kind, institutions=4, committee_size=3, weighted=weighted, suspension_threshold=50)
    victim = run.members[3]
    others = run.members[:3]
    assert run.study.suspension_threshold() == 50

    play_round(run, rejected=[victim], abstain=[victim])     # 100 -> 80
    play_round(run, abstain=[victim])                        # 80 -> 81
    play_round(run, rejected=[victim], abstain=[victim])     # 81 -> 61: not below 50
    assert not run.study.suspended(victim.address)
    receipt = play_round(run, rejected=[victim], abstain=[victim])   # 61 -> 41: suspended
    assert moves_of(run, victim) == [(100, 80, "update rejected"), (80, 81, "update accepted"),
                                     (81, 61, "update rejected"), (61, 41, "update rejected")]
    assert [r.reason for n in (1, 3, 4) for r in run.study.rejections(n)] == [OUTLIER] * 3
    assert run.study.rejections(1) == [(victim.address, run.update(victim, 1), OUTLIER)]
    (suspension,) = run.study.events("MemberSuspended")
    assert (suspension["member"], suspension["round_number"], suspension["reputation"], suspension["block"]) == \
        (victim.address, 4, 41, receipt["blockNumber"])
    assert run.study.suspended(victim.address) and run.study._view("suspended_count") == 1

    # Round 5: its commitment is recorded as SUSPENDED, and the others alone close every phase at once.
    rejected_commit = run.commit(victim)
    assert run.study.commit_rejections(5, rejected_commit["blockNumber"]) == \
        [(victim.address, run.update(victim, 5), SUSPENDED)]
    run.commit_all(others)
    receipt = run.study.close_commits(others[0], 5)
    assert receipt["blockNumber"] <= run.study.events("RoundOpened", 5)[0]["deadline"]   # before the deadline
    assert run.study.committers(5) == [m.address for m in others]
    if kind == "committee":
        (drawn,) = run.study.events("CommitteeDrawn", 5)
        assert sorted(drawn["committee"]) == sorted(m.address for m in others)   # it weighs 0
        assert list(drawn["committee"]) == expected_draw(run, drawn["seed"])
        with refused("CommitteeStudy.submit_result", "not on this committee"):
            submit(run, victim, 5, 1, *result(5))
        for address in drawn["committee"][:2]:
            submit(run, run.account(address), 5, 1, *result(5))
    else:
        with refused("ConsensusStudy.submit_scores", "member is suspended"):
            run.study.submit_scores(victim, 5, [1, 1, 1])
        for member in others:
            run.study.submit_scores(member, 5, [800_000] * 3)
        run.study.close_scores(others[0], 5)                  # 3 of the 3 that count: at once
        assert run.study.phase() == Phase.VOTING
        with refused("ConsensusStudy.submit_vote", "member is suspended"):
            vote(run, victim, 5)
        # Two thirds of the three that count, by count or by (equal) reputation: two votes.
        assert len({run.study.reputation(m.address) for m in others}) == 1
        vote(run, others[0], 5)
        assert run.study.round_count() == 4
        vote(run, others[1], 5)
    assert run.study.round_count() == 5
    assert run.study.reputation(victim.address) == 41          # a refused commitment costs nothing

    # Only the consortium's admin re-admits it, with the initial reputation.
    for sender in (run.s.coordinator, victim, others[0]):
        with refused(f"{run.name}.reinstate", "only the consortium admin"):
            run.study.reinstate(sender, victim.address)
    with refused(f"{run.name}.reinstate", "member is not suspended"):
        run.study.reinstate(run.s.admin, others[0].address)
    receipt = run.study.reinstate(run.s.admin, victim.address)
    assert not run.study.suspended(victim.address) and run.study.reputation(victim.address) == INITIAL_REPUTATION
    assert run.changes(6, receipt["blockNumber"]) == [(victim.address, 41, 100, "reinstated")]   # the open round
    (reinstated,) = run.study.events("MemberReinstated")
    assert (reinstated["member"], reinstated["admin"], reinstated["block"]) == \
        (victim.address, run.s.admin.address, receipt["blockNumber"])
    assert run.study._view("suspended_count") == 0
    with refused(f"{run.name}.reinstate", "member is not suspended"):
        run.study.reinstate(run.s.admin, victim.address)

    # It takes part again: round 6 waits for its commitment.
    run.commit_all(others)
    with refused(f"{run.name}.close_commits", "commit window still open"):
        run.study.close_commits(others[0], 6)
    run.commit(victim)
    assert run.study.committers(6)[-1] == victim.address
    run.study.close_commits(others[0], 6)


@pytest.mark.parametrize("kind", ["committee", "consensus"])
def test_threshold_zero_never_suspends(embedded, kind):
    run = start(embedded, kind, institutions=4)
    victim = run.members[3]
    for _ in range(6):                                       # 100 -> 80 -> ... -> 0 -> 0
        play_round(run, rejected=[victim], abstain=[victim])
    assert [after for _, after, _ in moves_of(run, victim)] == [80, 60, 40, 20, 0, 0]
    assert not run.study.suspended(victim.address) and run.study.events("MemberSuspended") == []
    play_round(run)                                          # it still takes part
    assert victim.address in run.study.committers(7)


def test_any_reputation_loss_can_suspend(consensus_at_100):
    """Threshold 100 (the highest allowed): a dissenting vote suspends too, once."""
    run = consensus_at_100
    a, b, c, d = run.members
    play_round(run, abstain=[d])                             # a, b, c finalize round 1; everyone gains 1
    vote(run, d, 1, tag=" late")                             # 101 -> 51: judged late, suspended
    (suspension,) = run.study.events("MemberSuspended")
    assert (suspension["member"], suspension["round_number"], suspension["reputation"]) == (d.address, 1, 51)
    assert run.study.suspended(d.address)
    # Suspended members do not count in quorums: a, b and c are all that count, two of them finalize.
    play_round(run, abstain=[c])
    assert run.study.events("VoteSubmitted", 2)[-1]["validator"] == b.address   # two of three finalized


@pytest.fixture
def consensus_at_100(embedded) -> Run:
    return start(embedded, "consensus", institutions=4, suspension_threshold=INITIAL_REPUTATION)


def test_a_member_suspended_at_finalization_cannot_answer_late(embedded):
    """Committee member c stays silent; the round finalizes rejecting c's update (100 -> 80, below
    the threshold of 100): its late result is refused."""
    run = start(embedded, "committee", institutions=5, committee_size=3, suspension_threshold=INITIAL_REPUTATION)
    run.commit_all()
    round = 1
    run.study.close_commits(run.members[0], round)
    a, b, c = map(run.account, run.study.committee(round, 1))
    reasons = [LOW_SCORE if m is c else ACCEPTED for m in run.members]
    submit(run, a, 1, 1, *result(1), reasons)
    submit(run, b, 1, 1, *result(1), reasons)
    assert run.study.round_count() == 1 and run.study.suspended(c.address)
    assert run.study.finalized_reasons(1) == reasons
    with refused("CommitteeStudy.submit_result", "member is suspended"):
        submit(run, c, 1, 1, *result(1), reasons)


def test_an_early_close_still_needs_min_participants(embedded):
    """Four members, min_participants 3, two suspended: the two that may take part committed, but
    the phase stays open until the deadline and then extends, as with too few commitments."""
    run = start(embedded, "consensus", institutions=4, min_participants=3, suspension_threshold=INITIAL_REPUTATION)
    a, b, c, d = run.members
    play_round(run, rejected=[c, d])                         # c and d fall to 80: suspended
    assert [run.study.suspended(m.address) for m in run.members] == [False, False, True, True]
    run.commit_all([a, b])
    with refused("ConsensusStudy.close_commits", "commit window still open"):
        run.study.close_commits(a, 2)
    run.pass_deadline()
    run.study.close_commits(a, 2)
    assert run.study.phase() == Phase.COMMITTING and len(run.study.events("CommitWindowExtended", 2)) == 1


def test_finalized_reasons_of_many_committers(embedded):
    """34 committers: the stored codes span two words (32 to a word) and read back in commit order."""
    run = start(embedded, "committee", institutions=34, committee_size=1)
    run.commit_all()
    run.study.close_commits(run.members[0], 1)
    reasons = [ACCEPTED] * 34
    reasons[0], reasons[31], reasons[32], reasons[33] = 1, LOW_SCORE, 5, OUTLIER
    (member,) = run.study.committee(1, 1)
    submit(run, run.account(member), 1, 1, *result(1), reasons)
    assert run.study.round_count() == 1
    assert run.study.finalized_reasons(1) == reasons
    assert run.study.rejections(1) == [(run.members[i].address, run.update(run.members[i], 1), reasons[i])
                                       for i in (0, 31, 32, 33)]
    for i in (0, 1, 31, 32, 33):   # judged on its update (codes below MISSING cost nothing); the committee
        address = run.members[i].address   # member also agreed
        expected = 101 if reasons[i] == ACCEPTED else 80 if reasons[i] >= MISSING else 100
        assert run.study.reputation(address) == expected + (address == member)
