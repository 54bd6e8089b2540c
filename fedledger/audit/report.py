"""What an audit found: every check, and exactly which ones failed and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    subject: str      # "study", "round 3", "round 3 update 0xAb..", ...
    check: str        # short name of the check, e.g. "aggregation recomputed"
    ok: bool
    detail: str = ""  # why it failed (empty when ok)


@dataclass
class AuditReport:
    run: str
    rounds: int = 0
    findings: list[Finding] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)   # what this audit could not check, said plainly
    # the final model's figures by institution, from the signed evaluations the audit checked on chain
    final_evaluations: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def record(self, subject: str, check: str, ok: bool, detail: str = "") -> bool:
        self.findings.append(Finding(subject, check, ok, "" if ok else detail))
        return ok

    def not_verified(self, what: str) -> None:
        """Say that `what` was not (or could not be) checked: the summary lists it."""
        self.unverified.append(what)

    def summary(self) -> str:
        lines = [f"audit of {self.run}: {self.rounds} rounds, {len(self.findings)} checks, "
                 f"{len(self.failures)} failed"]
        lines += [f"FAIL {f.subject}: {f.check}: {f.detail}" for f in self.failures]
        lines += [f"NOT VERIFIED: {what}" for what in self.unverified]
        lines.append("OK: every record, artifact, signature and aggregation checks out" if self.ok
                     else "FAILED")
        return "\n".join(lines)
