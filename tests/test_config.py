"""Config validation: every mistake names the key and what is allowed."""

from pathlib import Path

import pytest

from fedledger.config import attacker_count, config_from_dict, load_config
from fedledger.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CSV = {"dataset": "csv", "clients": {"a": "a.csv", "b": "b.csv"}}


def test_example_config_loads_with_paths_relative_to_the_file():
    cfg = load_config(EXAMPLES / "fed_heart_disease.toml")
    assert cfg.data.dataset == "fed_heart_disease"
    assert cfg.study.rounds == 15
    assert cfg.resolve_path(cfg.study.output_dir) == EXAMPLES.parent / "runs"
    assert cfg.to_dict()["aggregation"]["strategy"] == "fedadagrad"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    assert load_config(path).study.rounds > 0


def test_integers_are_accepted_where_numbers_are_expected():
    assert config_from_dict({"training": {"lr": 1}}).training.lr == 1.0


@pytest.mark.parametrize("raw, message", [
    ({"trainig": {}}, "unknown section [trainig]"),
    ({"training": {"lrr": 0.1}}, "unknown key [training].lrr; allowed: optimizer, lr"),
    ({"training": {"lr": "fast"}}, "[training].lr must be a number, got a string"),
    ({"training": {"lr": -1.0}}, "[training].lr must be positive"),
    ({"training": {"lr": 1e300}}, "[training].lr must be positive and at most 1000, got 1e+300"),
    ({"training": {"lr": 1e6}}, "[training].lr must be positive and at most 1000, got 1e+06"),
    ({"training": {"lr": float("nan")}}, "[training].lr must be positive and at most 1000, got nan"),
    ({"study": {"rounds": 10**20}}, f"[study].rounds must be between 1 and 100000, got {10**20}"),
    ({"study": {"rounds": 0}}, "[study].rounds must be between 1 and 100000, got 0"),
    ({"study": {"seed": 2**63}}, f"[study].seed must be between 0 and {2**63 - 1}, got {2**63}"),
    ({"protocol": {"commit_window": 10**80}}, "[protocol].commit_window must be at most 1,000,000 blocks"),
    ({"protocol": {"result_window": 10**7}}, "[protocol].result_window must be at most 1,000,000 blocks"),
    ({"data": {"alpha": float("nan")}}, "[data].alpha must be positive and finite, got nan"),
    ({"data": {"alpha": float("inf")}}, "[data].alpha must be positive and finite, got inf"),
    ({"study": {"rounds": 2.5}}, "[study].rounds must be an integer"),
    ({"study": {"rounds": True}}, "[study].rounds must be an integer, got a boolean"),
    ({"study": {"architecture": "tightly"}}, "[study].architecture is 'tightly'; allowed: loose, semi, full"),
    ({"data": {"dataset": "mnist"}}, "allowed: fed_heart_disease, breast_cancer, gbsg2, whas500, flchain, device_traffic, vital_signs, csv, images"),
    ({"data": {"dataset": "csv", "clients": {"a": "a.csv"}, "label": "y"}}, "at least two institutions"),
    ({"data": {"dataset": "csv", "clients": {"a": "a.csv", "b": "b.csv"}}}, "[data].label must name"),
    ({"data": {"test_fraction": 1.5}}, "[data].test_fraction must be between 0 and 1"),
    ({"model": {"hidden": [16, "x"]}}, "[model].hidden[1] must be an integer"),
    ({"chain": {"rpc_url": "localhost:8545"}}, "[chain].rpc_url must be an http"),
    ({"chain": {"enabled": "yes"}}, "[chain].enabled must be true or false"),
    ({"study": {"name": "a/b"}}, "[study].name must be a non-empty name without slashes"),
    ({"study": []}, "[study] must be a table"),
    ({"data": {"task": "survival"}}, "fed_heart_disease is a binary task"),
    ({"data": {"task": "ranking"}}, "[data].task is 'ranking'; allowed: binary, multiclass, regression, survival"),
    ({"data": {**CSV, "task": "survival", "label": "y"}}, "set [data].time and [data].event"),
    ({"data": {**CSV, "task": "survival", "time": "t", "event": "e", "label": "y"}}, "not [data].label"),
    ({"data": {**CSV, "task": "multiclass", "label": "y"}}, "needs [data].classes"),
    ({"data": {**CSV, "task": "multiclass", "label": "y", "classes": ["a", "a"]}}, "needs [data].classes"),
    ({"data": {**CSV, "label": "y", "classes": ["a", "b"]}}, "[data].classes is for task = \"multiclass\""),
    ({"data": {**CSV, "label": "y", "exclude": ["y"]}}, "[data].exclude names 'y', which is also a label"),
    ({"data": {**CSV, "label": "y", "split_column": "s", "test_clients": {"a": "t.csv", "b": "u.csv"}}},
     "give the split once"),
    ({"data": {**CSV, "label": "y", "test_clients": {"a": "t.csv"}}}, "a test file for every institution"),
    ({"data": {**CSV, "task": "regression", "label": "y"}, "training": {"class_weight": "balanced"}},
     "a regression task has none"),
    ({"training": {"class_weight": "inverse"}}, "[training].class_weight is 'inverse'; allowed: none, balanced"),
    ({"model": {"threshold": 1.0}}, "[model].threshold must be between 0 and 1"),
    ({"data": {"dataset": "gbsg2"}, "privacy": {"mechanism": "dp-sgd", "epsilon": 1.0}},
     "not a sum of per-record losses"),
    ({"data": {"dataset": "gbsg2"}, "attack": {"kind": "label_flip", "fraction": 0.2}}, "a survival study has none"),
    ({"data": {"label": "y"}}, "[data].label is for dataset = \"csv\""),
    ({"data": {"shared_data": "s.csv"}}, "needs [data].shared_sha256"),
    ({"data": {**CSV, "label": "y", "shared_data": "s.csv", "shared_sha256": "abc"}}, "needs [data].shared_sha256"),
    ({"data": {"shared_fraction": 0.1}}, "sets part of breast_cancer's rows apart"),
    ({"data": {"standardize": "site"}}, "[data].standardize is for dataset = \"csv\""),
    ({"data": {**CSV, "label": "y", "standardize": "global"}}, "[data].standardize is 'global'; allowed"),
    ({"data": {"dataset": "breast_cancer", "shared_fraction": 0.5}}, "[data].shared_fraction must be at least 0"),
])
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, "is not a text file: byte 128 is not UTF-8"),
    (b"x = " + b"[" * 100_000 + b"]" * 100_000, "is not valid TOML: nested too deeply"),
])
def test_binary_and_too_deeply_nested_files_are_config_errors(tmp_path, content, message):
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_new_sections_default_to_off_and_are_recorded():
    cfg = config_from_dict({})
    assert cfg.protocol.suspension_threshold == 0
    assert (cfg.validation.max_update_norm, cfg.validation.outlier_factor) == (0.0, 0.0)
    assert (cfg.attack.kind, cfg.attack.fraction, cfg.attack.scale, cfg.attack.noise_std,
            cfg.attack.start_round) == ("none", 0.0, 1.0, 1.0, 1)
    d = cfg.to_dict()
    assert d["protocol"]["suspension_threshold"] == 0
    assert d["validation"] == {"max_update_norm": 0.0, "outlier_factor": 0.0}
    assert d["attack"] == {"kind": "none", "fraction": 0.0, "scale": 1.0, "noise_std": 1.0, "start_round": 1}


