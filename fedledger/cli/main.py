"""The `fedledger` command: a thin layer over the library.

Expected failures (FedLedgerError) are printed as one line on stderr with exit status 2; an audit
that finds a problem exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


def _cmd_run(args: argparse.Namespace) -> int:
    from fedledger.config import load_config
    from fedledger.simulation import run_study

    from fedledger.protocol.setup import study_task

    cfg = load_config(args.config)
    result = run_study(cfg, run_dir=args.run_dir, progress=not args.quiet)
    final, headline = result.final, study_task(cfg).headline
    print(f"run directory: {result.run_dir}")
    print(f"final pooled {headline} {final['pooled'].get(headline, float('nan')):.4f}, "
          f"client-average {headline} {final['client_average'].get(headline, float('nan')):.4f}, "
          f"{result.wall_seconds:.1f} s")
    if result.stopped:
        print(f"the study {result.stopped}")
    for name, spent in result.privacy.items():
        print(f"privacy spent by {name}: epsilon {spent['epsilon']:.3f} at delta {spent['delta']:g} "
              f"(releases: {spent['releases']}, noise multiplier {spent['noise_multiplier']:.3f})")
    if result.chain_head:
        from fedledger.audit.heads import record_head

        kept = record_head(result.run_dir, result.chain_head)
        print(f"chain head: {result.chain_head} (recorded in {kept}, outside the run directory: the audit checks "
              "the chain against it)")
        print(f"audit it with: fedledger audit verify {result.run_dir}")
    else:
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
    from fedledger.audit.heads import heads_file, recorded_head

    head = args.head
    if head is None and (head := recorded_head(args.run)) is not None:
        print(f"checking the chain against the head recorded in {heads_file()}")
    report = verify_run(args.run, expected_head=head, account=_member_key(args), checkpoints=args.checkpoints)
    print(report.summary())
    return 0 if report.ok else 1


def _password(args: argparse.Namespace) -> str:
    from fedledger.deploy.keys import read_password
    return read_password(args.password_env, args.password_file)


def _member_key(args: argparse.Namespace) -> LocalAccount | None:
    """The member key given with --keystore, or None."""
    from fedledger.deploy.keys import load_keystore
    return None if args.keystore is None else load_keystore(args.keystore, _password(args))


def _add_member_key_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--keystore", type=Path, metavar="FILE", default=None,
                        help=f"a consortium member's keystore (an auditor's reads every update): {what}")
    _add_password_options(parser)


def _add_password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-env", metavar="NAME", default=None,
                        help="environment variable holding the keystore password (default FEDLEDGER_PASSWORD)")
    parser.add_argument("--password-file", type=Path, metavar="FILE", default=None,
                        help="file holding the keystore password (instead of the environment variable)")


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from fedledger.deploy.keys import create_keystore

    account = create_keystore(args.keystore, _password(args))
    print(f"{account.address}  (key encrypted in {args.keystore}; put this address in the roster)")
    return 0


def _cmd_consortium_init(args: argparse.Namespace) -> int:
    from fedledger.config import load_config
    from fedledger.deploy.consortium import init_consortium, load_roster
    from fedledger.deploy.keys import create_keystore, load_keystore

    cfg = load_config(args.config)
    roster = load_roster(args.roster)
    password = _password(args)
    admin = load_keystore(args.admin_keystore, password) if args.admin_keystore.exists() \
        else create_keystore(args.admin_keystore, password)
    consortium = init_consortium(roster, cfg, args.rpc, admin, args.out, args.funder_key_env or "")
    print(f"consortium {consortium.contracts['consortium']} and {consortium.architecture} study "
          f"{consortium.contracts['ledger']} on chain {consortium.chain['chain_id']}; "
          f"administrator {admin.address} ({args.admin_keystore})")
    print(f"{len(roster)} members enrolled; give each node {args.out} and start it with `fedledger node NODE.toml`")
    return 0


def _cmd_node(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from fedledger.deploy.node import run_node

    # force: Opacus configures the root logger when imported, which would make this a no-op
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_node(args.node_file, stop)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    from fedledger.deploy.status import consortium_status, format_status

    doc = consortium_status(args.consortium, _member_key(args))
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else format_status(doc))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fedledger.config import load_config
    from fedledger.deploy.demo import run_demo, with_institutions
    from fedledger.report import results_table
    from fedledger.rundir import RunDir

    cfg = with_institutions(load_config(args.config), args.processes)
    out = args.out or RunDir.create(cfg.resolve_path(cfg.study.output_dir), f"demo-{cfg.study.name}").path
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    result = run_demo(cfg, out, rpc_url=args.rpc, log=log)
    if result.final:
        from fedledger.protocol.setup import study_task

        print(results_table(result.final, study_task(cfg)))
    print(result.audit.summary())
    print(f"{len(result.consortium.members)} processes, {len(result.round_seconds)} rounds, "
          f"{result.wall_seconds:.1f} s; everything is in {out}")
    return 0 if result.audit.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from fedledger.bundle import export_bundle

    exported = export_bundle(args.run, args.out, args.round)
    print(f"wrote {exported.path}: the model {exported.model} of round {exported.round}"
          f"{', with model.onnx' if exported.onnx else ' (no model.onnx: torch could not export it)'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import csv

    from fedledger.bundle import load_bundle, predict_csv

    bundle = load_bundle(args.bundle)
    header, rows = predict_csv(bundle, args.csv, args.institution, args.keep)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if args.out:
            out.close()
    print(f"scored {len(rows)} rows with the {bundle.describe()}", file=sys.stderr)
    return 0


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
                        help="block hash printed at the end of the run; the chain must contain it (default: the "
                             "head `fedledger run` recorded for this run directory outside it, if any)")
    verify.add_argument("--checkpoints", metavar="FILE", action="append", default=[], type=Path,
                        help="a member's signed checkpoints of the chain (a deployed node's "
                             "state/checkpoints.jsonl); the chain must hold every block it names (repeatable)")
    _add_member_key_options(verify, "a deployed consortium's nodes serve their artifacts to members only, "
                                    "so without it what only they hold is reported missing")
    verify.set_defaults(handler=_cmd_audit_verify)

    keys = commands.add_parser("keys", help="institution keys in encrypted keystore files")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    new_key = keys_commands.add_parser("new", help="create a key and write it encrypted to a keystore file",
                                       description="Create a new key, encrypted with the password from "
                                                   "FEDLEDGER_PASSWORD (or --password-env / --password-file).")
    new_key.add_argument("keystore", type=Path, help="keystore file to create (never overwritten)")
    _add_password_options(new_key)
    new_key.set_defaults(handler=_cmd_keys_new)

    consortium = commands.add_parser("consortium", help="set up a consortium on a chain")
    consortium_commands = consortium.add_subparsers(dest="consortium_command", required=True, metavar="COMMAND")
    init = consortium_commands.add_parser(
        "init", help="deploy the contracts, enrol a roster's members and write the consortium file",
        description="Deploy the consortium and the study's contract to the chain at --rpc, enrol the members "
                    "of ROSTER (TOML: one [[member]] table each, with name, address, endpoint and role), fund "
                    "them for gas and write the consortium directory that every node loads.")
    init.add_argument("roster", type=Path, help="roster file (TOML)")
    init.add_argument("--config", type=Path, required=True, help="study configuration (TOML)")
    init.add_argument("--rpc", required=True, metavar="URL", help="JSON-RPC URL of the chain")
    init.add_argument("--out", type=Path, required=True, help="new or empty directory for the consortium file")
    init.add_argument("--admin-keystore", type=Path, required=True,
                      help="the administrator's keystore (created if it does not exist)")
    init.add_argument("--funder-key-env", metavar="NAME", default=None,
                      help="environment variable with a funded private key that pays the members' gas "
                           "(default: a development node's setBalance method)")
    _add_password_options(init)
    init.set_defaults(handler=_cmd_consortium_init)

    node = commands.add_parser("node", help="run one institution's node (until SIGTERM)",
                               description="Run one member's node: serve its artifact store over HTTP and take "
                                           "its part in every round, following the chain, until SIGTERM or "
                                           "Ctrl-C. The node file names the consortium, keystore and state "
                                           "directory; the keystore password comes from the environment.")
    node.add_argument("node_file", type=Path, help="node file (TOML with a [node] table)")
    node.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    node.set_defaults(handler=_cmd_node)

    status = commands.add_parser("status", help="members, the current round and its state, who has committed",
                                 description="Read a consortium's study from the chain (and its nodes' "
                                             "endpoints): members, the open round, its phase and who committed. "
                                             "Nodes answer members only: without --keystore the status shows "
                                             "only whether each node answers, and not who offered a loose update.")
    status.add_argument("consortium", type=Path, help="consortium directory or consortium.json")
    _add_member_key_options(status, "to sign the requests to the nodes with")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_cmd_status)

    demo = commands.add_parser(
        "demo", help="a local consortium: dev chain, one process per member, a whole study, its audit",
        description="Start a Hardhat node, deploy the study, run one node process per member until the last "
                    "round, audit the result from the chain and the nodes' stores, and stop everything.")
    demo.add_argument("config", type=Path, nargs="?", default=Path("examples/fed_heart_disease.toml"),
                      help="study configuration (default examples/fed_heart_disease.toml)")
    demo.add_argument("--processes", type=int, default=None, metavar="N",
                      help="institutions, one process each (Breast Cancer studies: any number; default: "
                           "the config's)")
    demo.add_argument("--out", type=Path, default=None,
                      help="new or empty directory (default: [study].output_dir/demo-NAME-N)")
    demo.add_argument("--rpc", metavar="URL", default=None, help="use this JSON-RPC node instead of starting one")
    demo.add_argument("--quiet", action="store_true", help="only the final table and audit")
    demo.set_defaults(handler=_cmd_demo)

    export = commands.add_parser(
        "export", help="write a run's model with its task, features and scaling, to score new records with",
        description="Write a bundle: model.safetensors (the ledger's artifact: its sha-256 is the model digest on "
                    "chain), model.onnx where torch exports it, and bundle.json (study, run, round, task, features, "
                    "each institution's scaling).")
    export.add_argument("run", type=Path, help="a run directory of `fedledger run`")
    export.add_argument("--round", type=int, default=None, metavar="N", help="the model of round N (default: the last)")
    export.add_argument("--out", type=Path, default=None, help="new or empty directory (default: RUN/bundle-round-N)")
    export.set_defaults(handler=_cmd_export)

    predict = commands.add_parser(
        "predict", help="score the rows of a CSV file with an exported model",
        description="Score every row of CSV (the bundle's feature columns, by name) and write the predictions as CSV.")
    predict.add_argument("bundle", type=Path, help="a directory written by `fedledger export`")
    predict.add_argument("csv", type=Path, help="records to score, with a header row")
    predict.add_argument("--institution", default=None,
                         help="whose feature scaling to use (needed when the institutions scaled theirs differently)")
    predict.add_argument("--keep", nargs="+", default=[], metavar="COLUMN",
                         help="columns copied into the output as they are, e.g. a patient id")
    predict.add_argument("--out", type=Path, default=None, help="write the predictions here (default: stdout)")
    predict.set_defaults(handler=_cmd_predict)
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
    except BrokenPipeError:     # the reader stopped early (`fedledger predict ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
