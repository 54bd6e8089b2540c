"""What a user reads in a run directory, checked against the chain and the signed evaluations:
config.json against the anchored config digest; each line of metrics.jsonl against its round's
model and manifest on chain and the institutions' signed evaluations it names; the final model's
evaluations against those logged on chain; results.json and metrics.png against metrics.jsonl;
preprocessing.json against the vendored data it came from."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fedledger.audit.base import Auditor
from fedledger.config import config_from_dict
from fedledger.errors import FedLedgerError
from fedledger.learning.preprocessing import preprocessing_record
from fedledger.protocol.setup import load_clients, study_task
from fedledger.report import metrics_title, plot_metrics, summarize_evaluations
from fedledger.rundir import RunDir
from fedledger.store import canonical_json, sha256_hex

MAX_FILE_BYTES = 256 * 1024 * 1024    # a run directory's files are untrusted: bounded before they are read
SUBJECT = "run directory"


def verify_outputs(auditor: Auditor, run: RunDir) -> None:
    """Check the run directory's config.json, metrics.jsonl, results.json and metrics.png."""
    report = auditor.report
    config = _read_json(auditor, run.path / "config.json")
    if config is not None:
        report.record(SUBJECT, "config.json is the anchored config",
                      _digest(config) == auditor.contract.config_digest(),
                      "config.json does not hash to the config digest on chain")
    _verify_preprocessing(auditor, run.path / "preprocessing.json")
    if not run.metrics.is_file():
        report.not_verified("each round's figures: the run directory has no metrics.jsonl (a deployed consortium's "
                            "has none); the final model's evaluations on chain are checked")
        report.final_evaluations = final_evaluations(auditor)
        return
    entries = _read_lines(auditor, run.metrics)
    if entries is None:
        return
    finished = auditor.contract.round_count()
    shown = [e.get("round") if isinstance(e, dict) else None for e in entries]
    complete = report.record(SUBJECT, "metrics.jsonl has one line per finalized round, in order",
                             shown == list(range(1, finished + 1)),
                             f"its lines are for rounds {shown[:20]}; the chain finalized {finished}")
    for entry in entries:
        _verify_entry(auditor, entry)
    if not complete or not entries:
        return
    _verify_final(auditor, entries[-1])
    _verify_results(auditor, run.path / "results.json", entries)
    _verify_plot(auditor, run.path / "metrics.png", entries)


def _verify_entry(auditor: Auditor, entry: Any) -> None:
    """One round's line: the chain's model and manifest, and metrics that summarize the signed
    evaluations of that model it names."""
    n = entry.get("round") if isinstance(entry, dict) else None
    if not isinstance(n, int) or not 1 <= n <= auditor.contract.round_count():
        auditor.report.record(SUBJECT, "metrics.jsonl lines are finalized rounds", False, f"a line for round {n!r}")
        return
    subject, model = f"round {n}", auditor.model_of(n)
    auditor.report.record(subject, "metrics.jsonl names the round's model and manifest",
                          (entry.get("model"), entry.get("manifest")) == (model, auditor.contract.round_manifest(n)),
                          "metrics.jsonl's model or manifest is not the chain's")
    evaluations = entry.get("evaluations")
    figures = auditor.signed_figures(subject, evaluations, model, " in metrics.jsonl") if evaluations else None
    if figures is None:
        auditor.report.record(subject, "metrics.jsonl's figures summarize signed evaluations", False,
                              "the line names no signed evaluations of the round's model, or one that is not")
        return
    auditor.report.record(subject, "metrics.jsonl's figures summarize signed evaluations",
                          entry.get("metrics") == summarize_evaluations(figures, auditor.task),
                          "metrics.jsonl's figures are not those its signed evaluations give")


def final_evaluations(auditor: Auditor) -> dict[str, dict[str, float]]:
    """The figures of the final model's evaluations logged on chain, by member name: each must be
    its member's signed evaluation of that model (one it got wrong itself is listed as not
    verified and left out), and there must be at least one."""
    n = auditor.contract.round_count()
    figures = {}
    for member, digest in auditor.contract.evaluations(n).items():
        name = auditor.names.get(member, member)
        found = auditor.verify_evaluation(f"round {n}", f"evaluation of the final model by {name}", digest, member,
                                          auditor.model_of(n), theirs=True)
        if found is not None:
            figures[name] = found
    if not figures:
        auditor.report.record(f"round {n}", "the final model's evaluations are on chain", False,
                              "no institution's signed evaluation of the final model is on chain (a truncated chain?)")
    return figures


def _verify_final(auditor: Auditor, last: Any) -> None:
    """The final model's evaluations logged on chain are the ones metrics.jsonl shows."""
    n = auditor.contract.round_count()
    on_chain = auditor.contract.evaluations(n)
    shown = last.get("evaluations") if isinstance(last, dict) and last.get("round") == n else None
    if not on_chain:
        auditor.report.record(f"round {n}", "the final model's evaluations on chain are metrics.jsonl's", False,
                              "no institution's evaluation of the final model is on chain (a truncated chain?)")
        return
    names = auditor.names
    differ = [names.get(m, m) for m, digest in on_chain.items()
              if not isinstance(shown, dict) or shown.get(names.get(m, m)) != digest]
    auditor.report.record(f"round {n}", "the final model's evaluations on chain are metrics.jsonl's", not differ,
                          f"metrics.jsonl's last line shows other evaluations of {', '.join(sorted(differ))}")


