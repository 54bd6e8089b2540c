"""`fedledger node NODE.toml`: one institution's node, in its own process.

It loads its key from an encrypted keystore, its own data, and the consortium file; checks that
the study on chain is the one the consortium file describes (config digest, initial model
rebuilt from the config); records its TLS certificate's fingerprint on chain if it changed, and
serves its artifact store over HTTPS to the other members; then follows the chain, step by
step, until it is told to stop (SIGTERM or SIGINT). After the last round it evaluates the final
model on its own test set and keeps serving its store, which peers and auditors may still need.

Node file (paths relative to it):

    [node]
    name = "cleveland"              # as in the roster
    consortium = "../consortium"    # the directory `fedledger consortium init` wrote
    keystore = "cleveland.key.json"
    password_env = "FEDLEDGER_PASSWORD"   # or password_file = "..."
    state_dir = "state"             # its artifact store, journal and TLS key (tls.key.pem, 0600)
    listen = "127.0.0.1:8701"       # default: host and port of its roster endpoint
    data = "cleveland.csv"          # CSV and image studies only: this institution's file or folder
    test_data = "cleveland-test.csv"  # with [data].test_clients: its test rows (file or folder)
    poll_seconds = 0.5              # the longest wait between two steps (it also steps on each new block)
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fedledger.aggregation import make_strategy
from fedledger.audit.checkpoints import FILE_NAME, append_checkpoint, last_checkpointed_round, sign_checkpoint
from fedledger.chain import Consortium, open_chain
from fedledger.chain.newheads import NewHeads
from fedledger.config import read_toml
from fedledger.deploy.consortium import ConsortiumFile, check_deployable, load_consortium
from fedledger.deploy.access import Guard, Roster, UpdateAccess
from fedledger.deploy.auth import RequestVerifier
from fedledger.deploy.client import MemberClient, consortium_domain
from fedledger.deploy.keys import load_keystore, read_password
from fedledger.deploy.notices import HttpNotices
from fedledger.deploy.pacing import Pacer
from fedledger.deploy.server import NodeServer
from fedledger.deploy.tls import node_certificate, server_context
from fedledger.errors import ChainUnreachable, ConfigError, FedLedgerError
from fedledger.protocol import InstitutionNode, MemberContext, Role, combine, coordinator_roles, institution_roles
from fedledger.protocol.setup import (
    initial_params,
    load_clients,
    model_spec,
    privacy_plan,
    train_config,
    update_scheme,
)
from fedledger.store.peers import PeerStore

log = logging.getLogger("fedledger.node")

RETRY_AFTER_ERROR_S = 2.0
NODE_KEYS = ("name", "consortium", "keystore", "password_env", "password_file", "state_dir", "listen", "data",
             "test_data", "poll_seconds")


@dataclass(frozen=True)
class NodeConfig:
    name: str
    consortium: Path
    keystore: Path
    state_dir: Path
    password_env: str | None = None
    password_file: Path | None = None
    listen: str | None = None
    data: Path | None = None
    poll_seconds: float = 0.5
    test_data: Path | None = None


def load_node_config(path: str | Path) -> NodeConfig:
    path = Path(path)
    table = read_toml(path, "node file").get("node")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [node] table")
    unknown = sorted(set(table) - set(NODE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown [node] key(s) {', '.join(unknown)} (allowed: {', '.join(NODE_KEYS)})")
    for key in ("name", "consortium", "keystore", "state_dir"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{path}: [node].{key} must be a non-empty string")
    for key in ("password_env", "password_file", "listen", "data", "test_data"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            raise ConfigError(f"{path}: [node].{key} must be a non-empty string")
    poll = table.get("poll_seconds", 0.5)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= 60:
        raise ConfigError(f"{path}: [node].poll_seconds must be a number of seconds in (0, 60]")
    base = path.parent

    def resolve(key: str) -> Path | None:
        return base / table[key] if table.get(key) else None

    return NodeConfig(table["name"], resolve("consortium"), resolve("keystore"), resolve("state_dir"),
                      table.get("password_env"), resolve("password_file"), table.get("listen"), resolve("data"),
                      float(poll), resolve("test_data"))


class NodeRuntime:
    """One member's node: set up from its node file, run until `stop` is set. It carries its
    member's roles (fedledger.protocol): it steps them when the chain moves, a peer wakes it or
    `poll_seconds` pass (fedledger.deploy.pacing), and serves its store and notices."""

    def __init__(self, node_cfg: NodeConfig) -> None:
        self.node_cfg = node_cfg
        consortium = load_consortium(node_cfg.consortium)
        account = load_keystore(node_cfg.keystore, read_password(node_cfg.password_env, node_cfg.password_file))
        me = consortium.member(account.address)
        if me.name != node_cfg.name:
            raise ConfigError(f"the key in {node_cfg.keystore} belongs to {me.name}, not {node_cfg.name}")
        self.me, self.consortium = me, consortium
        cfg = consortium.study_config()
        check_deployable(cfg)
        self.cfg = cfg
        endpoints = {m.address: m.endpoint for m in consortium.members if m.endpoint}
        self.backend = open_chain(consortium.chain, None)
        members = Consortium(self.backend, consortium.contracts["consortium"])
        client = MemberClient(members, {url: a for a, url in endpoints.items()}, account)
        store = PeerStore(node_cfg.state_dir / "store", [url for a, url in endpoints.items() if a != me.address],
                          client)
        spec = model_spec(cfg, consortium.num_features)
        self._check_study_artifacts(store, spec)
        study = consortium.study(self.backend)
        certificate = node_certificate(node_cfg.state_dir, me.name)
        if members.certificate_of(me.address) != certificate.fingerprint:
            members.set_certificate(account, certificate.fingerprint)
            log.info("recorded my node certificate %s on chain", certificate.fingerprint[:16])
        # the endpoint checks requests over its own chain connection: it answers from other threads
        self.gate_backend = open_chain(consortium.chain, None)
        updates = UpdateAccess(consortium.study(self.gate_backend), node_cfg.state_dir / "updates.tags")
        guard = Guard(RequestVerifier(consortium_domain(members), me.address),
                      Roster(Consortium(self.gate_backend, members.address)), updates)
        by_address = {address.lower(): url for address, url in endpoints.items()}
        store.holder = lambda digest: by_address.get((guard.owner_of(digest) or "").lower())   # an update: its author
        self.notices = HttpNotices(node_cfg.state_dir / "journal", endpoints, client, updates, me.address)
        self.ctx = MemberContext(cfg, account, study, store, make_strategy(cfg.aggregation.strategy,
                                                                            **cfg.aggregation.params),
                                 [m.address for m in consortium.institutions], self.notices, log,
                                 {m.address: m.name for m in consortium.members})
        self.node: InstitutionNode | None = None
        if me.role == "institution":
            data = load_clients(cfg, institution=me.name, own_data=node_cfg.data, own_test=node_cfg.test_data)[0]
            if data.num_features != spec.num_features:
                raise ConfigError(f"{me.name}'s data has {data.num_features} features; the study's model takes "
                                  f"{spec.num_features}")
            self.node = InstitutionNode(me.name, account, data, spec, train_config(cfg), store, cfg.study.seed,
                                        privacy_plan(cfg))
            self.roles: list[Role] = institution_roles(self.ctx, self.node, update_scheme(cfg, study, self.ctx.names))
        else:
            self.roles = coordinator_roles(self.ctx, update_scheme(cfg, study, self.ctx.names), consortium.config_digest,
                                           consortium.initial_model)
        self.done = False
        self.checkpoints = node_cfg.state_dir / FILE_NAME
        self.checkpointed = last_checkpointed_round(self.checkpoints)
        self.final_evaluation: dict[str, Any] | None = None
        self.errors = 0             # steps that failed on something other than the chain's silence
        self.chain_outages = 0      # steps cut short because the JSON-RPC node stopped answering
        host, port = _listen_address(node_cfg.listen or me.endpoint)
        self.woken = threading.Event()
        self.server = NodeServer(host, port, store, self.notices.mine, self.status, server_context(certificate), guard,
                                 self.woken.set)

    def _check_study_artifacts(self, store: PeerStore, spec: Any) -> None:
        """The config and initial model in the consortium file are the ones their digests name:
        this node rebuilds both and keeps them in its store (so it can serve them)."""
        c = self.consortium
        if store.put_json(c.config) != c.config_digest:
            raise ConfigError("the consortium file's study config does not hash to its config_digest")
        if store.put_params(initial_params(self.cfg, spec)) != c.initial_model:
            raise ConfigError("the initial model rebuilt from the study config does not match the consortium "
                              "file's initial_model (another FedLedger or torch version?)")

    def status(self) -> dict[str, Any]:
        store, timings = self.ctx.store, self.ctx.timings
        return {"name": self.me.name, "address": self.me.address, "role": self.me.role,
                "architecture": self.consortium.architecture, "done": self.done,
                "final_evaluation": self.final_evaluation, "errors": self.errors,
                "chain_outages": self.chain_outages,
                "timings": _rounded(timings.seconds),
                "timings_by_round": {str(r): _rounded(t) for r, t in sorted(timings.by_round.items())},
                "fetched": {"blobs": store.fetched, "bytes": store.fetched_bytes,
                            "seconds": round(store.fetch_seconds, 3)},
                "served_bytes": self.server.served_bytes}

    def checkpoint(self) -> None:
        """After each round this node sees final, sign which block the chain had reached, kept in
        its own state directory: a member's record of the chain that only its key could forge
        (`audit verify --checkpoints`)."""
        finished = self.ctx.study.round_count()
        if finished > self.checkpointed:
            append_checkpoint(self.checkpoints, sign_checkpoint(self.ctx.account, self.backend,
                                                                self.ctx.study.address, finished))
            self.checkpointed = finished

    def step(self) -> bool:
        """Step this member's roles once; whether one of them acted (then step again at once)."""
        store, timings = self.ctx.store, self.ctx.timings
        fetching = store.fetch_seconds
        try:
            with timings.measure("step"):   # all of a step: work, transfers, chain
                step = combine([role.step() for role in self.roles])
        finally:
            timings.add("fetch", store.fetch_seconds - fetching)
        self.checkpoint()
        if step.done:
            self._finish()
        return step.acted

    def run(self, stop: threading.Event) -> None:
        """Serve and follow the chain until `stop` is set; errors are logged and retried."""
        self.server.start()
        log.info("%s (%s, %s) serving on %s:%d; following %s on chain %d", self.me.name, self.me.role,
                 self.consortium.architecture, *self.server.address, self.consortium.contracts["ledger"],
                 self.backend.chain_id)
        pacer = Pacer(self.woken, self.node_cfg.poll_seconds)
        heads = NewHeads(self.consortium.chain["rpc_url"], self.woken.set)
        heads.start()       # while it is not subscribed (a node without subscriptions), the node polls
        try:
            while not stop.is_set():
                if self.done:               # nothing left to step: serve, and look at stop now and then
                    stop.wait(self.node_cfg.poll_seconds)
                    continue
                try:
                    pacer.wait(stop, self.step())
                except ChainUnreachable as exc:     # the chain's outage, not this node's fault
                    self.chain_outages += 1
                    log.warning("%s; retrying", exc)
                    stop.wait(RETRY_AFTER_ERROR_S)
                except FedLedgerError as exc:
                    self.errors += 1
                    log.error("%s; retrying", exc)
                    stop.wait(RETRY_AFTER_ERROR_S)
                except Exception:
                    self.errors += 1
                    log.exception("unexpected error; retrying")
                    stop.wait(RETRY_AFTER_ERROR_S)
        finally:
            heads.close()
            self.server.stop()
            self.notices.close()
            self.backend.close()
            self.gate_backend.close()
            log.info("%s stopped", self.me.name)

    def _finish(self) -> None:
        """The study is complete: evaluate the final model on this institution's test set."""
        if self.node is None:
            self.done = True
            log.info("the study is complete")
            return
        model = self.ctx.study.latest_model()
        with self.ctx.timings.measure("evaluate"):
            self.final_evaluation = {"model": model, **self.node.evaluate(model)}
            p = self.cfg.personalization
            if p.steps:     # this site's own fine-tuned model: its figures, kept with the final evaluation
                self.final_evaluation["personalized"] = self.node.personalize(model, p.steps, p.lr)
        (self.node_cfg.state_dir / "final.json").write_text(json.dumps(self.final_evaluation, sort_keys=True))
        self.done = True     # last: /status says done only once the final evaluation is there
        headline = self.node.model_spec.task.headline
        log.info("the study is complete: final model %s, %s %.4f on my test set", model[:12], headline,
                 self.final_evaluation.get(headline, float("nan")))


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in sorted(seconds.items())}


def _listen_address(endpoint_or_hostport: str) -> tuple[str, int]:
    text = endpoint_or_hostport if "://" in endpoint_or_hostport else f"https://{endpoint_or_hostport}"
    url = urlparse(text)
    try:
        host, port = url.hostname, url.port
    except ValueError:      # a port that is not a number, or out of range
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"cannot listen on {endpoint_or_hostport!r}: give host:port")
    return host, port


def run_node(node_file: str | Path, stop: threading.Event) -> NodeRuntime:
    """Set up the node described by `node_file` and run it until `stop` is set."""
    runtime = NodeRuntime(load_node_config(node_file))
    runtime.run(stop)
    return runtime


__all__ = ["ConsortiumFile", "NodeConfig", "NodeRuntime", "load_node_config", "run_node"]
