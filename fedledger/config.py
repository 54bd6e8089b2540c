"""Study configuration: TOML in, validated frozen dataclasses out.

Every mistake is reported as a ConfigError that names the key (``[training].lr``) and says what is
allowed, because a researcher editing a config file should never have to read a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.errors import ConfigError

# loose: a coordinator anchors each round; semi: the contract runs the round and a committee
# aggregates; full: every member validates and votes (../docs/architectures.md)
ARCHITECTURES = ("loose", "semi", "full")
DATASETS = ("fed_heart_disease", "breast_cancer", "gbsg2", "whas500", "flchain", "device_traffic", "vital_signs",
            "csv", "images")
# what the model predicts (fedledger/learning/tasks.py), and each vendored dataset's task
TASKS = ("binary", "multiclass", "regression", "survival")
DATASET_TASKS = {"fed_heart_disease": "binary", "breast_cancer": "binary", "gbsg2": "survival",
                 "whas500": "survival", "flchain": "survival", "device_traffic": "multiclass", "csv": "binary",
                 "images": "multiclass", "vital_signs": "multiclass"}
CLASS_WEIGHTS = ("none", "balanced")
STANDARDIZE = ("consortium", "site")
MODELS = ("logreg", "mlp", "cnn")
SHAPED_DATASETS = ("images", "vital_signs")     # whose rows a "cnn" reads as images or signals
OPTIMIZERS = ("sgd", "adam")
# simulated misbehaviour of some institutions ([attack]; fedledger/simulation/attacks.py)
ATTACKS = ("none", "label_flip", "sign_flip", "scale", "noise", "free_rider", "sybil")
# differential privacy ([privacy]): record-level inside each institution, or client-level
PRIVACY_MECHANISMS = ("none", "dp-sgd", "dp-fedavg")
# secure aggregation ([privacy].secure_aggregation): "secagg" is pairwise masking, "ckks"
# homomorphic encryption
SECURE_AGGREGATION = ("none", "secagg", "ckks")
MAX_SUSPENSION_THRESHOLD = 1000   # reputation is kept on a 0..1000 scale by the study contracts
MAX_ROUNDS = 100_000   # far beyond any study, and well within the C integers rounds are counted in
# far above any working rate (examples and benchmarks use at most 0.1); 1e6 runs but sends only
# updates past the fixed-point bound, every one of them rejected
MAX_LR = 1e3
MAX_WINDOW = 1_000_000   # blocks: weeks of a real chain; the contracts add windows to block numbers
MAX_SEED = 2**63 - 1   # torch seeds its generators with a signed 64-bit integer


@dataclass(frozen=True)
class StudySection:
    name: str = "study"
    seed: int = 42
    rounds: int = 15
    architecture: str = "loose"
    output_dir: str = "runs"


@dataclass(frozen=True)
class DataSection:
    dataset: str = "fed_heart_disease"
    # breast_cancer: how many hospitals and how skewed (Dirichlet alpha) the split is
    num_clients: int = 5
    alpha: float = 0.5
    test_fraction: float = 0.3
    # share of each institution's training rows held out as validation data (the full
    # architecture scores updates on it); applied alike under every architecture
    validation_fraction: float = 0.0
    # csv: one file per institution, {name = "path"}, paths relative to the config file;
    # images: one folder per institution, with a subfolder of PNG or DICOM files per class
    clients: dict[str, str] = field(default_factory=dict)
    # images: every image is resized to [height, width]
    image_size: list[int] = field(default_factory=lambda: [32, 32])
    # what the model predicts from the CSV columns: "binary", "multiclass", "regression" (from
    # the `label` column) or "survival" (from the `time` and `event` columns); empty: the
    # dataset's own task (csv: binary)
    task: str = ""
    label: str = ""
    time: str = ""
    event: str = ""
    # multiclass: the label's values, in the order the model's outputs stand for them
    classes: list[str] = field(default_factory=list)
    # the feature columns; empty: every column but the labels, the split column and `exclude`
    features: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    # a given train/test split instead of a random one: a column whose value is "train" or
    # "test" on each row, or each institution's test rows in a file of their own
    split_column: str = ""
    test_clients: dict[str, str] = field(default_factory=dict)
    # a dataset every institution adds to its training rows (two-stage non-IID remedy): a CSV
    # file named by its sha-256, or (breast_cancer) this share of all rows set apart first
    shared_data: str = ""
    shared_sha256: str = ""
    shared_fraction: float = 0.0
    # csv: "consortium" standardizes every site's features with the statistics of all sites'
    # training rows, computed in the study from each site's counts, sums and sums of squares;
    # "site": each with its own (the vendored datasets come standardized as documented)
    standardize: str = "consortium"


@dataclass(frozen=True)
class ModelSection:
    name: str = "logreg"
    hidden: list[int] = field(default_factory=lambda: [32])
    # binary: predict class 1 when its probability is above this
    threshold: float = 0.5


@dataclass(frozen=True)
class TrainingSection:
    optimizer: str = "sgd"
    lr: float = 1e-3
    batch_size: int = 4
    local_steps: int = 100
    # "balanced": weigh each class by n / (classes x its count) in the institution's training rows
    class_weight: str = "none"


@dataclass(frozen=True)
class AggregationSection:
    strategy: str = "fedavg"
    # Hyperparameters of the strategy (server_lr, beta1, beta2, tau, mu); checked by make_strategy.
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolSection:
    """How rounds run: who takes part, how long they wait, how results are agreed."""
    # each member is drawn for each round with this probability (client sampling: every
    # architecture; 1: everyone takes part every round)
    sample_fraction: float = 1.0
    committee_size: int = 3          # semi: aggregators drawn per round
    commit_window: int = 100         # blocks a round waits for members' commitments
    result_window: int = 100         # blocks for the committee's results, the scores or the votes
    min_participants: int = 1        # commitments needed to close a round after its window
    exclusion_margin: float = 0.15   # full: exclude an update scored this far below the median update
    weight_by_reputation: bool = False   # full: two thirds of reputation instead of members
    # reputation (0..1000) below which the study contract suspends a member until governance
    # re-admits it (0: never suspend)
    suspension_threshold: int = 0


@dataclass(frozen=True)
class ValidationSection:
    """Checks every aggregator applies to each update before aggregating (0 switches one off)."""
    # reject an update whose change from the global model is longer than this (L2 norm)
    max_update_norm: float = 0.0
    # reject an update farther from the round's coordinate-wise median update than this multiple
    # of the median distance (must be above 1)
    outlier_factor: float = 0.0


@dataclass(frozen=True)
class FaultsSection:
    """Injected misbehaviour, for fault experiments (all 0: everyone is honest)."""
    wrong_result: int = 0   # aggregators that submit a wrong result digest (loose: the coordinator)
    silent: int = 0         # aggregators that never answer (loose: the coordinator)
    no_update: int = 0      # institutions that never commit an update
    # each round, each drawn institution, with these probabilities (seeded): sends nothing (a
    # device offline), or is a straggler whose update is ready only after the round's window
    dropout: float = 0.0
    straggler: float = 0.0


@dataclass(frozen=True)
class AttackSection:
    """Simulation only: which institutions misbehave, and how (a deployed node never reads it).

    round(fraction x institutions) institutions (rounded half up, at least one when fraction > 0,
    never all) are drawn from the study seed alone, so every kind of attack hits the same members.
    From `start_round` on they send, with g the global model and p their honestly trained model:
    label_flip: p trained on their own data with the labels flipped; sign_flip: g - scale (p - g);
    scale: g + scale (p - g) (model replacement with scale = number of members); noise: g plus
    N(0, noise_std^2) per parameter, untrained; free_rider: the same, meant with a small
    noise_std (0: g itself); sybil: all send one shared g - scale (p - g), trained by the first
    of them. Nothing is clipped: values beyond what validation accepts are rejected by it.
    """
    kind: str = "none"
    fraction: float = 0.0
    scale: float = 1.0
    noise_std: float = 1.0
    start_round: int = 1


@dataclass(frozen=True)
class PrivacySection:
    """Differential privacy (docs/privacy.md). "dp-sgd": each institution trains with DP-SGD
    (record-level: every patient is protected, even from the other members); "dp-fedavg": each
    update's change is clipped to `max_grad_norm` and noised so that the aggregate of
    [protocol].min_participants updates carries Gaussian noise of noise_multiplier x
    max_grad_norm (client-level: a whole institution's data is protected).
    `epsilon` and `delta` are each member's budget over the study; the study contract refuses a
    release past it, and a member whose budget is spent stops sending updates.
    """
    mechanism: str = "none"
    epsilon: float = 0.0
    delta: float = 1e-5
    # 0: the smallest noise that keeps [study].rounds releases within epsilon, per institution
    noise_multiplier: float = 0.0
    max_grad_norm: float = 1.0   # dp-sgd: each record's gradient; dp-fedavg: each update's change
    # "secagg": members mask their updates in pairs, and the aggregators learn only their sum;
    # "ckks": members encrypt them (CKKS), the coordinator adds ciphertexts, a member decrypts the sum
    secure_aggregation: str = "none"


@dataclass(frozen=True)
class PersonalizationSection:
    """After the last round each institution fine-tunes the final model on its own training rows
    for each of `steps` minibatch steps (0: the model as it is), keeps the one its validation
    rows score best, and evaluates it on its test rows; the fine-tuned models never leave their
    sites. Empty `steps`: no personalization."""
    steps: list[int] = field(default_factory=list)
    lr: float = 0.0        # the fine-tuning learning rate (0: [training].lr)


@dataclass(frozen=True)
class ChainSection:
    # false runs the same study without any ledger writes (to measure the ledger's overhead)
    enabled: bool = True
    # empty: the embedded in-process EVM, persisted in the run directory
    rpc_url: str = ""
    # the embedded chain's EVM: "py-evm", or "revm" (pyrevm, much faster); empty: $FEDLEDGER_ENGINE, else py-evm
    engine: str = ""
    # environment variable holding a funded private key for a JSON-RPC node (empty: use the
    # node's hardhat_setBalance / anvil_setBalance dev method)
    funder_key_env: str = ""


@dataclass(frozen=True)
class Config:
    study: StudySection = field(default_factory=StudySection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    aggregation: AggregationSection = field(default_factory=AggregationSection)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    faults: FaultsSection = field(default_factory=FaultsSection)
    attack: AttackSection = field(default_factory=AttackSection)
    privacy: PrivacySection = field(default_factory=PrivacySection)
    personalization: PersonalizationSection = field(default_factory=PersonalizationSection)
    chain: ChainSection = field(default_factory=ChainSection)
    # directory that relative paths in the config are resolved against
    base_dir: str = "."

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data (written to the run directory)."""
        return {f.name: dataclasses.asdict(getattr(self, f.name))
                for f in dataclasses.fields(self) if f.name != "base_dir"}

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return (p if p.is_absolute() else Path(self.base_dir) / p).resolve()


def load_config(path: str | Path) -> Config:
    """Read and validate a study configuration file."""
    path = Path(path)
    return config_from_dict(read_toml(path, "config file"), base_dir=path.parent.resolve())


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at `path`; ConfigError naming `what` (e.g. "config file") if it cannot
    be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a text file: byte {exc.start} is not UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:   # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path} is not valid TOML: nested too deeply") from None


def config_from_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> Config:
    """Validate a configuration given as nested tables (as TOML produces)."""
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name != "base_dir"}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; allowed: {', '.join(sections)}")
    built = {}
    for name, f in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {_type_name(table)}")
        built[name] = _build_section(name, f.default_factory, table)  # type: ignore[arg-type]
    config = Config(**built, base_dir=str(base_dir))
    _check_values(config)
    return config


