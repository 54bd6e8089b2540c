"""The loose architecture's roles: institutions train and hand their signed updates to the
coordinator; the coordinator screens, aggregates and anchors one record a round.

Off chain, the members talk through their noticeboards: an institution posts its signed update
of round r ("update"), the coordinator collects them, posts who its round aggregates when the
update scheme needs the senders to act ("senders"), and after anchoring gives every participant
its Merkle proof of inclusion ("proofs"), which the institution checks against the anchored root.
The coordinator can stall or censor, but everything it claims is anchored with digests that
`audit verify` re-derives from the store, so it cannot falsify a round unnoticed.
"""

from __future__ import annotations

from typing import Any

from fedledger.chain import NO_SPEND, RoundRecord, spend_problem
from fedledger.crypto import merkle_proof, recover_signer, verify_proof
from fedledger.errors import FedLedgerError, StoreError, UpdateRejected
from fedledger.protocol.aggregate import Aggregate, aggregate_result, round_task
from fedledger.protocol.context import ACTED, DONE, MemberContext, Step, waiting
from fedledger.protocol.contribution import Contribution, Update
from fedledger.protocol.manifest import update_leaves
from fedledger.protocol.messages import RoundTask, SignedUpdate
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.scheme import UpdateScheme
from fedledger.protocol.evaluation import read_evaluation
from fedledger.protocol.setup import study_task
from fedledger.report import summarize_evaluations
from fedledger.store import check_digest
from fedledger.validation import Reason, Rejection, ValidationRules, penalized

ARCHITECTURE = "loose"
ZERO_ADDRESS = "0x" + "00" * 20
UPDATE, SENDERS, PROOFS = "update", "senders", "proofs"    # the noticeboard's kinds


