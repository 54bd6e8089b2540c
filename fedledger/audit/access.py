"""Auditing risk-based access (AccessPolicy.vy): the contract's history replayed in chain order.

The contract decides every request itself; the audit replays its events (requesters' roles,
policy cells, risk models, requests, reviews) and checks that each recorded decision and reason
is what the policy, the requester's role and the risk model in effect at that point give, that
each risk model named is the study's model of that round, and that each review closes a pending
break-glass access. A history that fails here was not made by the contract the audit knows (a
forged or rewritten record). What it cannot check: that a requester's risk level is the model's
output on the patient's vitals, which only the holder of the input (named by its digest) can
recompute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedledger.audit.report import AuditReport
from fedledger.chain.access import MAX_ACTIONS, MAX_ROLES, RISK_LEVELS, AccessPolicy, AccessReason, Decision
from fedledger.chain.records import bytes32_to_digest


def decide(role: int, cell: Decision, model_named: bool, action: int, risk_level: int,
           emergency: bool) -> tuple[Decision, AccessReason]:
    """The decision and reason AccessPolicy.vy gives a request (`cell`: the policy's decision
    for the requester's role, the action and the risk level)."""
    if role == 0:
        return Decision.DENY, AccessReason.NOT_A_REQUESTER
    if not model_named:
        return Decision.DENY, AccessReason.WRONG_MODEL
    if action >= MAX_ACTIONS or risk_level >= len(RISK_LEVELS):
        return Decision.DENY, AccessReason.OUT_OF_RANGE
    if cell == Decision.PERMIT:
        return Decision.PERMIT, AccessReason.BY_POLICY
    if cell == Decision.BREAK_GLASS:
        return (Decision.BREAK_GLASS, AccessReason.EMERGENCY) if emergency else (Decision.DENY,
                                                                                 AccessReason.NO_EMERGENCY)
    return Decision.DENY, AccessReason.BY_POLICY


@dataclass
class _Replay:
    model_of: Callable[[str, int], str | None]
    roles: dict[str, int] = field(default_factory=dict)
    cells: dict[tuple[int, int, int], Decision] = field(default_factory=dict)
    model: str | None = None
    pending: set[int] = field(default_factory=set)
    requests: int = 0
    problems: list[str] = field(default_factory=list)

    def apply(self, e: Mapping[str, Any]) -> None:
        kind = e["event"]
        if kind == "RequesterSet":
            self.roles[e["requester"]] = e["role"] if 0 <= e["role"] <= MAX_ROLES else 0
        elif kind == "PolicySet":
            self.cells[(e["role"], e["action"], e["risk_level"])] = Decision(min(e["decision"], Decision.BREAK_GLASS))
        elif kind == "RiskModelSet":
            self.model = bytes32_to_digest(e["model"])
            actual = self.model_of(e["study"], e["round_number"])
            if actual != self.model:
                self.problems.append(f"block {e['block']}: the risk model {self.model[:12]} is not round "
                                     f"{e['round_number']}'s model of study {e['study']} ({actual or 'none'})")
        elif kind == "AccessDecided":
            self._decided(e)
        elif kind == "BreakGlassReviewed":
            if e["request_id"] not in self.pending:
                self.problems.append(f"block {e['block']}: request {e['request_id']} reviewed, but it is no "
                                     "break-glass access awaiting review")
            self.pending.discard(e["request_id"])

    def _decided(self, e: Mapping[str, Any]) -> None:
        self.requests += 1
        role = self.roles.get(e["requester"], 0)
        model = bytes32_to_digest(e["model"])
        cell = self.cells.get((role, e["action"], e["risk_level"]), Decision.DENY)
        expected = decide(role, cell, self.model is not None and model == self.model, e["action"], e["risk_level"],
                          e["emergency"])
        recorded = (e["decision"], e["reason"])
        if e["request_id"] != self.requests:
            self.problems.append(f"block {e['block']}: request {e['request_id']} where {self.requests} was next")
        if e["role"] != role or recorded != (int(expected[0]), int(expected[1])):
            self.problems.append(f"block {e['block']}: request {e['request_id']} by {e['requester']} recorded "
                                 f"{_words(*recorded)} as role {e['role']}; the policy in effect gives role {role} "
                                 f"{_words(*expected)}")
        if expected[0] == Decision.BREAK_GLASS:
            self.pending.add(e["request_id"])


def _words(decision: int, reason: int) -> str:
    try:
        return f"{Decision(decision).name.lower()} ({AccessReason(reason).name.lower()})"
    except ValueError:
        return f"decision {decision} (reason {reason})"


def replay_access(events: Sequence[Mapping[str, Any]], model_of: Callable[[str, int], str | None]
                  ) -> tuple[int, list[str]]:
    """(requests replayed, problems) of an access contract's history in chain order; `model_of`
    gives a study's model digest of a round (None where it has none)."""
    replay = _Replay(model_of)
    for event in events:
        replay.apply(event)
    return replay.requests, replay.problems


def verify_access(report: AuditReport, policy: AccessPolicy, model_of: Callable[[str, int], str | None]) -> None:
    """Record whether `policy`'s history replays to the decisions it recorded."""
    requests, problems = replay_access(policy.history(), model_of)
    report.not_verified("that each access request's risk level is the risk model's output on the patient's vitals "
                        "(the record names the input's digest; only its holder can run the model on it again)")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    report.record("access", f"each of the {requests} access decisions follows the policy, roles and risk model "
                  "in effect", not problems, "; ".join(problems[:5]) + more)