def _verify_results(auditor: Auditor, path: Path, entries: list[Any]) -> None:
    results = _read_json(auditor, path)
    if results is None:
        return
    rounds = [{k: v for k, v in e.items() if k != "metrics"} for e in entries]
    auditor.report.record(SUBJECT, "results.json's final figures and rounds are metrics.jsonl's",
                          isinstance(results, dict) and results.get("final") == entries[-1].get("metrics")
                          and results.get("rounds") == rounds,
                          "results.json's final table or rounds differ from metrics.jsonl")
    suspended = {auditor.names.get(m, m): r for m, r in auditor.contract.suspensions().items()}
    auditor.report.record(SUBJECT, "results.json's suspensions are the chain's",
                          isinstance(results, dict) and results.get("suspended", {}) == suspended,
                          f"results.json names {results.get('suspended') if isinstance(results, dict) else None}, "
                          f"the chain {suspended}")
    told = [key for key in ("attackers", "privacy") if isinstance(results, dict) and results.get(key)]
    if told:
        auditor.report.not_verified(f"results.json's {' and '.join(told)}: the simulation's own account (each "
                                    "member's privacy spends are checked on chain)")
    if isinstance(results, dict) and results.get("personalized"):
        auditor.report.not_verified("results.json's personalized figures: each institution's fine-tuned model "
                                    "stays at its site, and so does the evidence for its figures")


def _verify_preprocessing(auditor: Auditor, path: Path) -> None:
    """preprocessing.json is what the anchored config's data gives, where that data is public
    (a vendored dataset, loaded again); a CSV or image study's is the institutions' own account."""
    if not path.is_file():
        return
    study = auditor.study
    config = study.config if study is not None else None
    if not isinstance(config, dict) or config.get("data", {}).get("dataset") in ("csv", "images"):
        auditor.report.not_verified("preprocessing.json: the features' names and each institution's scaling "
                                    "statistics, the institutions' own account (only they hold their records)")
        return
    try:
        cfg = config_from_dict(config)
        expected = json.loads(json.dumps(preprocessing_record(load_clients(cfg), study_task(cfg), cfg.data.classes)))
    except FedLedgerError as exc:
        auditor.report.record(SUBJECT, "preprocessing.json is what the study's public data gives", False, str(exc))
        return
    auditor.report.record(SUBJECT, "preprocessing.json is what the study's public data gives",
                          _read_json(auditor, path) == expected,
                          "preprocessing.json's features or scaling differ from the vendored data's")


def _verify_plot(auditor: Auditor, path: Path, entries: list[Any]) -> None:
    """metrics.png is the plot of metrics.jsonl's figures, drawn again (matplotlib is pinned)."""
    if not path.is_file():
        return
    study = auditor.study
    if study is None or study.config is None or study.strategy is None:
        auditor.report.not_verified("metrics.png: the anchored config, which titles it, is unavailable")
        return
    title = metrics_title(study.config["study"]["name"], study.strategy)
    with tempfile.TemporaryDirectory() as tmp:
        drawn = Path(tmp) / "metrics.png"
        try:
            plot_metrics(entries, drawn, title, study.task.headline)
        except (KeyError, TypeError, ValueError, IndexError):   # lines that are not the figures a run writes
            same = False
        else:
            same = drawn.read_bytes() == path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else False
    auditor.report.record(SUBJECT, "metrics.png plots metrics.jsonl", same,
                          "metrics.png is not the plot of metrics.jsonl (or another matplotlib drew it)")


def _digest(doc: Any) -> str | None:
    try:
        return sha256_hex(canonical_json(doc))
    except (FedLedgerError, ValueError, TypeError):
        return None


def _read_json(auditor: Auditor, path: Path) -> Any | None:
    text = _read_text(auditor, path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        auditor.report.record(SUBJECT, f"{path.name} is JSON", False, str(exc)[:200])
        return None


def _read_lines(auditor: Auditor, path: Path) -> list[Any] | None:
    text = _read_text(auditor, path)
    if text is None:
        return None
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        auditor.report.record(SUBJECT, f"{path.name} is JSON lines", False, str(exc)[:200])
        return None


def _read_text(auditor: Auditor, path: Path) -> str | None:
    """A run directory file's text; None (and said so) if it is absent, too large or not text."""
    if not path.is_file():
        auditor.report.not_verified(f"{path.name}: the run directory has none")
        return None
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES:,} bytes")
        return path.read_text()
    except (OSError, ValueError) as exc:
        auditor.report.record(SUBJECT, f"{path.name} readable", False, str(exc)[:200])
        return None
