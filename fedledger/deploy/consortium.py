"""The consortium file: what every node of a deployed study loads.

`init_consortium` deploys the contracts to a chain, enrols the members of a roster and writes a
directory holding

    consortium.json   chain, contracts, members (name, address, endpoint, role), study config
    run.json          the same chain and contracts for `fedledger audit verify`, with the members'
                      endpoints (and their addresses, to pin their certificates) as the peers an
                      auditor fetches artifacts from
    store/            the study's config and initial model (every node rebuilds and checks them)

Nothing in it is secret: keys stay in each institution's keystore, TLS keys in each node's state
directory; the nodes' certificate fingerprints are on chain.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedledger.chain import ChainBackend, FullStudy, LooseStudy, SemiStudy, study_contract
from fedledger.chain.records import Role
from fedledger.config import Config, config_from_dict, read_toml
from fedledger.errors import ConfigError
from fedledger.protocol.setup import (
    FUNDING_WEI,
    connect_rpc,
    deploy_study,
    enrol_consortium,
    feature_count,
    initial_params,
    model_spec,
)
from fedledger.protocol.sampling import draw_problem
from fedledger.rundir import RUN_FORMAT, RunDir
from fedledger.store import ArtifactStore

CONSORTIUM_FORMAT = "fedledger.consortium/1"
CONSORTIUM_FILE = "consortium.json"
ROLES = ("institution", "coordinator", "auditor")   # an auditor runs no node: it reads the others' (audit, status)


@dataclass(frozen=True)
class MemberEntry:
    name: str
    address: str        # checksum
    endpoint: str       # base URL of the member's node, e.g. https://10.0.0.2:8701 ("" for an auditor)
    role: str = "institution"


@dataclass(frozen=True)
class ConsortiumFile:
    chain: dict[str, Any]          # {"kind": "rpc", "rpc_url", "chain_id"}
    contracts: dict[str, str]      # {"consortium", "ledger"}
    architecture: str
    config: dict[str, Any]         # the study config, as anchored (its digest is on chain)
    config_digest: str
    initial_model: str
    num_features: int
    members: tuple[MemberEntry, ...]

    def study_config(self) -> Config:
        return config_from_dict(self.config)

    def member(self, address: str) -> MemberEntry:
        for m in self.members:
            if m.address == Web3.to_checksum_address(address):
                return m
        raise ConfigError(f"{address} is not a member of this consortium")

    def study(self, backend: ChainBackend) -> LooseStudy | SemiStudy | FullStudy:
        """A handle on the study's contract, of the architecture's kind."""
        return study_contract(self.architecture, backend, self.contracts["ledger"])

    @property
    def institutions(self) -> list[MemberEntry]:
        return [m for m in self.members if m.role == "institution"]

    def save(self, directory: Path) -> None:
        doc = {"format": CONSORTIUM_FORMAT, **asdict(self)}
        (directory / CONSORTIUM_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        coordinator = next((m.address for m in self.members if m.role == "coordinator"), None)
        RunDir(directory).write_json("run.json", {
            "format": RUN_FORMAT, "study": self.config["study"]["name"], "architecture": self.architecture,
            "chain": self.chain, "contracts": self.contracts, "coordinator": coordinator,
            "institutions": {m.name: m.address for m in self.institutions}, "store": "store",
            "peers": [m.endpoint for m in self.members if m.endpoint],
            "peer_members": {m.endpoint: m.address for m in self.members if m.endpoint}})


def load_consortium(path: str | Path) -> ConsortiumFile:
    """Read a consortium file (or the directory holding consortium.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONSORTIUM_FILE
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the consortium file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a consortium file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != CONSORTIUM_FORMAT:
        raise ConfigError(f"{path} is not a {CONSORTIUM_FORMAT} file")
    try:
        members = tuple(MemberEntry(**m) for m in doc["members"])
        return ConsortiumFile(doc["chain"], doc["contracts"], doc["architecture"], doc["config"],
                              doc["config_digest"], doc["initial_model"], doc["num_features"], members)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is incomplete or malformed ({exc})") from None


def load_roster(path: str | Path) -> list[MemberEntry]:
    """A roster: TOML with one [[member]] table per member (name, address, endpoint, role; an
    auditor has no endpoint)."""
    path = Path(path)
    tables = read_toml(path, "roster").get("member")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path} lists no members: add [[member]] tables with name, address and endpoint")
    members = [_member(path, i, t) for i, t in enumerate(tables, 1)]
    for key in ("name", "address", "endpoint"):
        values = [getattr(m, key) for m in members if getattr(m, key)]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{path}: {key} listed more than once: {', '.join(twice)}")
    return members