class LooseInstitution:
    """An institution of a loose study: trains each open round and posts its signed update for
    the coordinator; does its scheme's part once the coordinator names the senders; checks its
    Merkle proof of inclusion once the round is anchored."""

    def __init__(self, ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> None:
        self.ctx, self.scheme = ctx, scheme
        self.contribution = Contribution(ctx, node, scheme)
        self.checked = ctx.study.round_count()     # rounds before this process started are not rechecked

    def step(self) -> Step:
        study, ctx = self.ctx.study, self.ctx
        coordinator = study.coordinator()
        if coordinator == ZERO_ADDRESS:
            return waiting("the coordinator to start it")
        finished = study.round_count()
        while self.checked < finished:
            self.checked += 1
            self._check_counted(self.checked, coordinator)
        if ctx.over(finished):
            return self.contribution.evaluate_final(finished)
        r = ctx.timings.round = finished + 1
        task = round_task(study, ctx.strategy, r, study.latest_model())
        if ctx.notices.mine(r, UPDATE) is None:
            made = self.contribution.make(task)
            if isinstance(made, Step):
                return made
            ctx.notices.post(r, UPDATE, {**made.signed.to_dict(), "metrics": made.metrics})
            ctx.log.info("round %d: trained update %s; offered to the coordinator", r, made.signed.commitment.update[:12])
            return ACTED
        if self.scheme.exchanges:
            notice = ctx.notices.read(coordinator, r, SENDERS)
            step = self.scheme.conclude(ctx, task, notice) if isinstance(notice, dict) else None
            if step is not None:
                return step
        return waiting(f"round {r}: the coordinator to anchor it")

    def _check_counted(self, n: int, coordinator: str) -> None:
        """Was my update of round `n` counted? Checks the coordinator's Merkle proof against the
        anchored root; a proof that does not check out is an error, said once."""
        mine = self.ctx.notices.mine(n, UPDATE)
        if mine is None:
            return
        record, ctx = self.ctx.study.get_round(n), self.ctx
        if ctx.address not in record.participants:
            ctx.log.warning("round %d: my update was not aggregated: %s", n, self._why_not(record))
            return
        leaf = update_leaves([SignedUpdate.from_dict(mine).as_entry()])[0]
        proofs = ctx.notices.read(coordinator, n, PROOFS)
        proof = proofs.get(ctx.address) if isinstance(proofs, dict) else None
        if not (isinstance(proof, list) and all(isinstance(p, str) for p in proof)):
            ctx.log.warning("round %d: my update was aggregated, but the coordinator gave no proof of it", n)
        elif not verify_proof(leaf, proof, record.updates_root):
            raise FedLedgerError(f"round {n}: {ctx.name(ctx.address)}'s update is missing from the anchored "
                                 "Merkle root")
        else:
            ctx.log.info("round %d: my update was aggregated (model %s)", n, record.model[:12])

    def _why_not(self, record: RoundRecord) -> str:
        try:
            manifest = self.ctx.store.get_json(record.manifest_digest)
        except FedLedgerError as exc:   # the coordinator is down, say: not worth holding up the next round
            return f"the manifest saying why is unavailable ({exc})"
        reasons = [r.get("reason") for r in manifest.get("rejected", []) if r.get("institution") == self.ctx.address]
        return str(reasons[0]) if reasons else "the coordinator did not collect it"


class Coordinator:
    """The loose study's coordinator: starts the study, collects the institutions' signed updates
    from their noticeboards, screens, aggregates and anchors each round. Latecomers get a whole
    [protocol] commit_window of blocks from the first update of the round; with members drawn,
    a round no update comes to ends empty once its windows have passed."""

    def __init__(self, ctx: MemberContext, scheme: UpdateScheme, config_digest: str, initial_model: str) -> None:
        self.ctx, self.scheme = ctx, scheme
        self.config_digest, self.initial_model = config_digest, initial_model
        self.rules = ValidationRules.from_config(ctx.cfg.to_dict())
        self.round = 0
        self._new_round(0)

    def _new_round(self, r: int) -> None:
        self.round, self.opened = r, None      # the block the round's first update came in
        self.started: int | None = None        # the block this coordinator first saw the round open
        self.collected: dict[str, Update] = {}
        self.malformed: dict[str, str] = {}
        self.screened: tuple[list[SignedUpdate], list[Rejection]] | None = None
        self.announced = False

    def step(self) -> Step:
        study, ctx = self.ctx.study, self.ctx
        if study.coordinator() == ZERO_ADDRESS:
            ctx.send(f"started the study (config {self.config_digest[:12]}, initial model {self.initial_model[:12]})",
                     lambda: study.start_study(ctx.account, self.config_digest, self.initial_model))
            return ACTED
        finished = study.round_count()
        if ctx.over(finished):
            return DONE
        r = ctx.timings.round = finished + 1
        if r != self.round:
            self._new_round(r)
        task = round_task(study, ctx.strategy, r, study.latest_model())
        if self.screened is None:
            step = self._collect(r)
            if step is not None:
                return step
            with ctx.timings.measure("aggregate"):
                self.screened = self.screen(task, [u.signed for u in self.collected.values()])
        accepted, rejected = self.screened
        record = None
        if self.scheme.exchanges and accepted:
            senders = [u.candidate() for u in accepted]
            if not self.announced:
                ctx.notices.post(r, SENDERS, self.scheme.announce(ctx.store, task, senders))
                self.announced = True
                return ACTED
            record = self.scheme.record(ctx.store, task, senders)
            if isinstance(record, Step):
                return record
        state_before = ctx.store.get_json(study.get_round(finished).manifest_digest)["state_after"] if finished else None
        with ctx.timings.measure("aggregate"):
            result = self.aggregate(task, state_before, accepted, rejected, record)
        self._anchor(task, result, accepted, rejected)
        return ACTED

    def _collect(self, r: int) -> Step | None:
        """Read the updates the members drawn for round `r` posted so far; None once the round
        is ready to be screened."""
        ctx = self.ctx
        expected = self.scheme.draw.members(r, ctx.roster)
        if self.started is None:
            self.started = ctx.study.block_number()
        for address in expected:
            if address in self.collected or address in self.malformed:
                continue
            doc = ctx.notices.read(address, r, UPDATE)
            if doc is None:
                continue
            try:
                update = SignedUpdate.from_dict(doc)
                metrics = doc.get("metrics")
                if update.institution != address or not isinstance(metrics, str):
                    raise UpdateRejected("it names another institution or no metrics digest")
            except UpdateRejected as exc:
                self.malformed[address] = str(exc)
                ctx.log.warning("round %d: %s posted a malformed update: %s", r, ctx.name(address), exc)
                continue
            self.collected[address] = Update(update, metrics)
            ctx.log.info("round %d: collected the update of %s (%d of %d)", r, ctx.name(address),
                         len(self.collected), len(expected))
        if self.collected and self.opened is None:
            self.opened = ctx.study.block_number()
        if len(self.collected) + len(self.malformed) == len(expected):
            return None
        window = ctx.cfg.protocol.commit_window
        if self.opened is not None:
            closes = self.opened + window
        elif self.scheme.draw.fraction < 1.0:
            # a sampled fleet's round may get no update at all (everyone drawn is offline): it ends
            # empty once the members' preparation and update windows have passed since it opened
            closes = self.started + (1 + self.scheme.preparation_windows) * window
        else:
            return waiting(f"round {r}: the institutions' updates")
        if ctx.study.block_number() <= closes:
            return waiting(f"round {r}: the other institutions' updates", closes + 1)
        return None

    def screen(self, task: RoundTask, submissions: list[SignedUpdate]) -> tuple[list[SignedUpdate], list[Rejection]]:
        """Accept the submissions that are signed, from active unsuspended members, for this
        round, within the privacy budget and valid under the update scheme; reject the others
        with their reason (malformed posts included)."""
        study = self.ctx.study
        claimed = [s.institution for s in submissions]
        members = study.institutions_among(claimed)
        suspended = {a for a in claimed if a in members and study.suspended(a)}
        # a post that is no signed update at all proves nothing against its supposed sender
        rejected = [Rejection(a, Reason.BAD_SIGNATURE, why) for a, why in self.malformed.items()]
        eligible: list[SignedUpdate] = []
        for sub in submissions:
            problem = _protocol_problem(task, sub, members, suspended) or self._privacy_problem(sub)
            if problem:
                rejected.append(Rejection(sub.institution, *problem, _digest_or_none(sub.commitment.update),
                                          sub.commitment.num_samples))
            else:
                eligible.append(sub)
        passed, invalid = self.scheme.screen(self.ctx.store, task, [s.candidate() for s in eligible], self.rules)
        by_candidate = {s.candidate(): s for s in reversed(eligible)}   # identical resubmissions: keep the first
        return [by_candidate[c] for c in passed], rejected + invalid

    def _privacy_problem(self, sub: SignedUpdate) -> tuple[Reason, str] | None:
        study = self.ctx.study
        code = spend_problem(sub.spend or NO_SPEND, study.epsilon_spent(sub.institution), study.epsilon_budget())
        if code == Reason.PRIVACY_BUDGET:
            return Reason.PRIVACY_BUDGET, "the release would take the member past the study's privacy budget"
        if code is not None:    # the spend is not signed: nothing shows it was the member's, so no penalty
            return Reason.PRIVACY_BUDGET, "missing or malformed privacy spend: the release cannot be counted"
        return None

    def aggregate(self, task: RoundTask, state_before: str | None, accepted: list[SignedUpdate],
                  rejected: list[Rejection], record: Any) -> Aggregate:
        """The round's result, with the institutions' own evaluations of the parent model as its
        metrics (a coordinator holds no test data of its own)."""
        store = self.ctx.store
        metrics = store.put_json(self._metrics(task, accepted))
        return aggregate_result(store, self.ctx.strategy, task, state_before, [u.as_entry() for u in accepted],
                                rejected, record, architecture=ARCHITECTURE, metrics=metrics)

    def _anchor(self, task: RoundTask, result: Aggregate, accepted: list[SignedUpdate],
                rejected: list[Rejection]) -> None:
        ctx, manifest = self.ctx, result.manifest
        spends, rejected_spends = self._spends(accepted, rejected)
        record = RoundRecord(round=task.round, parent_model=task.global_model, model=result.model,
                             updates_root=manifest["updates_root"],
                             participants=tuple(e["institution"] for e in manifest["updates"]),
                             metrics_digest=manifest["metrics"], manifest_digest=result.manifest_digest,
                             rejected=tuple((r.institution, r.update, int(r.code)) for r in rejected),
                             evidence=self._evidence(rejected), spends=spends, rejected_spends=rejected_spends)
        ctx.send(f"round {task.round}: anchored model {result.model[:12]} ({len(accepted)} updates aggregated, "
                 f"{len(rejected)} rejected)", lambda: ctx.study.anchor_round(ctx.account, record))
        leaves = update_leaves(manifest["updates"])
        ctx.notices.post(task.round, PROOFS, {e["institution"]: merkle_proof(leaves, leaf)
                                              for e, leaf in zip(manifest["updates"], leaves)})

    def _evidence(self, rejected: list[Rejection]) -> tuple[tuple[int, str], ...]:
        """What each member rejected for a fault of its own signed for the update rejected (the
        contract penalizes only with the member's signature); (0, "") for the other rejections,
        whose signatures may be anything."""
        signed = {(u.signed.institution, u.signed.commitment.update): u.signed for u in self.collected.values()}
        evidence = []
        for r in rejected:
            sub = signed.get((r.institution, r.update))
            evidence.append((sub.commitment.num_samples, sub.signature) if sub and penalized(r.code) else (0, ""))
        return tuple(evidence)

    def _spends(self, accepted: list[SignedUpdate], rejected: list[Rejection]) -> tuple[tuple, tuple]:
        """The spends to anchor: every participant's, and those of rejected updates that were
        the member's own well-formed releases (codes 6 to 14), which count as spent too."""
        if not self.ctx.study.epsilon_budget():
            return (), ()
        released = {(u.signed.institution, u.signed.commitment.update): u.signed.spend for u in self.collected.values()}
        rejected_spends: dict[str, Any] = {}
        for r in rejected:
            spend = released.get((r.institution, r.update))
            if spend is not None and Reason.MISSING <= r.code <= Reason.LOW_SCORE:
                rejected_spends.setdefault(r.institution, spend)
        return tuple((u.institution, u.spend) for u in accepted), tuple(rejected_spends.items())

    def _metrics(self, task: RoundTask, accepted: list[SignedUpdate]) -> dict[str, Any]:
        """The round's metrics: the accepted institutions' signed evaluations of the parent model
        summarized, with their digests under "evaluations" (the audit re-derives the summary from
        them), and, under "left_out", why any of them was not used."""
        reported, digests, left_out = {}, {}, {}
        study_kind = study_task(self.ctx.cfg)
        for update in accepted:
            name, digest = self.ctx.name(update.institution), self.collected[update.institution].metrics
            evaluation = read_evaluation(self.ctx.store, digest, update.institution, task.global_model,
                                         task.chain_id, task.ledger, study_kind)
            if isinstance(evaluation, str):
                left_out[name] = evaluation
                self.ctx.log.warning("round %d: the evaluation of %s is left out: %s", self.round, name, evaluation)
            else:
                reported[name], digests[name] = evaluation, digest
        return {"evaluated_model": task.global_model, **(summarize_evaluations(reported, study_kind) if reported else {}),
                **({"evaluations": digests} if digests else {}), **({"left_out": left_out} if left_out else {})}


def _protocol_problem(task: RoundTask, sub: SignedUpdate, members: set[str], suspended: set[str]
                      ) -> tuple[Reason, str] | None:
    c = sub.commitment
    if recover_signer(c, sub.signature) != sub.institution:
        return Reason.BAD_SIGNATURE, "signature does not match the institution's address"
    if sub.institution not in members:
        return Reason.NOT_MEMBER, "not an active member with the institution role"
    if sub.institution in suspended:
        return Reason.SUSPENDED, "suspended by the reputation policy until governance re-admits it"
    if (c.round, c.parent_model, c.chain_id, c.ledger.lower()) != (
            task.round, task.global_model, task.chain_id, task.ledger.lower()):
        return Reason.WRONG_ROUND, "commitment is for another round, model or ledger (replay?)"
    return None


def _digest_or_none(update: str) -> str | None:
    """A submission's claimed digest if it is one (a forged submission may name anything)."""
    try:
        return check_digest(update)
    except StoreError:
        return None
