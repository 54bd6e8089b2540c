"""The `fedledger` command: a thin layer over the library.

Expected failures (FedLedgerError) are printed as one line on stderr with exit status 2; an audit
that finds a problem exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedledger.errors import FedLedgerError


def _cmd_run(args: argparse.Namespace) -> int:
    from fedledger.config import load_config
    from fedledger.simulation import run_study

    cfg = load_config(args.config)
    result = run_study(cfg, run_dir=args.run_dir, progress=not args.quiet)
    final = result.final
    print(f"run directory: {result.run_dir}")
    print(f"final pooled accuracy {final['pooled']['accuracy']:.4f}, "
          f"client-average accuracy {final['client_average']['accuracy']:.4f}, "
          f"{result.wall_seconds:.1f} s")
    if result.chain_head:
        print(f"chain head: {result.chain_head} (keep it: `audit verify --head` proves the chain is this one)")
    print(f"audit it with: fedledger audit verify {result.run_dir}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from fedledger.config import load_config
    from fedledger.simulation.compare import compare_architectures

    cfg = load_config(args.config)
    log = None if args.quiet else (lambda line: print(line, flush=True))
    comparison = compare_architectures(cfg, out_dir=args.out, fault_rounds=args.fault_rounds,
                                       faults=not args.no_faults, log=log)
    print(comparison.report)
    print(f"written to {comparison.out_dir}: compare.json, compare.md, accuracy.png and every run")
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from fedledger.audit import verify_run

    report = verify_run(args.run, expected_head=args.head)
    print(report.summary())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedledger",
        description="Federated learning for healthcare with every round recorded on an EVM chain.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="simulate a study (one node per institution) and write a run directory",
                              description="Simulate a study in one process: one node per institution, a "
                                          "coordinator, the chain and the artifact store.")
    run.add_argument("config", type=Path, help="study configuration (TOML), e.g. examples/fed_heart_disease.toml")
    run.add_argument("--run-dir", type=Path, default=None,
                     help="write the run here (default: [study].output_dir/NAME-N)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or table")
    run.set_defaults(handler=_cmd_run)

    compare = commands.add_parser(
        "compare", help="run a study under the loose, semi and full architectures, with and without faults",
        description="Run the config's study under each architecture (same seeds, data and initial model), "
                    "check that their model digests agree, then inject each fault (wrong_result, silent, "
                    "no_update) into a short study per architecture and report what happened.")
    compare.add_argument("config", type=Path, help="study configuration (TOML) with [data].validation_fraction > 0, "
                                                   "e.g. examples/compare_heart_disease.toml")
    compare.add_argument("--out", type=Path, default=None,
                         help="new or empty directory for the runs and tables "
                              "(default: [study].output_dir/compare-NAME-N)")
    compare.add_argument("--fault-rounds", type=int, default=3, metavar="N",
                         help="rounds of each fault study (default 3)")
    compare.add_argument("--no-faults", action="store_true", help="honest runs only")
    compare.add_argument("--quiet", action="store_true", help="no progress lines, only the tables")
    compare.set_defaults(handler=_cmd_compare)

    audit = commands.add_parser("audit", help="verify runs from the ledger and the artifact store",
                                description="Re-check runs from the ledger and the artifact store alone.")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_commands.add_parser(
        "verify", help="re-check every record, artifact, signature and aggregation of a run",
        description="Re-check a run: artifact digests, update signatures and membership, Merkle roots, "
                    "chain continuity, and each round's aggregation recomputed from the stored updates. "
                    "Exit status 0 when everything holds, 1 when a check fails.")
    verify.add_argument("run", type=Path, help="run directory written by `fedledger run`")
    verify.add_argument("--head", metavar="BLOCK_HASH", default=None,
                        help="block hash printed at the end of the run; the chain must contain it")
    verify.set_defaults(handler=_cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except FedLedgerError as exc:
        print(f"fedledger: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedledger: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