def test_new_keys_are_read():
    cfg = config_from_dict({
        "protocol": {"suspension_threshold": 1000},
        "validation": {"max_update_norm": 5, "outlier_factor": 3.0},
        "data": {"dataset": "breast_cancer", "num_clients": 6},
        "attack": {"kind": "sybil", "fraction": 0.5, "scale": 6, "noise_std": 0, "start_round": 3},
    })
    assert cfg.protocol.suspension_threshold == 1000
    assert cfg.validation.max_update_norm == 5.0 and cfg.validation.outlier_factor == 3.0
    assert cfg.attack == type(cfg.attack)(kind="sybil", fraction=0.5, scale=6.0, noise_std=0.0, start_round=3)
    assert cfg.to_dict()["attack"]["kind"] == "sybil"


@pytest.mark.parametrize("kind", ["label_flip", "sign_flip", "scale", "noise", "free_rider", "sybil"])
def test_every_attack_kind_is_accepted(kind):
    assert config_from_dict({"attack": {"kind": kind, "fraction": 0.25}}).attack.kind == kind


@pytest.mark.parametrize("fraction, institutions, count", [
    (0.0, 5, 0), (0.01, 5, 1), (0.2, 5, 1), (0.3, 5, 2), (0.5, 5, 3), (0.5, 6, 3), (0.7, 5, 4), (0.8, 10, 8),
])
def test_attacker_count_rounds_half_up_with_at_least_one(fraction, institutions, count):
    assert attacker_count(fraction, institutions) == count


