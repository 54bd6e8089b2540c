"""Config validation: every mistake names the key and what is allowed."""

from pathlib import Path

import pytest

from fedledger.config import config_from_dict, load_config
from fedledger.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
    ({"study": {"rounds": 2.5}}, "[study].rounds must be an integer"),
    ({"study": {"rounds": True}}, "[study].rounds must be an integer, got a boolean"),
    ({"study": {"architecture": "tightly"}}, "[study].architecture is 'tightly'; allowed: loose, semi, full"),
    ({"data": {"dataset": "mnist"}}, "allowed: fed_heart_disease, breast_cancer, csv"),
    ({"data": {"dataset": "csv", "clients": {"a": "a.csv"}, "label": "y"}}, "at least two institutions"),
    ({"data": {"dataset": "csv", "clients": {"a": "a.csv", "b": "b.csv"}}}, "[data].label must name"),
    ({"data": {"test_fraction": 1.5}}, "[data].test_fraction must be between 0 and 1"),
    ({"model": {"hidden": [16, "x"]}}, "[model].hidden[1] must be an integer"),
    ({"chain": {"rpc_url": "localhost:8545"}}, "[chain].rpc_url must be an http"),
    ({"chain": {"enabled": "yes"}}, "[chain].enabled must be true or false"),
    ({"study": {"name": "a/b"}}, "[study].name must be a non-empty name without slashes"),
    ({"study": []}, "[study] must be a table"),
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
