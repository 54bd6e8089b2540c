"""Institutions' own CSV files: the happy path, and a clear DataError for each malformed input."""

import numpy as np
import pytest

from fedledger.errors import ConfigError, DataError
from fedledger.learning import load_csv_clients
from fedledger.learning.csv_clients import CsvColumns


def write(path, text):
    path.write_text(text)
    return path


def table(rng, n, label_values=("0", "1")):
    lines = ["age,bp,outcome"]
    for i in range(n):
        lines.append(f"{rng.integers(20, 90)},{rng.normal(120, 15):.1f},{label_values[i % 2]}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def two_sites(tmp_path):
    rng = np.random.default_rng(0)
    return {"north": write(tmp_path / "north.csv", table(rng, 40)),
            "south": write(tmp_path / "south.csv", table(rng, 30))}


def test_happy_path(two_sites):
    clients = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1)
    assert [c.name for c in clients] == ["north", "south"]
    north, south = clients
    assert (north.num_train, len(north.y_test)) == (30, 10)
    assert (south.num_train, len(south.y_test)) == (22, 8)
    for c in clients:
        assert c.num_features == 2
        assert set(np.unique(c.y_train)) == {0.0, 1.0}
        np.testing.assert_allclose(c.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_features_select_and_order_columns(two_sites):
    (north, _) = load_csv_clients(two_sites, CsvColumns(label="outcome", features=["bp"]), 0.25, seed=1)
    assert north.num_features == 1
    both = load_csv_clients(two_sites, CsvColumns(label="outcome", features=["bp", "age"]), 0.25, seed=1)[0]
    np.testing.assert_array_equal(both.x_train[:, 0], north.x_train[:, 0])


def test_same_seed_same_split_other_seed_differs(two_sites):
    a = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1)[0]
    b = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1)[0]
    c = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=2)[0]
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_two_valued_label_maps_larger_value_to_one(tmp_path):
    rng = np.random.default_rng(0)
    paths = {"a": write(tmp_path / "a.csv", table(rng, 20, ("benign", "malignant"))),
             "b": write(tmp_path / "b.csv", table(rng, 20, ("benign", "benign")))}
    a, b = load_csv_clients(paths, CsvColumns(label="outcome"), 0.3, seed=0)
    assert a.y_train.sum() + a.y_test.sum() == 10      # malignant -> 1
    assert b.y_train.sum() + b.y_test.sum() == 0
    numeric = {"a": write(tmp_path / "n.csv", table(rng, 20, ("2", "4")))}
    (n,) = load_csv_clients(numeric, CsvColumns(label="outcome"), 0.3, seed=0)
    assert n.y_train.sum() + n.y_test.sum() == 10


GOOD = "age,bp,outcome\n" + "".join(f"{30 + i},{100 + i},{i % 2}\n" for i in range(12))


@pytest.mark.parametrize("text,message", [
    ("", "file is empty"),
    ("age,bp,outcome\n", "no data rows"),
    ("age,outcome\n" + "".join(f"{i},{i % 2}\n" for i in range(12)), "columns differ"),
    (GOOD.replace("35,105", "35,high"), "line 7, column 'bp': 'high' is not a number"),
    (GOOD.replace("35,105", "35,NaN"), "line 7, column 'bp': 'NaN' is not a finite number"),
    (GOOD.replace("35,105", "35,inf"), "'inf' is not a finite number"),
    (GOOD.replace("35,105", "35,"), "line 7, column 'bp' is empty"),
    (GOOD.replace("35,105,1", "35,105"), "line 7 has 2 values, the header has 3"),
    (GOOD.replace("35,105,1", "35,105,2"), "exactly two distinct values"),
    (GOOD.replace("35,105,1", "35,105,"), "line 7, label column 'outcome' has no usable value"),
    (GOOD.replace("35,105,1", "35,105,nan"), "line 7, label column 'outcome' has no usable value"),
    ("age,age,outcome\n1,2,0\n", "'age' appears more than once"),
])
def test_bad_file_gives_a_data_error_naming_it(tmp_path, two_sites, text, message):
    bad = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as info:
        load_csv_clients({**two_sites, "bad": bad}, CsvColumns(label="outcome"), 0.25, seed=0)
    assert "\n" not in str(info.value)
    assert "bad.csv" in str(info.value)


