"""One study under the three architectures side by side, then each injected fault under each.

The honest runs share seeds, data and initial model, so their model digests must agree round
after round (deterministic aggregation); the comparison checks that. Fault outcomes are read from
what happened (the exception that stopped a run, outvoted lists, reputation events, accepted
lists, the audit), never assumed from the architecture.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fedledger.audit import verify_run
from fedledger.chain import open_chain, study_contract
from fedledger.config import ARCHITECTURES, Config, FaultsSection, config_from_dict, study_task_kind
from fedledger.errors import ConfigError, FedLedgerError
from fedledger.protocol.setup import load_clients
from fedledger.report.compare import comparison_report, plot_comparison
from fedledger.rundir import RunDir
from fedledger.simulation.study import StudyResult, faults_of, run_study

FAULTS = ("wrong_result", "silent", "no_update")
COMPARE_FORMAT = "fedledger.compare/1"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Comparison:
    out_dir: Path
    data: dict[str, Any]    # everything in compare.json
    report: str             # compare.md: the tables


def variant(cfg: Config, architecture: str, rounds: int | None = None, **faults: int) -> Config:
    """`cfg` under `architecture` (with `rounds` and `faults` if given), validated again."""
    varied = replace(cfg, study=replace(cfg.study, architecture=architecture, rounds=rounds or cfg.study.rounds),
                     faults=FaultsSection(**faults))
    return config_from_dict(varied.to_dict(), base_dir=cfg.base_dir)


def median_round_seconds(rounds: Sequence[dict[str, Any]]) -> float:
    """Median of the rounds' wall seconds, round 1 left out when there are others (it includes
    warm-up: first model fetches, lazy imports, contract code caching)."""
    later = [r["seconds"] for r in rounds if r["round"] > 1] or [r["seconds"] for r in rounds]
    return statistics.median(later)


def compare_architectures(cfg: Config, *, out_dir: Path | None = None, fault_rounds: int = 3,
                          faults: bool = True, log: Log | None = None) -> Comparison:
    """Run `cfg` under loose, semi and full, then (with `faults`) a `fault_rounds`-round study per
    architecture and fault; write every run, compare.json, compare.md and accuracy.png to `out_dir`
    (default: [study].output_dir/compare-NAME-N)."""
    if cfg.data.validation_fraction == 0.0:
        raise ConfigError("compare runs the \"full\" architecture, which scores every update on held-out "
                          "validation data: set [data].validation_fraction above 0, e.g. 0.2")
    if fault_rounds < 1:
        raise ConfigError(f"--fault-rounds must be at least 1, got {fault_rounds}")
    if study_task_kind(cfg) not in ("binary", "multiclass"):
        raise ConfigError(f"compare sets the architectures side by side by accuracy, which a {study_task_kind(cfg)} "
                          "study has none of: run each architecture with `fedledger run` and compare its results")
    say = log or (lambda _: None)
    out = _out_dir(cfg, out_dir)
    honest: dict[str, dict[str, Any]] = {}
    for arch in ARCHITECTURES:
        say(f"{arch}: {cfg.study.rounds} rounds")
        result = run_study(variant(cfg, arch), run_dir=out / arch, progress=False)
        honest[arch] = _figures(result, _audit(result.run_dir) if cfg.chain.enabled else None)
    data: dict[str, Any] = {"format": COMPARE_FORMAT, "study": cfg.study.name, "config": cfg.to_dict(),
                            "architectures": honest, **_digest_agreement(honest), "fault_rounds": fault_rounds,
                            "faults": []}
    if faults:
        roster = [c.name for c in load_clients(cfg)]   # roster order: who Faults makes misbehave
        for arch in ARCHITECTURES:
            for fault in FAULTS:
                say(f"{arch} with {fault} = 1: {fault_rounds} rounds")
                data["faults"].append(_fault_experiment(variant(cfg, arch, fault_rounds, **{fault: 1}), fault,
                                                        out / "faults" / f"{arch}-{fault}", honest[arch], roster))
    report = comparison_report(data)
    RunDir(out).write_json("compare.json", data)
    (out / "compare.md").write_text(report + "\n")
    plot_comparison(data, out / "accuracy.png")
    return Comparison(out, data, report)


def _out_dir(cfg: Config, out_dir: Path | None) -> Path:
    if out_dir is None:
        return RunDir.create(cfg.resolve_path(cfg.study.output_dir), f"compare-{cfg.study.name}").path
    if out_dir.exists() and any(out_dir.iterdir()):
        # run directories hold persisted chains: reusing one would mix two runs
        raise FedLedgerError(f"{out_dir} is not empty; give compare a new or empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _names(run_dir: Path) -> dict[str, str]:
    """Institution address -> name, from run.json."""
    return {address: name for name, address in RunDir(run_dir).read_run_info()["institutions"].items()}


def _figures(result: StudyResult, audit: dict[str, Any] | None) -> dict[str, Any]:
    rounds, final = result.rounds, result.final
    mean = lambda key: statistics.mean(r[key] for r in rounds)  # noqa: E731
    names = _names(result.run_dir)
    return {
        "run_dir": str(result.run_dir),
        "rounds": len(rounds),
        "models": [r["model"] for r in rounds],
        "accepted": [sorted(names.get(a, a) for a in r["accepted"]) for r in rounds],
        "rejected": [{names.get(x["institution"], x["institution"]): x["reason"] for x in r["rejected"]}
                     for r in rounds],
        "accuracy": {"client_average": final["client_average"]["accuracy"], "pooled": final["pooled"]["accuracy"],
                     "per_institution": {n: m["accuracy"] for n, m in final["per_institution"].items()}},
        "pooled_accuracy_per_round": [r["metrics"]["pooled"]["accuracy"] for r in rounds],
        "median_seconds_per_round": median_round_seconds(rounds),
        "transactions_per_round": mean("transactions"),
        "gas_per_round": mean("gas"),
        "calldata_bytes_per_round": mean("calldata_bytes"),
        "setup_transactions": result.setup_chain.get("transactions", 0),
        "setup_gas": result.setup_chain.get("gas_used", 0),
        "wall_seconds": result.wall_seconds,
        "audit": audit,
    }


def _digest_agreement(honest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether the architectures' model digests agree every round; if not, the first round they do
    not and why: an architecture that left out an update (full's exclusion rule can, on honest
    but unusual data), or, with the same updates aggregated, a determinism bug."""
    per_round = list(zip(*(h["models"] for h in honest.values())))
    diverged = next((i + 1 for i, models in enumerate(per_round) if len(set(models)) > 1), None)
    if diverged is None:
        return {"digests_identical": True, "first_divergent_round": None, "divergence": None}
    accepted = {arch: set(h["accepted"][diverged - 1]) for arch, h in honest.items()}
    everyone = set().union(*accepted.values())
    left_out = [f"{arch} left out {member} ({h['rejected'][diverged - 1].get(member, 'no update')})"
                for arch, h in honest.items() for member in sorted(everyone - accepted[arch])]
    why = "; ".join(left_out) or ("every architecture aggregated the same updates, yet the models differ: "
                                  "a determinism bug")
    return {"digests_identical": False, "first_divergent_round": diverged, "divergence": why}