def _member(path: Path, index: int, table: Any) -> MemberEntry:
    where = f"{path}: member {index}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = sorted(set(table) - {"name", "address", "endpoint", "role"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: name, address, endpoint, role)")
    role = table.get("role", "institution")
    if role not in ROLES:
        raise ConfigError(f"{where}: role {role!r} must be one of {', '.join(ROLES)}")
    required = ("name", "address") if role == "auditor" else ("name", "address", "endpoint")
    for key in required:
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string")
    if not Web3.is_address(table["address"]):
        raise ConfigError(f"{where}: {table['address']!r} is not an Ethereum address")
    if role == "auditor" and "endpoint" in table:
        raise ConfigError(f"{where}: an auditor runs no node: remove its endpoint")
    endpoint = table.get("endpoint", "")
    if role != "auditor" and not _is_https_url_with_port(endpoint):
        raise ConfigError(f"{where}: endpoint {endpoint!r} must be an https URL with a port (nodes serve TLS only)")
    return MemberEntry(table["name"], Web3.to_checksum_address(table["address"]), endpoint.rstrip("/"), role)


def _is_https_url_with_port(text: str) -> bool:
    url = urlparse(text)
    try:
        return url.scheme == "https" and bool(url.hostname) and bool(url.port)
    except ValueError:      # a port that is not a number, or out of range
        return False


def _check_roles(cfg: Config, members: list[MemberEntry]) -> None:
    coordinators = [m.name for m in members if m.role == "coordinator"]
    institutions = [m for m in members if m.role == "institution"]
    if cfg.study.architecture == "loose" and len(coordinators) != 1:
        raise ConfigError(f"a loose study needs exactly one member with role = \"coordinator\", "
                          f"the roster has {len(coordinators)}")
    if cfg.study.architecture != "loose" and coordinators:
        raise ConfigError(f"a {cfg.study.architecture} study has no coordinator; the roster names "
                          f"{', '.join(coordinators)} as one")
    if len(institutions) < 2:
        raise ConfigError("a study needs at least two institutions")
    problem = draw_problem(cfg, len(institutions))
    if problem:
        raise ConfigError(problem)
    check_deployable(cfg)


def check_deployable(cfg: Config) -> None:
    """ConfigError for what only a simulation does: injected attacks and faults are experiments
    on simulated members; a deployed node runs its institution's part honestly."""
    if cfg.attack.kind != "none":
        raise ConfigError("[attack] simulates attacking members in `fedledger run`; a deployed node runs its "
                          "institution's part honestly: remove [attack] from the study config")
    if any(dataclasses.astuple(cfg.faults)):
        raise ConfigError("[faults] injects faults into simulated members in `fedledger run`; a deployed node "
                          "runs its part honestly: remove [faults] from the study config")


def init_consortium(roster: list[MemberEntry], cfg: Config, rpc_url: str, admin: LocalAccount, out_dir: Path,
                    funder_key_env: str = "") -> ConsortiumFile:
    """Deploy the consortium and the study to the chain at `rpc_url`, enrol `roster`, fund
    every member for gas, and write the consortium directory `out_dir` (new or empty)."""
    _check_roles(cfg, roster)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} is not empty; give a new directory for the consortium")
    num_features = feature_count(cfg)
    backend = connect_rpc(rpc_url, funder_key_env)   # before writing anything: no half-made directory
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        store = ArtifactStore(out_dir / "store")
        config_digest = store.put_json(cfg.to_dict())
        initial = store.put_params(initial_params(cfg, model_spec(cfg, num_features)))
        backend.fund([admin.address] + [m.address for m in roster], FUNDING_WEI)
        institutions = [m for m in roster if m.role == "institution"]
        # semi and full studies are started by a coordinator-role sponsor: the administrator
        sponsors = [(m.name, m.address) for m in roster if m.role == "coordinator"] or [("sponsor", admin.address)]
        consortium = enrol_consortium(backend, admin, sponsors, [(m.name, m.address) for m in institutions])
        for m in roster:
            if m.role == "auditor":
                consortium.add_member(admin, m.address, m.name, Role.AUDITOR)
        study = deploy_study(backend, admin, consortium, cfg, [m.address for m in institutions],
                             config_digest, initial)
        result = ConsortiumFile(backend.describe(), {"consortium": consortium.address, "ledger": study.address},
                                cfg.study.architecture, cfg.to_dict(), config_digest, initial, num_features,
                                tuple(roster))
    finally:
        backend.close()
    result.save(out_dir)
    return result