def test_missing_file_and_missing_column(tmp_path, two_sites):
    with pytest.raises(DataError, match="nowhere.csv: file not found"):
        load_csv_clients({"x": tmp_path / "nowhere.csv"}, CsvColumns(label="outcome"), 0.25, seed=0)
    with pytest.raises(DataError, match="north.csv: no column 'label'"):
        load_csv_clients(two_sites, CsvColumns(label="label"), 0.25, seed=0)
    with pytest.raises(DataError, match="no column 'weight'"):
        load_csv_clients(two_sites, CsvColumns(label="outcome", features=["weight"]), 0.25, seed=0)


def test_line_numbers_count_blank_lines(tmp_path):
    bad = write(tmp_path / "gaps.csv", "a,outcome\n\n1,0\n\nx,1\n")
    with pytest.raises(DataError, match="gaps.csv: line 5, column 'a'"):
        load_csv_clients({"g": bad}, CsvColumns(label="outcome"), 0.25, seed=0)


def test_too_few_rows_to_split(tmp_path):
    tiny = write(tmp_path / "tiny.csv", "age,outcome\n1,0\n2,1\n")
    with pytest.raises(DataError, match="too few to split"):
        load_csv_clients({"tiny": tiny}, CsvColumns(label="outcome"), 0.25, seed=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"paths": {}}, "at least one"),
    ({"test_fraction": 0.0}, "test_fraction"),
    ({"seed": -3}, "seed"),
])
def test_bad_arguments_give_config_error(two_sites, kwargs, message):
    args = {"paths": two_sites, "columns": CsvColumns(label="outcome"), "test_fraction": 0.25, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        load_csv_clients(**args)


@pytest.mark.parametrize("kwargs,message", [
    ({"features": ("age", "outcome")}, "also listed as a feature"),
    ({"features": "age"}, "list of column names"),
    ({"task": "survival"}, "time and event"),
    ({"task": "multiclass", "classes": ("a",)}, "2 to 32 classes"),
    ({"task": "ranking"}, "task must be one of"),
])
def test_bad_columns_give_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CsvColumns(**{"label": "outcome", **kwargs})


def test_a_shared_dataset_named_by_digest_joins_every_sites_training(two_sites, tmp_path):
    import hashlib

    rng = np.random.default_rng(3)
    shared = write(tmp_path / "shared.csv", table(rng, 10, ("0", "1")))
    digest = hashlib.sha256(shared.read_bytes()).hexdigest()
    plain = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1)
    mixed = load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1, shared=(shared, digest))
    for p, m in zip(plain, mixed):
        assert m.num_train == p.num_train + 10
        np.testing.assert_array_equal(m.x_train[:p.num_train], p.x_train)
        np.testing.assert_array_equal(m.x_test, p.x_test)
        raw = np.loadtxt(shared, delimiter=",", skiprows=1)
        np.testing.assert_allclose(m.x_train[p.num_train:], (raw[:, :2] - p.feature_mean) / p.feature_std, rtol=1e-5)
        np.testing.assert_array_equal(m.y_train[p.num_train:], raw[:, 2])
    with pytest.raises(DataError, match=f"is not the shared dataset the study names: its sha-256 is {digest}"):
        load_csv_clients(two_sites, CsvColumns(label="outcome"), 0.25, seed=1, shared=(shared, "0" * 64))


def test_a_shared_dataset_needs_no_split_column_of_its_own(tmp_path):
    import hashlib

    rng = np.random.default_rng(4)
    sites = {}
    for name, n in (("north", 30), ("south", 24)):
        rows = ["age,bp,outcome,split"] + [f"{rng.integers(20, 90)},{rng.normal(120, 15):.1f},{i % 2},"
                                           f"{'test' if i % 4 == 0 else 'train'}" for i in range(n)]
        sites[name] = write(tmp_path / f"{name}.csv", "\n".join(rows) + "\n")
    shared = write(tmp_path / "shared.csv", table(rng, 8))      # age, bp, outcome: no split column
    digest = hashlib.sha256(shared.read_bytes()).hexdigest()
    columns = CsvColumns(label="outcome", features=("age", "bp"), split_column="split")
    north, south = load_csv_clients(sites, columns, 0.25, seed=1, shared=(shared, digest))
    assert (north.num_train, len(north.y_test)) == (22 + 8, 8)
    assert (south.num_train, len(south.y_test)) == (18 + 8, 6)