def _audit(run_dir: Path) -> dict[str, Any]:
    """verify_run's verdict: ok, the rounds with failures, the failures (first 20), its seconds."""
    started = time.perf_counter()
    try:
        report = verify_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - an auditor that crashes is a failed audit; say why in the table
        return {"ok": False, "failed_rounds": [], "failures": [], "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - started}
    failed = sorted({int(m.group(1)) for f in report.failures if (m := re.match(r"round (\d+)", f.subject))})
    return {"ok": report.ok, "failed_rounds": failed, "error": None, "seconds": time.perf_counter() - started,
            "failures": [f"{f.subject}: {f.check}: {f.detail}" for f in report.failures[:20]]}


def _fault_experiment(cfg: Config, fault: str, run_dir: Path, honest: dict[str, Any], roster: list[str]
                      ) -> dict[str, Any]:
    """Run `cfg` (one fault injected) and say what happened, against the same architecture's
    honest run: members left out that the honest run aggregated, outvoted results, reputation
    cuts, committee redraws, the audit's verdict, whether the models stayed the same."""
    arch = cfg.study.architecture
    faulty = _faulty_members(cfg, roster)
    entry: dict[str, Any] = {"architecture": arch, "fault": fault, "run_dir": str(run_dir), "faulty": faulty}
    try:
        result = run_study(cfg, run_dir=run_dir, progress=False)
    except FedLedgerError as exc:
        done = len(RunDir(run_dir).metrics.read_text().splitlines()) if RunDir(run_dir).metrics.exists() else 0
        reason = re.sub(r"^round \d+: ", "", str(exc))
        return {**entry, "survived": False, "stalled_at": done + 1, "error": str(exc),
                "outcome": f"stalled at round {done + 1}: {reason}"}
    names = _names(run_dir)
    rounds = result.rounds
    outvoted = {r["round"]: sorted(names.get(a, a) for a in r.get("outvoted", [])) for r in rounds if r.get("outvoted")}
    redrawn = [r["round"] for r in rounds if len(r.get("committees", [])) > 1]
    paired = rounds[:honest["rounds"]]   # compared round by round with the honest run, as far as it goes
    missing = {n: [r["round"] for r in paired if n in honest["accepted"][r["round"] - 1] and a not in r["accepted"]]
               for a, n in names.items()}
    extra = {n: [r["round"] for r in paired if n not in honest["accepted"][r["round"] - 1] and a in r["accepted"]]
             for a, n in names.items()}
    drawn = {n: [r["round"] for r in rounds if any(a in c for c in r.get("committees", []))] for a, n in names.items()}
    models = [r["model"] for r in rounds]
    verdict = _audit(run_dir) if cfg.chain.enabled else None
    penalties = _penalties(run_dir, arch, names) if cfg.chain.enabled and arch != "loose" else {}

    facts = []
    for member in sorted({m for ms in outvoted.values() for m in ms}):
        facts.append(f"{member} outvoted in {in_rounds([r for r, ms in outvoted.items() if member in ms])}")
    # the faulty members' reputation in full; others (e.g. honest updates excluded by full's rule) counted
    facts += [f"{m} penalized {p['before']} -> {p['after']} ({', '.join(p['reasons'])})"
              for m, p in penalties.items() if m in faulty]
    others = [m for m in penalties if m not in faulty]
    if others:
        facts.append(f"{len(others)} other member{'s' if len(others) > 1 else ''} penalized "
                     f"({', '.join(sorted({r for m in others for r in penalties[m]['reasons']}))})")
    if arch == "semi" and fault != "no_update":   # was the faulty aggregator ever asked to aggregate?
        facts += [f"faulty {m} on committees in {in_rounds(drawn[m])}" if drawn[m] else f"faulty {m} never drawn"
                  for m in faulty]
    if redrawn:
        facts.append(f"committee redrawn in {in_rounds(redrawn)}")
    facts += [f"{m} missing from {in_rounds(rs)}" for m, rs in sorted(missing.items()) if rs]
    facts += [f"{m} aggregated in {in_rounds(rs)}, unlike in the honest run" for m, rs in sorted(extra.items()) if rs]
    if verdict is not None:
        facts.append("audit clean" if verdict["ok"] else
                     f"audit error ({verdict['error']})" if verdict["error"] else
                     f"audit flags {in_rounds(verdict['failed_rounds'])}" if verdict["failed_rounds"]
                     else "audit fails")
    same = models[:len(paired)] == honest["models"][:len(paired)]
    facts.append("same models as the honest run" if same else "models differ from the honest run")
    return {**entry, "survived": True, "stalled_at": None, "error": None, "outvoted": outvoted, "penalties": penalties,
            "redrawn_rounds": redrawn, "missing": {m: rs for m, rs in missing.items() if rs},
            "aggregated_unlike_honest": {m: rs for m, rs in extra.items() if rs},
            "audit": verdict, "same_models_as_honest": same, "models": models,
            "outcome": "survived: " + ", ".join(facts)}


def _faulty_members(cfg: Config, roster: list[str]) -> list[str]:
    """Who the injected fault applies to: under loose, aggregation faults hit the coordinator."""
    f, faults = cfg.faults, faults_of(cfg)
    misbehaving = [name for i, name in enumerate(roster)
                   if not faults.commits(i) or (cfg.study.architecture != "loose"
                                                and faults.behaviour(i, len(roster)) != "honest")]
    coordinator = cfg.study.architecture == "loose" and (f.wrong_result or f.silent)
    return misbehaving + (["coordinator"] if coordinator else [])


def _penalties(run_dir: Path, architecture: str, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Members whose on-chain reputation was cut: first and last value, the cuts' reasons (events)."""
    run = RunDir(run_dir)
    info = run.read_run_info()
    backend = open_chain(info["chain"], run.chain)
    try:
        contract = study_contract(architecture, backend, info["contracts"]["ledger"])
        events = contract.events("ReputationChanged")
    finally:
        backend.close()
    changes: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        changes.setdefault(names.get(event["member"], event["member"]), []).append(event)
    result = {}
    for member, evs in sorted(changes.items()):
        cuts = sorted({e["reason"] for e in evs if e["after"] < e["before"]})
        if cuts:
            result[member] = {"before": evs[0]["before"], "after": evs[-1]["after"], "reasons": cuts}
    return result


def in_rounds(numbers: Sequence[int]) -> str:
    """[1] -> 'round 1', [1, 2, 3, 5] -> 'rounds 1-3, 5'."""
    return f"round{'s' if len(numbers) > 1 else ''} {spans(numbers)}"


def spans(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    parts: list[list[int]] = []
    for n in sorted(numbers):
        if parts and n == parts[-1][-1] + 1:
            parts[-1].append(n)
        else:
            parts.append([n])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)
