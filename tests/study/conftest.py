import shutil

import pytest

from fedledger.config import config_from_dict
from fedledger.simulation import run_study


def short_study(tmp_path, **sections):
    """A 3-round Fed-Heart-Disease study with a server optimizer (so there is server state to check)."""
    raw = {
        "study": {"name": "short", "seed": 7, "rounds": 3},
        "training": {"lr": 0.01, "local_steps": 20},
        "aggregation": {"strategy": "fedadam", "params": {"server_lr": 0.01}},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return config_from_dict(raw, base_dir=tmp_path)


@pytest.fixture
def make_study():
    """Factory for short study configs (a fixture, so test modules need no imports from here)."""
    return short_study


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One real run on the embedded chain, shared read-only by the tests; copy it to tamper."""
    base = tmp_path_factory.mktemp("finished")
    result = run_study(short_study(base), run_dir=base / "run", progress=False)
    return result


@pytest.fixture
def run_copy(finished_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(finished_run.run_dir, dest)
    return dest
