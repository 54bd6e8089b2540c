"""The committed contract artifacts are exactly what the committed sources compile to."""

import pytest

from fedledger.chain.artifacts import CONTRACT_NAMES, load_artifact
from fedledger.chain.compile import compile_contract


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_committed_artifact_matches_its_source(name):
    fresh = compile_contract(name)
    committed = load_artifact(name)
    assert committed["source_sha256"] == fresh["source_sha256"], \
        f"{name}.vy changed since it was compiled: run `python -m fedledger.chain.compile`"
    assert committed == fresh


def test_artifacts_record_the_compiler_and_target():
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert artifact["compiler"] == "vyper 0.4.3"
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 1000