@pytest.mark.parametrize("fraction, institutions", [(0.9, 5), (0.75, 2), (0.995, 100)])
def test_attacker_count_keeps_one_institution_honest(fraction, institutions):
    with pytest.raises(ConfigError, match=r"\[attack\]\.fraction = .* at least one must stay honest"):
        attacker_count(fraction, institutions)


@pytest.mark.parametrize("raw, message", [
    ({"protocol": {"suspension_threshold": -1}},
     "[protocol].suspension_threshold must be between 0 (never suspend) and 1000, got -1"),
    ({"protocol": {"suspension_threshold": 1001}}, "[protocol].suspension_threshold must be between 0"),
    ({"protocol": {"suspension_threshold": 0.5}}, "[protocol].suspension_threshold must be an integer"),
    ({"validation": {"max_update_norm": -0.1}},
     "[validation].max_update_norm must be a finite number, at least 0 (0: no bound), got -0.1"),
    ({"validation": {"max_update_norm": float("inf")}}, "[validation].max_update_norm must be a finite number"),
    ({"validation": {"max_update_norm": float("nan")}}, "[validation].max_update_norm must be a finite number"),
    ({"validation": {"max_update_norm": "big"}}, "[validation].max_update_norm must be a number, got a string"),
    ({"validation": {"outlier_factor": 1.0}},
     "[validation].outlier_factor must be 0 (off) or a finite number above 1, got 1.0"),
    ({"validation": {"outlier_factor": 0.5}}, "[validation].outlier_factor must be 0 (off) or a finite number"),
    ({"validation": {"outlier_factor": -2}}, "[validation].outlier_factor must be 0 (off) or a finite number"),
    ({"validation": {"outlier_factor": float("inf")}}, "[validation].outlier_factor must be 0 (off)"),
    ({"validation": {"outlier": 3}}, "unknown key [validation].outlier; allowed: max_update_norm, outlier_factor"),
    ({"attack": {"kind": "backdoor", "fraction": 0.2}},
     "[attack].kind is 'backdoor'; allowed: none, label_flip, sign_flip, scale, noise, free_rider, sybil"),
    ({"attack": {"kind": "scale", "fraction": 1.0}}, "[attack].fraction must be at least 0 and below 1, got 1.0"),
    ({"attack": {"kind": "scale", "fraction": -0.1}}, "[attack].fraction must be at least 0 and below 1"),
    ({"attack": {"kind": "scale", "fraction": 0.2, "scale": 0}},
     "[attack].scale must be a finite number above 0, got 0.0"),
    ({"attack": {"kind": "scale", "fraction": 0.2, "scale": float("inf")}}, "[attack].scale must be a finite"),
    ({"attack": {"kind": "noise", "fraction": 0.2, "noise_std": -1}},
     "[attack].noise_std must be a finite number, at least 0, got -1.0"),
    ({"attack": {"kind": "noise", "fraction": 0.2, "noise_std": float("nan")}}, "[attack].noise_std must be"),
    ({"attack": {"kind": "noise", "fraction": 0.2, "start_round": 0}}, "[attack].start_round must be at least 1, got 0"),
    ({"attack": {"kind": "scale"}},
     "[attack].kind = 'scale' needs attackers: set [attack].fraction (the share of institutions that attack)"),
    ({"attack": {"fraction": 0.3}},
     ("[attack].fraction = 0.3 needs an attack: set [attack].kind to one of label_flip, sign_flip, scale, "
      "noise, free_rider, sybil")),
    ({"attack": {"kind": "scale", "fraction": 0.9}, "data": {"dataset": "breast_cancer", "num_clients": 5}},
     ("[attack].fraction = 0.9 makes 5 of the 5 institutions attackers; at least one must stay honest: "
      "lower [attack].fraction")),
    ({"attack": {"kind": "scale", "fraction": 0.75},
      "data": {"dataset": "csv", "clients": {"a": "a.csv", "b": "b.csv"}, "label": "y"}},
     "makes 2 of the 2 institutions attackers"),
    ({"attack": {"kind": "scale", "fraction": 0.2, "target": "x"}},
     "unknown key [attack].target; allowed: kind, fraction, scale, noise_std, start_round"),
])
def test_new_keys_name_the_key_and_what_is_allowed(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


DP = {"mechanism": "dp-sgd", "epsilon": 3.0}


@pytest.mark.parametrize("raw, message", [
    ({"privacy": {"mechanism": "dp"}}, "[privacy].mechanism is 'dp'; allowed: none, dp-sgd, dp-fedavg"),
    ({"privacy": {"mechanism": "dp-sgd"}},
     "[privacy].mechanism = 'dp-sgd' needs a budget: set [privacy].epsilon to a positive number"),
    ({"privacy": {"mechanism": "dp-fedavg", "epsilon": float("inf")}}, "needs a budget"),
    ({"privacy": {"epsilon": 3.0}}, "[privacy].epsilon = 3.0 needs a mechanism: set [privacy].mechanism"),
    ({"privacy": {**DP, "delta": 0}}, "[privacy].delta must be between 0 and 1, e.g. 1e-5, got 0.0"),
    ({"privacy": {**DP, "delta": 1.0}}, "[privacy].delta must be between 0 and 1"),
    ({"privacy": {**DP, "noise_multiplier": -1}}, "[privacy].noise_multiplier must be 0 (calibrated from"),
    ({"privacy": {**DP, "max_grad_norm": 0}}, "[privacy].max_grad_norm must be a positive number, got 0.0"),
    ({"privacy": DP, "aggregation": {"strategy": "fedprox", "params": {"mu": 0.01}}},
     "FedProx's proximal term is not a per-record loss"),
    ({"privacy": {**DP, "clip": 1}},
     "unknown key [privacy].clip; allowed: mechanism, epsilon, delta, noise_multiplier, max_grad_norm, "
     "secure_aggregation"),
    ({"privacy": {"secure_aggregation": "paillier"}},
     "[privacy].secure_aggregation is 'paillier'; allowed: none, secagg, ckks"),
    ({"privacy": {"secure_aggregation": "ckks"}, "study": {"architecture": "semi"}},
     "hides the updates from an aggregator that holds no key: the loose coordinator"),
    ({"privacy": {"secure_aggregation": "ckks"}, "aggregation": {"strategy": "krum"}}, "needs each one"),
    ({"privacy": {"secure_aggregation": "secagg"}, "study": {"architecture": "full"},
      "data": {"validation_fraction": 0.2}},
     "secure aggregation reveals only the sum of the updates, and the full architecture's validators "
     "score each update"),
    ({"privacy": {"secure_aggregation": "secagg"}, "aggregation": {"strategy": "fedmedian"}},
     "[aggregation].strategy = 'fedmedian' needs each one: use fedavg, fedprox, fedadam, fedadagrad or fedyogi"),
    ({"privacy": {"secure_aggregation": "secagg"}, "aggregation": {"strategy": "multikrum"}}, "needs each one"),
    ({"privacy": {"secure_aggregation": "secagg"}, "aggregation": {"strategy": "normclip"}}, "needs each one"),
    ({"privacy": {"secure_aggregation": "secagg"}, "validation": {"max_update_norm": 2.0}},
     "[validation].max_update_norm checks each one: bound the updates on the members' side instead, with "
     "[privacy].mechanism = \"dp-fedavg\""),
    ({"privacy": {"secure_aggregation": "secagg"}, "validation": {"outlier_factor": 4.0}},
     "[validation].outlier_factor compares each one with the others"),
])
def test_privacy_mistakes_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_privacy_is_off_by_default_and_recorded():
    assert config_from_dict({}).to_dict()["privacy"] == {
        "mechanism": "none", "epsilon": 0.0, "delta": 1e-5, "noise_multiplier": 0.0, "max_grad_norm": 1.0,
        "secure_aggregation": "none"}
    cfg = config_from_dict({"privacy": {"mechanism": "dp-fedavg", "epsilon": 8, "noise_multiplier": 1.5}})
    assert (cfg.privacy.mechanism, cfg.privacy.epsilon, cfg.privacy.noise_multiplier) == ("dp-fedavg", 8.0, 1.5)


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedadam", "fedadagrad", "fedyogi"])
def test_secure_aggregation_takes_every_rule_that_needs_only_the_mean(strategy):
    cfg = config_from_dict({"privacy": {"secure_aggregation": "secagg", "mechanism": "dp-fedavg", "epsilon": 4},
                            "aggregation": {"strategy": strategy}})
    assert cfg.privacy.secure_aggregation == "secagg"
