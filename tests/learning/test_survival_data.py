"""The bundled survival datasets (GBSG2, WHAS500, FLCHAIN) and their Dirichlet split across hospitals."""

import csv
import hashlib
import re
from importlib.resources import files

import numpy as np
import pytest

from fedledger.errors import ConfigError, DataError
from fedledger.learning import survival_data
from fedledger.learning.survival_data import SURVIVAL_DATASETS, load_survival_dataset, survival_feature_names

DATA_DIR = files("fedledger") / "datasets" / "survival"
ROWS = {"gbsg2": 686, "whas500": 500, "flchain": 7874}
TIME_EVENT = {"gbsg2": ("time", "cens", {"0": 0.0, "1": 1.0}),
              "whas500": ("lenfol", "fstat", {"0": 0.0, "1": 1.0}),
              "flchain": ("futime", "death", {"alive": 0.0, "dead": 1.0})}


def raw_rows(name):
    with (DATA_DIR / f"{name}.csv").open(encoding="ascii", newline="") as f:
        return list(csv.DictReader(f))


def raw_time_event_age(name):
    """Sorted (time, event, age) of every row, read independently of the loader."""
    time, event, coding = TIME_EVENT[name]
    return sorted((float(r[time]), coding[r[event]], round(float(r["age"]))) for r in raw_rows(name))


def loaded_time_event_age(clients, name):
    age = survival_feature_names(name).index("age")
    out = []
    for c in clients:
        for x, y in ((c.x_train, c.y_train), (c.x_test, c.y_test)):
            ages = np.rint(x[:, age] * c.feature_std[age] + c.feature_mean[age])
            out += [(float(t), float(e), int(a)) for (t, e), a in zip(y, ages)]
    return sorted(out)


@pytest.mark.parametrize("name", SURVIVAL_DATASETS)
def test_files_have_expected_rows(name):
    assert len(raw_rows(name)) == ROWS[name]


@pytest.mark.parametrize("name", SURVIVAL_DATASETS)
def test_hospitals_hold_every_row_exactly_once(name):
    clients = load_survival_dataset(name, num_clients=4, alpha=0.5, seed=3)
    assert [c.name for c in clients] == [f"hospital_{i}" for i in range(4)]
    assert sum(c.num_train + len(c.y_test) for c in clients) == ROWS[name]
    assert loaded_time_event_age(clients, name) == raw_time_event_age(name)


@pytest.mark.parametrize("name", SURVIVAL_DATASETS)
def test_labels_are_time_and_event(name):
    clients = load_survival_dataset(name, num_clients=3, alpha=1.0, seed=0)
    d = len(survival_feature_names(name))
    for c in clients:
        for x, y in ((c.x_train, c.y_train), (c.x_test, c.y_test)):
            assert x.dtype == np.float32 and x.shape == (len(y), d)
            assert y.dtype == np.float32 and y.shape == (len(x), 2)
            assert set(np.unique(y[:, 1])) <= {0.0, 1.0}
            assert np.all(y[:, 0] >= 0)
        # stratified on the event: both outcomes reach every hospital's training side
        assert set(np.unique(c.y_train[:, 1])) == {0.0, 1.0}


@pytest.mark.parametrize("name", SURVIVAL_DATASETS)
def test_same_seed_same_data_other_seed_other_split(name):
    a = load_survival_dataset(name, 3, 0.5, seed=11)
    b = load_survival_dataset(name, 3, 0.5, seed=11)
    for ca, cb in zip(a, b):
        for field in ("x_train", "y_train", "x_test", "y_test", "feature_mean", "feature_std"):
            np.testing.assert_array_equal(getattr(ca, field), getattr(cb, field))
    c = load_survival_dataset(name, 3, 0.5, seed=12)
    assert any(ca.y_train.shape != cc.y_train.shape or not np.array_equal(ca.y_train, cc.y_train)
               for ca, cc in zip(a, c))


def test_smaller_alpha_skews_event_mix_more():
    def spread(alpha):
        return np.mean([np.std([c.y_train[:, 1].mean() for c in load_survival_dataset("whas500", 4, alpha, s)])
                        for s in range(4)])
    assert spread(0.1) > 2 * spread(100.0)