def _build_section(section: str, cls: type, table: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key [{section}].{key}; allowed: {', '.join(fields)}")
        values[key] = _coerce(f"[{section}].{key}", hints[key], value)
    return cls(**values)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    """Check a TOML value against a field's type; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {_type_name(value)}")
        return [_coerce(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {_type_name(value)}")
        return {k: _coerce(f"{where}.{k}", item, v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {hint}")  # a programming error, not user input
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where} must be {_hint_name(hint)}, got {_type_name(value)} {value!r}")
    return value


def _check_values(c: Config) -> None:
    _one_of("[study].architecture", c.study.architecture, ARCHITECTURES)
    _one_of("[data].dataset", c.data.dataset, DATASETS)
    _one_of("[model].name", c.model.name, MODELS)
    _one_of("[training].optimizer", c.training.optimizer, OPTIMIZERS)
    if not 1 <= c.study.rounds <= MAX_ROUNDS:
        raise ConfigError(f"[study].rounds must be between 1 and {MAX_ROUNDS}, got {c.study.rounds}")
    _positive("[training].batch_size", c.training.batch_size)
    _positive("[training].local_steps", c.training.local_steps)
    if not 0.0 < c.training.lr <= MAX_LR:   # also refuses nan and inf, which TOML allows
        raise ConfigError(f"[training].lr must be positive and at most {MAX_LR:g}, got {c.training.lr:g}")
    _positive("[data].alpha", c.data.alpha)
    if not 0 <= c.study.seed <= MAX_SEED:
        raise ConfigError(f"[study].seed must be between 0 and {MAX_SEED}, got {c.study.seed}")
    if not c.study.name.strip() or any(ch in c.study.name for ch in "/\\"):
        raise ConfigError(f"[study].name must be a non-empty name without slashes, got {c.study.name!r}")
    if not 0.0 < c.data.test_fraction < 1.0:
        raise ConfigError(f"[data].test_fraction must be between 0 and 1, got {c.data.test_fraction}")
    if not 0.0 <= c.data.validation_fraction < 1.0:
        raise ConfigError("[data].validation_fraction must be at least 0 and below 1, "
                          f"got {c.data.validation_fraction}")
    if c.study.architecture == "full" and c.data.validation_fraction == 0.0:
        raise ConfigError("[study].architecture = \"full\" scores every update on held-out validation data: "
                          "set [data].validation_fraction, e.g. 0.2")
    _check_protocol(c)
    _check_validation(c)
    _check_attack(c)
    _check_privacy(c)
    if c.data.num_clients < 2:
        raise ConfigError(f"[data].num_clients must be at least 2, got {c.data.num_clients}")
    for width in c.model.hidden:
        _positive("[model].hidden", width)
    _check_task(c)
    _check_personalization(c)
    if c.chain.rpc_url and not c.chain.rpc_url.startswith(("http://", "https://")):
        raise ConfigError(f"[chain].rpc_url must be an http:// or https:// URL, got {c.chain.rpc_url!r}")
    if c.chain.engine not in ("", "py-evm", "revm"):
        raise ConfigError(f"[chain].engine must be \"py-evm\" or \"revm\", got {c.chain.engine!r}")


def study_task_kind(c: Config) -> str:
    """What the study's model predicts: [data].task, else the dataset's own task (images: binary
    for two classes, else multiclass)."""
    if c.data.dataset == "images" and not c.data.task:
        return "binary" if len(c.data.classes) == 2 else "multiclass"
    return c.data.task or DATASET_TASKS[c.data.dataset]


def _check_task(c: Config) -> None:
    d = c.data
    if d.task:
        _one_of("[data].task", d.task, TASKS)
    task = study_task_kind(c)
    _one_of("[training].class_weight", c.training.class_weight, CLASS_WEIGHTS)
    if not 0.0 < c.model.threshold < 1.0:
        raise ConfigError(f"[model].threshold must be between 0 and 1, got {c.model.threshold}")
    if c.training.class_weight != "none" and task not in ("binary", "multiclass"):
        raise ConfigError(f"[training].class_weight weighs classes: a {task} task has none")
    if task == "survival" and c.privacy.mechanism == "dp-sgd":
        raise ConfigError("[privacy].mechanism = \"dp-sgd\" clips each record's gradient, and Cox's partial "
                          "likelihood is not a sum of per-record losses: use \"dp-fedavg\" for a survival study")
    if not 0.0 <= d.shared_fraction < 0.5:
        raise ConfigError(f"[data].shared_fraction must be at least 0 and below 0.5, got {d.shared_fraction}")
    if d.shared_fraction and d.dataset != "breast_cancer":
        raise ConfigError("[data].shared_fraction sets part of breast_cancer's rows apart as a shared dataset; "
                          "a CSV study names its shared file with [data].shared_data and shared_sha256")
    if bool(d.shared_data) != bool(d.shared_sha256) or (
            d.shared_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", d.shared_sha256)):
        raise ConfigError("[data].shared_data needs [data].shared_sha256, the sha-256 of the file in hex (64 "
                          "characters), so that every institution trains on the same shared rows")
    _one_of("[data].standardize", d.standardize, STANDARDIZE)
    if c.model.name == "cnn" and d.dataset not in SHAPED_DATASETS:
        raise ConfigError("[model].name = \"cnn\" reads images or signals: it takes dataset = \"images\" or "
                          "\"vital_signs\"")
    if d.dataset == "images" and c.model.name != "cnn":
        raise ConfigError("dataset = \"images\" needs [model].name = \"cnn\"")
    if d.dataset == "images":
        _check_images(c, task)
    elif d.dataset == "csv":
        _check_csv(c, task)
    else:
        set_keys = [k for k in ("label", "time", "event", "classes", "exclude", "split_column", "test_clients",
                                "shared_data")
                    if getattr(d, k)]
        if d.standardize != "consortium":
            raise ConfigError(f"[data].standardize is for dataset = \"csv\"; {d.dataset} comes standardized")
        if set_keys:
            raise ConfigError(f"[data].{set_keys[0]} is for dataset = \"csv\"; {d.dataset} has its own columns")
        if d.task and d.task != DATASET_TASKS[d.dataset]:
            raise ConfigError(f"{d.dataset} is a {DATASET_TASKS[d.dataset]} task: remove [data].task = {d.task!r}")


def _check_csv(c: Config, task: str) -> None:
    d = c.data
    if len(d.clients) < 2:
        raise ConfigError("[data].clients must name at least two institutions' CSV files "
                          "for dataset = \"csv\", e.g. clients = { a = \"a.csv\", b = \"b.csv\" }")
    if task == "survival":
        if not d.time or not d.event:
            raise ConfigError("[data].task = \"survival\" learns from a time and an event column: set "
                              "[data].time and [data].event (and no [data].label)")
        if d.label:
            raise ConfigError("[data].task = \"survival\" takes [data].time and [data].event, not [data].label")
    else:
        if not d.label:
            raise ConfigError("[data].label must name the label column for dataset = \"csv\"")
        if d.time or d.event:
            raise ConfigError(f"[data].time and [data].event are for task = \"survival\", not {task!r}")
    if task == "multiclass":
        if not _distinct_classes(d):
            raise ConfigError("[data].task = \"multiclass\" needs [data].classes: the label's 2 to 32 distinct "
                              "values, in the order the model's outputs stand for them, e.g. "
                              "classes = [\"stable\", \"serious\", \"critical\"]")
    elif d.classes:
        raise ConfigError(f"[data].classes is for task = \"multiclass\", not {task!r}")
    labels = [d.label] if d.label else [d.time, d.event]
    listed = set(d.features)
    for key, names in (("exclude", d.exclude), ("split_column", [d.split_column] if d.split_column else [])):
        clash = sorted((set(names) & set(labels)) | (set(names) & listed))
        if clash:
            raise ConfigError(f"[data].{key} names {clash[0]!r}, which is also a label or a listed feature")
    clash = sorted(set(labels) & listed)
    if clash:
        raise ConfigError(f"label column {clash[0]!r} is also listed in [data].features")
    if d.split_column and d.test_clients:
        raise ConfigError("give the split once: [data].split_column or [data].test_clients, not both")
    _check_test_clients(d, "file")


def _distinct_classes(d: DataSection) -> bool:
    """[data].classes names 2 to 32 classes, each once."""
    return 2 <= len(d.classes) <= 32 and len(set(d.classes)) == len(d.classes)


def _check_test_clients(d: DataSection, kind: str) -> None:
    """[data].test_clients, if given, names a test `kind` (file, folder) for exactly the institutions of clients."""
    if d.test_clients and set(d.test_clients) != set(d.clients):
        missing = sorted(set(d.test_clients) - set(d.clients))
        raise ConfigError(f"[data].test_clients must name a test {kind} for every institution in [data].clients "
                          f"and none other ({'unknown: ' + missing[0] if missing else 'some are missing'})")


def _check_images(c: Config, task: str) -> None:
    d = c.data
    set_keys = [k for k in ("label", "time", "event", "exclude", "split_column", "shared_data") if getattr(d, k)]
    if set_keys:
        raise ConfigError(f"[data].{set_keys[0]} is for dataset = \"csv\"; images are labelled by their class folder")
    if len(d.clients) < 2:
        raise ConfigError("[data].clients must name at least two institutions' image folders for dataset = "
                          "\"images\", e.g. clients = { a = \"a_images\", b = \"b_images\" }")
    if not _distinct_classes(d):
        raise ConfigError("dataset = \"images\" needs [data].classes: the 2 to 32 class subfolders' names, in the "
                          "order the model's outputs stand for them")
    if task not in ("binary", "multiclass") or (task == "binary") != (len(d.classes) == 2):
        raise ConfigError(f"[data].task = {task!r} does not fit {len(d.classes)} image classes: leave it out")
    if len(d.image_size) != 2 or not all(1 <= s <= 1024 for s in d.image_size):
        raise ConfigError(f"[data].image_size must be [height, width], each 1 to 1024, got {d.image_size}")
    _check_test_clients(d, "folder")


def _check_personalization(c: Config) -> None:
    p = c.personalization
    if len(p.steps) > 16 or any(not 0 <= k <= 100_000 for k in p.steps):
        raise ConfigError(f"[personalization].steps must list at most 16 step counts from 0 to 100000, got {p.steps}")
    if not 0.0 <= p.lr <= MAX_LR:
        raise ConfigError(f"[personalization].lr must be 0 (the training lr) or positive and at most {MAX_LR:g}, "
                          f"got {p.lr:g}")
    if p.steps and c.data.validation_fraction == 0.0:
        raise ConfigError("[personalization] chooses each institution's fine-tuning on its validation rows: set "
                          "[data].validation_fraction, e.g. 0.2")


def _check_protocol(c: Config) -> None:
    p, f = c.protocol, c.faults
    for key in ("committee_size", "commit_window", "result_window", "min_participants"):
        _positive(f"[protocol].{key}", getattr(p, key))
    for key in ("commit_window", "result_window"):
        if getattr(p, key) > MAX_WINDOW:
            raise ConfigError(f"[protocol].{key} must be at most {MAX_WINDOW:,} blocks, got {getattr(p, key)}")
    if p.committee_size > 16:
        raise ConfigError(f"[protocol].committee_size must be at most 16, got {p.committee_size}")
    if not 0.0 <= p.exclusion_margin <= 1.0:
        raise ConfigError(f"[protocol].exclusion_margin must be between 0 and 1, got {p.exclusion_margin}")
    if not 0 <= p.suspension_threshold <= MAX_SUSPENSION_THRESHOLD:
        raise ConfigError(f"[protocol].suspension_threshold must be between 0 (never suspend) and "
                          f"{MAX_SUSPENSION_THRESHOLD}, got {p.suspension_threshold}")
    if not 0.0 < p.sample_fraction <= 1.0:
        raise ConfigError(f"[protocol].sample_fraction must be above 0 and at most 1, got {p.sample_fraction}")
    for key in ("wrong_result", "silent", "no_update"):
        if getattr(f, key) < 0:
            raise ConfigError(f"[faults].{key} must be a non-negative count, got {getattr(f, key)}")
    for key in ("dropout", "straggler"):
        if not 0.0 <= getattr(f, key) < 1.0:
            raise ConfigError(f"[faults].{key} must be a probability from 0 up to (not including) 1, "
                              f"got {getattr(f, key)}")
    if f.dropout + f.straggler >= 1.0:
        raise ConfigError(f"[faults].dropout + straggler must be below 1 (someone must answer on time), "
                          f"got {f.dropout + f.straggler}")


def _check_validation(c: Config) -> None:
    v = c.validation
    if not 0.0 <= v.max_update_norm < math.inf:
        raise ConfigError("[validation].max_update_norm must be a finite number, at least 0 (0: no bound), "
                          f"got {v.max_update_norm}")
    if not (v.outlier_factor == 0.0 or 1.0 < v.outlier_factor < math.inf):
        raise ConfigError("[validation].outlier_factor must be 0 (off) or a finite number above 1, "
                          f"got {v.outlier_factor}")


def _check_attack(c: Config) -> None:
    a = c.attack
    _one_of("[attack].kind", a.kind, ATTACKS)
    if not 0.0 <= a.fraction < 1.0:
        raise ConfigError(f"[attack].fraction must be at least 0 and below 1, got {a.fraction}")
    if not 0.0 < a.scale < math.inf:
        raise ConfigError(f"[attack].scale must be a finite number above 0, got {a.scale}")
    if not 0.0 <= a.noise_std < math.inf:
        raise ConfigError(f"[attack].noise_std must be a finite number, at least 0, got {a.noise_std}")
    if a.start_round < 1:
        raise ConfigError(f"[attack].start_round must be at least 1, got {a.start_round}")
    if a.kind != "none" and a.fraction == 0.0:
        raise ConfigError(f"[attack].kind = {a.kind!r} needs attackers: set [attack].fraction "
                          "(the share of institutions that attack), e.g. 0.2")
    if a.kind == "none" and a.fraction > 0.0:
        raise ConfigError(f"[attack].fraction = {a.fraction} needs an attack: set [attack].kind to one of "
                          f"{', '.join(k for k in ATTACKS if k != 'none')}")
    if a.kind == "label_flip" and study_task_kind(c) != "binary":
        raise ConfigError(f"[attack].kind = \"label_flip\" swaps the two classes of a binary task; a "
                          f"{study_task_kind(c)} study has none to swap: try sign_flip, scale or noise")
    # fed_heart_disease's institutions are counted when it is loaded (attacker_count)
    known = {"fed_heart_disease": 0, "csv": len(c.data.clients)}.get(c.data.dataset, c.data.num_clients)
    if known:   # otherwise checked when the institutions are loaded (attacker_count)
        attacker_count(a.fraction, known)


def _check_privacy(c: Config) -> None:
    p = c.privacy
    _one_of("[privacy].mechanism", p.mechanism, PRIVACY_MECHANISMS)
    _check_secure_aggregation(c)
    if p.mechanism == "none":
        if p.epsilon != 0.0:
            raise ConfigError(f"[privacy].epsilon = {p.epsilon} needs a mechanism: set [privacy].mechanism "
                              "to \"dp-sgd\" or \"dp-fedavg\"")
        return
    if not 0.0 < p.epsilon < math.inf:
        raise ConfigError(f"[privacy].mechanism = {p.mechanism!r} needs a budget: set [privacy].epsilon "
                          f"to a positive number, e.g. 3 (got {p.epsilon})")
    if not 0.0 < p.delta < 1.0:
        raise ConfigError(f"[privacy].delta must be between 0 and 1, e.g. 1e-5, got {p.delta}")
    if not 0.0 <= p.noise_multiplier < math.inf:
        raise ConfigError(f"[privacy].noise_multiplier must be 0 (calibrated from epsilon) or positive, "
                          f"got {p.noise_multiplier}")
    if not 0.0 < p.max_grad_norm < math.inf:
        raise ConfigError(f"[privacy].max_grad_norm must be a positive number, got {p.max_grad_norm}")
    if c.aggregation.strategy == "scaffold":
        raise ConfigError("[aggregation].strategy = \"scaffold\" sends control variates beside each update, which "
                          "differential privacy would have to clip and noise too: use fedavg or fedprox with "
                          "[privacy].mechanism")
    if p.mechanism == "dp-sgd" and c.aggregation.strategy == "fedprox":
        raise ConfigError("[privacy].mechanism = \"dp-sgd\" clips each record's gradient, and FedProx's "
                          "proximal term is not a per-record loss: use another [aggregation].strategy")


def _check_secure_aggregation(c: Config) -> None:
    """Secure aggregation hides every single update: the checks and rules that need one cannot run."""
    _one_of("[privacy].secure_aggregation", c.privacy.secure_aggregation, SECURE_AGGREGATION)
    if c.privacy.secure_aggregation == "none":
        return
    from fedledger.aggregation import make_strategy   # here: the aggregation package imports errors only

    why = "secure aggregation reveals only the sum of the updates, and"
    if c.privacy.secure_aggregation == "ckks" and c.study.architecture != "loose":
        raise ConfigError("[privacy].secure_aggregation = \"ckks\" hides the updates from an aggregator that "
                          "holds no key: the loose coordinator. In the semi and full "
                          "architectures members aggregate, and every member holds the key: use \"secagg\"")
    if c.study.architecture == "full":
        raise ConfigError(f"{why} the full architecture's validators score each update: "
                          "use [study].architecture = \"semi\" or \"loose\"")
    if make_strategy(c.aggregation.strategy, **c.aggregation.params).combines_individually:
        raise ConfigError(f"{why} [aggregation].strategy = {c.aggregation.strategy!r} needs each one: use "
                          "fedavg, fedprox, fedadam, fedadagrad or fedyogi")
    if c.validation.max_update_norm > 0:
        raise ConfigError(f"{why} [validation].max_update_norm checks each one: bound the updates on the "
                          "members' side instead, with [privacy].mechanism = \"dp-fedavg\" (max_grad_norm)")
    if c.validation.outlier_factor > 0:
        raise ConfigError(f"{why} [validation].outlier_factor compares each one with the others")


def attacker_count(fraction: float, institutions: int) -> int:
    """How many of `institutions` attack at [attack].fraction: round(fraction x institutions),
    rounded half up, at least 1 when fraction > 0; ConfigError if that leaves no one honest."""
    if fraction <= 0.0:
        return 0
    count = max(1, math.floor(fraction * institutions + 0.5))
    if count >= institutions:
        raise ConfigError(f"[attack].fraction = {fraction} makes {count} of the {institutions} institutions "
                          "attackers; at least one must stay honest: lower [attack].fraction")
    return count


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} is {value!r}; allowed: {', '.join(allowed)}")


def _positive(where: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):    # `value <= 0` would let nan through
        raise ConfigError(f"{where} must be positive and finite, got {value}")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _hint_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
