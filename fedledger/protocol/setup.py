"""Setting a study up from its config: the institutions' data, the model, and the chain (the
consortium, its members and the study's contract).

The simulation and a real deployment (`fedledger consortium init`, `fedledger node`) set a study
up the same way; they differ only in who holds which key and which data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from fedledger.aggregation import make_strategy
from fedledger.chain import (
    ChainBackend,
    SemiStudy,
    FullStudy,
    Consortium,
    Role,
    RpcChain,
    LooseStudy,
    StudyTerms,
)
from fedledger.chain.local import LocalFullStudy, LocalLooseStudy, LocalSemiStudy
from fedledger.config import Config, study_task_kind
from fedledger.errors import ConfigError
from fedledger.learning import (
    ClientData,
    Task,
    TrainConfig,
    build_model,
    get_flat_params,
    hold_out_validation,
    load_breast_cancer,
    load_csv_clients,
    load_fed_heart_disease,
    make_task,
)
from fedledger.learning.csv_clients import CsvColumns
from fedledger.learning.device_traffic import DEVICE_TRAFFIC_CLASSES, load_device_traffic
from fedledger.learning.images import load_image_folders
from fedledger.learning.vital_signs import VITAL_SIGNS_CLASSES, load_vital_signs, vital_signs_shape
from fedledger.learning.survival_data import SURVIVAL_DATASETS, load_survival_dataset
from fedledger.protocol.node import ModelSpec, derive_seed
from fedledger.protocol.privacy import PrivacyPlan
from fedledger.protocol.sampling import ClientDraw
from fedledger.protocol.scheme import UpdateScheme
from fedledger.protocol.schemes import make_scheme
from fedledger.validation import ValidationRules

FUNDING_WEI = 10 * 10**18   # gas money for every sender; a whole study uses a small fraction
# the classes of the simulated datasets that have their own (the others' come from [data].classes)
DATASET_CLASSES = {"device_traffic": DEVICE_TRAFFIC_CLASSES, "vital_signs": VITAL_SIGNS_CLASSES}


@dataclass
class ChainSetup:
    backend: ChainBackend
    consortium: Consortium
    study: LooseStudy | SemiStudy | FullStudy   # the study's contract, by architecture


def study_task(cfg: Config) -> Task:
    """What the study's model predicts ([data].task, else the dataset's own), and how it is scored."""
    classes = len(DATASET_CLASSES.get(cfg.data.dataset, cfg.data.classes))
    return make_task(study_task_kind(cfg), classes=classes, threshold=cfg.model.threshold)


def csv_columns(cfg: Config) -> CsvColumns:
    d = cfg.data
    return CsvColumns(study_task_kind(cfg), d.label, d.time, d.event, tuple(d.classes), tuple(d.features),
                      tuple(d.exclude), d.split_column)


def load_clients(cfg: Config, institution: str | None = None, own_data: str | Path | None = None,
                 own_test: str | Path | None = None) -> list[ClientData]:
    """The institutions' data, with validation rows held out when the config asks for them.

    A deployed node loads only its own: `institution` names it, and in a CSV or image study
    `own_data` (the node's own file or folder) stands in for the config's [data].clients entry,
    and `own_test` for its [data].test_clients entry.
    """
    data = cfg.data
    if data.dataset in ("csv", "images"):
        paths = {name: cfg.resolve_path(p) for name, p in data.clients.items()}
        tests = {name: cfg.resolve_path(p) for name, p in data.test_clients.items()} or None
        if institution is not None:
            if own_data is None and institution not in paths:
                raise ConfigError(f"no data for {institution}: give the node its file or folder ([node].data)")
            paths = {institution: Path(own_data) if own_data is not None else paths[institution]}
            if tests is not None:
                if own_test is None and institution not in tests:
                    raise ConfigError(f"no test data for {institution}: give the node its file or folder "
                                      "([node].test_data)")
                tests = {institution: Path(own_test) if own_test is not None else tests[institution]}
        if data.dataset == "images":
            clients = load_image_folders(paths, data.classes, (data.image_size[0], data.image_size[1]),
                                         data.test_fraction, cfg.study.seed, tests)
        else:
            shared = (cfg.resolve_path(data.shared_data), data.shared_sha256) if data.shared_data else None
            clients = load_csv_clients(paths, csv_columns(cfg), data.test_fraction, cfg.study.seed, tests, shared)
    else:
        if data.dataset == "fed_heart_disease":
            clients = load_fed_heart_disease()
        elif data.dataset == "device_traffic":
            clients = load_device_traffic(data.num_clients, cfg.study.seed, data.test_fraction)
        elif data.dataset == "vital_signs":
            clients = load_vital_signs(data.num_clients, cfg.study.seed, data.test_fraction)
        elif data.dataset in SURVIVAL_DATASETS:
            clients = load_survival_dataset(data.dataset, data.num_clients, data.alpha, cfg.study.seed,
                                            data.test_fraction)
        else:
            clients = load_breast_cancer(data.num_clients, data.alpha, cfg.study.seed, data.test_fraction,
                                         data.shared_fraction)
        if institution is not None:
            names = [c.name for c in clients]
            if institution not in names:
                raise ConfigError(f"{data.dataset} has no institution {institution!r} "
                                  f"(its institutions: {', '.join(names)})")
            clients = [clients[names.index(institution)]]
    stratify = study_task(cfg).stratify
    return [hold_out_validation(c, data.validation_fraction, derive_seed(cfg.study.seed, "validation", c.name),
                                stratify) for c in clients]


def feature_count(cfg: Config) -> int:
    """How many features the model takes, known without any institution's private data."""
    if cfg.data.dataset == "images":
        return cfg.data.image_size[0] * cfg.data.image_size[1]      # one grey level per pixel
    if cfg.data.dataset == "vital_signs":
        return int(np.prod(vital_signs_shape()))
    if cfg.data.dataset != "csv":
        return load_clients(cfg)[0].num_features    # vendored public data
    if not cfg.data.features:
        raise ConfigError("a deployed CSV study must list [data].features: the model is built before "
                          "any institution's data is seen")
    return len(cfg.data.features)


def model_spec(cfg: Config, num_features: int) -> ModelSpec:
    shape: tuple[int, ...] = ()
    if cfg.model.name == "cnn":    # grey images: one channel; vital signs: (channels, samples)
        shape = (1, *cfg.data.image_size) if cfg.data.dataset == "images" else vital_signs_shape()
    strategy = make_strategy(cfg.aggregation.strategy, **cfg.aggregation.params)
    return ModelSpec(cfg.model.name, num_features, tuple(cfg.model.hidden), study_task(cfg), shape,
                     strategy.control_variates)


def train_config(cfg: Config) -> TrainConfig:
    t = cfg.training
    return TrainConfig(optimizer=t.optimizer, lr=t.lr, batch_size=t.batch_size, local_steps=t.local_steps,
                       class_weight=t.class_weight)


def initial_params(cfg: Config, spec: ModelSpec) -> np.ndarray:
    """The study's initial model: a function of the config alone, so every node can rebuild it
    and check it against the digest on chain."""
    params = get_flat_params(build_model(spec.name, spec.num_features, hidden=spec.hidden, seed=cfg.study.seed,
                                         task=spec.task, shape=spec.shape))
    # SCAFFOLD: the server's control variate follows the model, zero at first
    return np.concatenate([params, np.zeros_like(params)]) if spec.control_variates else params


def validation_rules(cfg: Config) -> ValidationRules:
    """The checks every aggregator runs on an update besides the fixed ones ([validation])."""
    return ValidationRules.from_config(cfg.to_dict())


def privacy_plan(cfg: Config) -> PrivacyPlan | None:
    """The study's differential privacy ([privacy]); None when it has none."""
    return PrivacyPlan.from_config(cfg.to_dict())


def update_scheme(cfg: Config, board: Any, names: Mapping[str, str]) -> UpdateScheme:
    """How the study's members send their updates ([privacy] secure_aggregation), with its
    messages logged on `board` (the study contract, or its ledger-off stand-in) and each round's
    members drawn from the consortium's `names` (address -> name). Each member holds its own:
    it keeps that member's secrets."""
    return make_scheme(cfg.privacy.secure_aggregation, board, cfg.protocol.commit_window,
                       ClientDraw.of(cfg.to_dict(), names))


def connect_rpc(url: str, funder_key_env: str = "") -> RpcChain:
    """A JSON-RPC node; gas money from the private key in environment variable `funder_key_env`
    (if named), else from a development node's balance-setting method."""
    funder_key = None
    if funder_key_env:
        funder_key = os.environ.get(funder_key_env)
        if not funder_key:
            raise ConfigError(f"the funder key should be in the environment variable {funder_key_env}, "
                              "which is not set")
    return RpcChain(url, funder_key=funder_key)


def enrol_consortium(backend: ChainBackend, admin: LocalAccount, coordinators: Sequence[tuple[str, str]],
                     institutions: Sequence[tuple[str, str]]) -> Consortium:
    """Deploy a consortium administered by `admin` and admit the (name, address) members."""
    consortium = Consortium.deploy(backend, admin)
    for name, address in coordinators:
        consortium.add_member(admin, address, name, Role.COORDINATOR)
    for name, address in institutions:
        consortium.add_member(admin, address, name, Role.INSTITUTION)
    return consortium


def deploy_study(backend: ChainBackend, sponsor: LocalAccount, consortium: Consortium, cfg: Config,
                 roster: Sequence[str], config_digest: str, initial_model: str
                 ) -> LooseStudy | SemiStudy | FullStudy:
    """The study's contract for the configured architecture, deployed by `sponsor`.

    Semi and full studies start at once (the sponsor must hold the coordinator role); a loose
    study starts when its coordinator calls `LooseStudy.start_study`.
    """
    architecture = cfg.study.architecture
    p = cfg.protocol
    plan = privacy_plan(cfg)
    epsilon_budget, delta = plan.budget_on_chain() if plan else (0, 0)
    if architecture == "loose":
        return LooseStudy.deploy(backend, sponsor, consortium, p.suspension_threshold, epsilon_budget, delta)
    terms = StudyTerms(config_digest, initial_model, tuple(roster), p.commit_window, p.result_window,
                       min(p.min_participants, len(roster)), p.suspension_threshold, epsilon_budget, delta)
    if architecture == "semi":
        return SemiStudy.deploy(backend, sponsor, consortium, terms, min(p.committee_size, len(roster)))
    return FullStudy.deploy(backend, sponsor, consortium, terms, p.weight_by_reputation)


def local_study(cfg: Config, roster: Sequence[str], config_digest: str, initial_model: str
                ) -> LocalLooseStudy | LocalSemiStudy | LocalFullStudy:
    """The study's contract as an in-memory stand-in, for a study run with the ledger off
    ([chain] enabled = false): the same interface and rules as `deploy_study`'s contract."""
    p, plan = cfg.protocol, privacy_plan(cfg)
    epsilon_budget, delta = plan.budget_on_chain() if plan else (0, 0)
    if cfg.study.architecture == "loose":
        return LocalLooseStudy(roster, p.suspension_threshold, epsilon_budget, delta)
    terms = (roster, config_digest, initial_model, p.commit_window, p.result_window,
             min(p.min_participants, len(roster)))
    if cfg.study.architecture == "semi":
        return LocalSemiStudy(*terms, min(p.committee_size, len(roster)), p.suspension_threshold, epsilon_budget,
                              delta, seed=cfg.study.seed)
    return LocalFullStudy(*terms, p.suspension_threshold, epsilon_budget, delta,
                          weight_by_reputation=p.weight_by_reputation)


def set_up_chain(backend: ChainBackend, admin: LocalAccount, coordinator: LocalAccount,
                 institutions: Sequence[tuple[str, LocalAccount]], config_digest: str, initial_model: str,
                 cfg: Config | None = None) -> ChainSetup:
    """One process holding every key (the simulation): fund the senders, enrol everyone and
    deploy the study.

    `coordinator` holds the coordinator role: in the loose architecture it starts the study and
    anchors every round; in the others it only deploys the study (its sponsor), which starts it,
    and the institutions send their own transactions.
    """
    cfg = cfg or Config()
    # every institution sends: its evaluation of the final model, and under semi and full its commitments
    senders = [admin, coordinator] + [a for _, a in institutions]
    backend.fund([a.address for a in senders], FUNDING_WEI)
    consortium = enrol_consortium(backend, admin, [("coordinator", coordinator.address)],
                                  [(name, a.address) for name, a in institutions])
    study = deploy_study(backend, admin if cfg.study.architecture == "loose" else coordinator, consortium, cfg,
                         [a.address for _, a in institutions], config_digest, initial_model)
    return ChainSetup(backend, consortium, study)
