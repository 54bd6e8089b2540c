"""What the audit of every architecture checks about validation and reputation.

Rejections: the manifest's rejections must be exactly the chain's UpdateRejected records, and the
updates that can be screened again (everything but availability and the protocol-level reasons,
which depended on a moment or on bytes no one kept, and none of which costs reputation) must
screen to the same verdicts: a penalty the stored bytes do not justify fails the audit.

Reputation: the ReputationChanged, MemberSuspended and MemberReinstated events are replayed in
chain order; every change must follow its rule, every suspension must happen exactly when a
change leaves a member below the threshold, and every re-admission must be the admin's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain import INITIAL_REPUTATION, REINSTATED, reputation_after
from fedledger.chain import Rejection as ChainRejection
from fedledger.chain.reputation import suspends
from fedledger.errors import FedLedgerError
from fedledger.store import ArtifactStore
from fedledger.protocol import RoundTask, UpdateScheme
from fedledger.validation import Candidate, Reason, Rejection, ValidationRules, penalized

# Verdicts that depend on more than the stored bytes and the rules: whether a blob could be
# fetched at the time, and the signature/membership/round checks of submissions that were not kept.
NOT_RESCREENED = frozenset({Reason.NOT_MEMBER, Reason.SUSPENDED, Reason.WRONG_ROUND, Reason.DUPLICATE,
                            Reason.BAD_SIGNATURE, Reason.MISSING, Reason.PRIVACY_BUDGET})


def penalty_reason(code: int) -> str | None:
    """The ReputationChanged reason an update's outcome causes (None: no change)."""
    if code == Reason.ACCEPTED:
        return "update accepted"
    return "update rejected" if penalized(code) else None


def verify_rejections(report: AuditReport, subject: str, manifest_rejected: Sequence[Rejection],
                      on_chain: Sequence[ChainRejection]) -> None:
    """The manifest's rejections are exactly the chain's records (member, digest, code)."""
    listed = Counter((r.institution.lower(), r.update, int(r.code)) for r in manifest_rejected)
    recorded = Counter((r.member.lower(), r.update, int(r.reason)) for r in on_chain)
    report.record(subject, "rejections recorded on chain as in the manifest", listed == recorded,
                  f"manifest rejects {sorted(listed.elements())}, the chain records {sorted(recorded.elements())}")


def verify_screening(report: AuditReport, subject: str, scheme: UpdateScheme, store: ArtifactStore, task: RoundTask,
                     accepted: Sequence[Candidate], rejected: Sequence[Rejection], rules: ValidationRules,
                     excluded: Mapping[str, Rejection] | None = None) -> None:
    """Screen the round's updates again, as the study's update scheme screens them; every
    verdict that depends only on the stored bytes and the rules must come out the same."""
    # a rejection that names no update (a malformed submission) leaves nothing to screen again
    again = [r for r in rejected if r.code not in NOT_RESCREENED and r.update is not None
             and r.num_samples is not None]
    candidates = list(accepted) + [Candidate(r.institution, r.update, r.num_samples) for r in again]
    try:
        passed, failed = scheme.screen(store, task, candidates, rules, excluded)
    except FedLedgerError as exc:
        report.record(subject, "rejections screened again", False, str(exc))
        return
    expected = (sorted(c.institution for c in accepted), sorted((r.institution, int(r.code)) for r in again))
    found = (sorted(c.institution for c in passed), sorted((r.institution, int(r.code)) for r in failed))
    report.record(subject, "rejections screened again", found == expected,
                  f"screening again accepts {found[0]} and rejects {found[1]}; the round accepted "
                  f"{expected[0]} and rejected {expected[1]}")


class ReputationReplay:
    """Replays a study contract's reputation events against the policy's rules."""

    def __init__(self, threshold: int, roster: Iterable[str] = ()) -> None:
        self.threshold = threshold
        self.reputation: dict[str, int] = {m: INITIAL_REPUTATION for m in roster}
        self.suspended: set[str] = set()
        self.problems: list[str] = []

    def replay(self, events: Sequence[Mapping[str, Any]], admin_at: Any) -> Counter:
        """Walk the events in chain order; returns the (round, member, reason) changes seen.
        `admin_at(block)` is the consortium's admin at a block (who may reinstate)."""
        seen: Counter = Counter()
        pending_suspension: str | None = None
        for e in events:
            kind = e["event"]
            if kind == "ReputationChanged":
                self._expect_no_suspension(pending_suspension)
                member, reason = e["member"], e["reason"]
                before = self.reputation.get(member, INITIAL_REPUTATION)
                try:
                    after = reputation_after(before, reason)
                except KeyError:
                    after = None
                if e["before"] != before or e["after"] != after:
                    self.problems.append(f"{member}: {reason} moved {e['before']} -> {e['after']}, "
                                         f"the rule gives {before} -> {after}")
                self.reputation[member] = e["after"]
                if reason == REINSTATED:
                    self.suspended.discard(member)
                else:
                    seen[(e["round_number"], member, reason)] += 1
                    pending_suspension = member if suspends(e["after"], self.threshold, member in self.suspended) \
                        else None
            elif kind == "MemberSuspended":
                if pending_suspension != e["member"]:
                    self.problems.append(f"{e['member']} suspended without falling below {self.threshold}")
                self.suspended.add(e["member"])
                pending_suspension = None
            elif kind == "MemberReinstated" and e["admin"] != admin_at(e["block"]):
                self.problems.append(f"{e['member']} reinstated by {e['admin']}, not the consortium's admin")
        self._expect_no_suspension(pending_suspension)
        return seen

    def _expect_no_suspension(self, member: str | None) -> None:
        if member is not None:
            self.problems.append(f"{member} fell below {self.threshold} but was not suspended")

    def verify(self, report: AuditReport, seen: Counter, expected: Counter, on_chain: Mapping[str, int],
               suspended_on_chain: set[str]) -> None:
        report.record("reputation", "every change follows its rule and the suspension threshold",
                      not self.problems, "; ".join(self.problems[:5]))
        unexplained = (seen - expected) + (expected - seen)
        report.record("reputation", "changes are exactly those the rounds call for", not unexplained,
                      f"differences between recorded and expected changes: {dict(unexplained)}")
        replayed = {m: self.reputation.get(m, INITIAL_REPUTATION) for m in on_chain}
        report.record("reputation", "replayed reputation equals the contract's", replayed == dict(on_chain),
                      f"contract {dict(on_chain)}, replayed {replayed}")
        report.record("reputation", "replayed suspensions equal the contract's",
                      self.suspended & set(on_chain) == suspended_on_chain,
                      f"contract suspends {sorted(suspended_on_chain)}, replay {sorted(self.suspended)}")