@pytest.mark.parametrize("name", SURVIVAL_DATASETS)
def test_consortium_wide_standardization(name):
    clients = load_survival_dataset(name, num_clients=5, alpha=0.3, seed=1)
    for c in clients[1:]:
        np.testing.assert_array_equal(c.feature_mean, clients[0].feature_mean)
        np.testing.assert_array_equal(c.feature_std, clients[0].feature_std)
    x = np.concatenate([c.x_train for c in clients]).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0, ddof=1), 1.0, atol=1e-4)


def test_feature_names():
    assert survival_feature_names("gbsg2") == ["horTh_yes", "age", "menostat_Post", "tsize", "tgrade_II",
                                               "tgrade_III", "pnodes", "progrec", "estrec"]
    assert survival_feature_names("whas500") == ["age", "gender", "hr", "sysbp", "diasbp", "bmi", "cvd", "afb",
                                                 "sho", "chf", "av3", "miord", "mitype", "los"]
    assert survival_feature_names("flchain") == ["age", "sex_M", "sample.yr", "kappa", "lambda", "flc.grp",
                                                 "mgus_yes"]


def test_flchain_leaves_out_chapter_and_creatinine():
    names = survival_feature_names("flchain")
    assert not any(n.startswith(("chapter", "creatinine", "futime", "death")) for n in names)
    # Raw file does hold them; rows with a missing creatinine are kept, not dropped.
    rows = raw_rows("flchain")
    assert sum(r["creatinine"] == "" for r in rows) == 1350
    assert {r["chapter"] == "" for r in rows if r["death"] == "alive"} == {True}
    clients = load_survival_dataset("flchain", 2, 1.0, seed=0)
    assert clients[0].num_features == len(names) == 7
    assert sum(c.num_train + len(c.y_test) for c in clients) == len(rows)


def test_gbsg2_one_hot_matches_raw_levels():
    clients = load_survival_dataset("gbsg2", 2, 1.0, seed=0)
    names = survival_feature_names("gbsg2")
    c = clients[0]
    raw = c.x_train * c.feature_std + c.feature_mean
    for col in ("horTh_yes", "menostat_Post", "tgrade_II", "tgrade_III"):
        np.testing.assert_allclose(np.unique(np.round(raw[:, names.index(col)], 4)), [0.0, 1.0])
    assert np.all(raw[:, names.index("tgrade_II")] + raw[:, names.index("tgrade_III")] < 1.5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="veteran"), "gbsg2, whas500, flchain"),
    (dict(num_clients=1), "num_clients"),
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=-1.0), "alpha"),
    (dict(test_fraction=0.0), "test_fraction"),
    (dict(test_fraction=1.0), "test_fraction"),
    (dict(seed=-1), "seed"),
    (dict(num_clients=200), "too many"),
])
def test_bad_arguments_raise_config_error(kwargs, message):
    args = dict(name="whas500", num_clients=3, alpha=0.5, seed=0) | kwargs
    with pytest.raises(ConfigError, match=message):
        load_survival_dataset(**args)


def test_unknown_name_for_feature_names():
    with pytest.raises(ConfigError, match="unknown survival dataset"):
        survival_feature_names("GBSG2")


def test_missing_file_says_reinstall(monkeypatch, tmp_path):
    monkeypatch.setattr(survival_data, "files", lambda package: tmp_path)
    with pytest.raises(DataError, match="reinstall"):
        load_survival_dataset("gbsg2", 3, 0.5, seed=0)


def test_source_md_md5s_match_files():
    text = (DATA_DIR / "SOURCE.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| (\w+\.csv) \|.*\| ([0-9a-f]{32}) \|$", text, flags=re.M))
    assert set(listed) == {f"{name}.csv" for name in SURVIVAL_DATASETS}
    for file, md5 in listed.items():
        assert hashlib.md5((DATA_DIR / file).read_bytes()).hexdigest() == md5, file
    for licence in ("LICENSE-lifelines", "COPYING-scikit-survival"):
        assert (DATA_DIR / licence).is_file() and licence in text
