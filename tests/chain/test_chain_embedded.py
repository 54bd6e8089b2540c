"""The embedded chain survives its process, and an altered chain directory is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.chain import EmbeddedChain, LooseStudy, open_chain
from fedledger.errors import ChainError

from .conftest import digest, set_up_study

REPO = Path(__file__).resolve().parents[2]


def _block_hashes(backend) -> list[str]:
    return [backend.w3.eth.get_block(n)["hash"].hex() for n in range(backend.w3.eth.block_number + 1)]


@pytest.fixture(scope="module")
def persisted(tmp_path_factory):
    """A closed chain directory holding a study with two anchored rounds."""
    state = tmp_path_factory.mktemp("persisted") / "chain"
    chain = EmbeddedChain.create(state)
    study = set_up_study(chain)
    parent = digest("model 0")
    for n in (1, 2):
        study.ledger.anchor_round(study.coordinator, study.record(n, parent))
        parent = digest(f"model {n}")
    facts = {"study": study, "ledger": study.ledger.address, "rounds": study.ledger.anchored_rounds(),
             "members": study.consortium.members(), "hashes": _block_hashes(chain),
             "description": chain.describe()}
    chain.close()
    return state, facts


def test_genesis_is_the_same_on_every_create():
    first, second = EmbeddedChain.create(None), EmbeddedChain.create(None)
    assert _block_hashes(first) == _block_hashes(second)


def test_reopened_chain_has_the_same_blocks_and_records(persisted):
    state, facts = persisted
    chain = open_chain(facts["description"], state)
    assert _block_hashes(chain) == facts["hashes"]
    assert LooseStudy(chain, facts["ledger"]).anchored_rounds() == facts["rounds"]
    chain.close()
    assert (state / "blocks.jsonl").stat().st_size > 0


def test_logs_come_from_the_chains_own_index_exactly_as_eth_tester_gives_them(persisted):
    """The audit reads every event through `logs`; eth-tester's get_logs re-reads whole blocks."""
    state, facts = persisted
    chain = open_chain(facts["description"], state)
    head = chain.block_number()
    everything = chain.w3.eth.get_logs({"fromBlock": 0, "toBlock": head})
    addresses = {log["address"] for log in everything}
    assert len(addresses) >= 2 and len(everything) > 10
    for address in addresses:
        for first, last in ((0, head), (3, head - 2), (head, head)):
            assert chain._evm.logs(address, first, last) == chain.w3.eth.get_logs(
                {"address": address, "fromBlock": first, "toBlock": last})
    events = LooseStudy(chain, facts["ledger"]).anchored_rounds()
    assert events == facts["rounds"]
    chain.close()


def test_reopened_in_another_process(persisted):
    state, facts = persisted
    script = (
        "import json, sys\n"
        "from fedledger.chain import EmbeddedChain, LooseStudy\n"
        "chain = EmbeddedChain.open(sys.argv[1])\n"
        "rounds = LooseStudy(chain, sys.argv[2]).anchored_rounds()\n"
        "hashes = [chain.w3.eth.get_block(n)['hash'].hex() for n in range(chain.w3.eth.block_number + 1)]\n"
        "print(json.dumps({'models': [r.model for r, _ in rounds], 'hashes': hashes}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(state), facts["ledger"]], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(out.stdout)
    assert seen == {"models": [r.model for r, _ in facts["rounds"]], "hashes": facts["hashes"]}


def test_a_reopened_chain_keeps_growing(persisted, tmp_path):
    source, facts = persisted
    state = tmp_path / "chain"
    state.mkdir()
    for name in ("chain.json", "blocks.jsonl"):
        (state / name).write_bytes((source / name).read_bytes())
    chain = EmbeddedChain.open(state)
    study = facts["study"]
    ledger = LooseStudy(chain, facts["ledger"])
    ledger.anchor_round(study.coordinator, study.record(3, digest("model 2")))
    hashes = _block_hashes(chain)
    chain.close()
    again = EmbeddedChain.open(state)
    assert _block_hashes(again) == hashes
    assert [r.round for r, _ in LooseStudy(again, facts["ledger"]).anchored_rounds()] == [1, 2, 3]


def test_chain_survives_a_process_that_never_closed_it(tmp_path):
    """Each block is flushed as it is mined, so a crash loses nothing already confirmed."""
    state = tmp_path / "chain"
    script = (
        "import importlib.util, os, sys\n"
        # by path: a package installed as `tests` (neurokit2 ships one) would shadow the repo's
        "spec = importlib.util.spec_from_file_location('chain_conftest', 'tests/chain/conftest.py')\n"
        "conftest = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(conftest)\n"
        "set_up_study, digest = conftest.set_up_study, conftest.digest\n"
        "from fedledger.chain import EmbeddedChain\n"
        "chain = EmbeddedChain.create(sys.argv[1])\n"
        "study = set_up_study(chain)\n"
        "study.ledger.anchor_round(study.coordinator, study.record(1, digest('model 0')))\n"
        "print(study.ledger.address, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(state)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    chain = EmbeddedChain.open(state)
    assert LooseStudy(chain, out.stdout.strip()).round_count() == 1


def test_create_refuses_a_directory_that_holds_a_chain(persisted):
    with pytest.raises(ChainError, match="already holds a chain"):
        EmbeddedChain.create(persisted[0])


def test_open_without_a_chain_fails_clearly(tmp_path):
    with pytest.raises(ChainError, match="no readable embedded chain"):
        EmbeddedChain.open(tmp_path)


def test_open_chain_checks_the_description(persisted):
    state, facts = persisted
    with pytest.raises(ChainError, match="recorded on chain 1"):
        open_chain({**facts["description"], "chain_id": 1}, state)
    with pytest.raises(ChainError, match="unknown chain kind"):
        open_chain({"kind": "carrier pigeon"}, state)
    with pytest.raises(ChainError, match="no chain directory"):
        open_chain(facts["description"], None)


def _edit_line(lines: list[str], index: int, edit) -> None:
    block = json.loads(lines[index])
    edit(block)
    lines[index] = json.dumps(block)


def _flip_tx_byte(block):
    raw = bytearray.fromhex(block["transactions"][0])
    raw[-40] ^= 0x01
    block["transactions"][0] = raw.hex()


AT = 6   # blocks.jsonl line 7 = block 7 (block 1 funds every account): the last institution enrolled
TAMPERING = {
    "a transaction byte": lambda lines: _edit_line(lines, AT, _flip_tx_byte),
    "a transaction dropped": lambda lines: _edit_line(lines, AT, lambda b: b["transactions"].clear()),
    "a timestamp": lambda lines: _edit_line(lines, AT, lambda b: b.update(timestamp=b["timestamp"] + 1)),
    "a recorded hash": lambda lines: _edit_line(lines, AT, lambda b: b.update(hash="00" * 32)),
    "two blocks swapped": lambda lines: lines.__setitem__(slice(AT, AT + 2), [lines[AT + 1], lines[AT]]),
    "a garbled line": lambda lines: lines.__setitem__(AT, lines[AT][:-7]),
    "the last block removed": lambda lines: lines.pop(),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_an_altered_block_log_is_refused(persisted, tmp_path, how):
    state = tmp_path / "chain"
    state.mkdir()
    (state / "chain.json").write_bytes((persisted[0] / "chain.json").read_bytes())
    lines = (persisted[0] / "blocks.jsonl").read_text().splitlines()
    TAMPERING[how](lines)
    (state / "blocks.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ChainError, match=rf"persisted chain in .* (differs at block {AT + 1}|closed at block)") as caught:
        EmbeddedChain.open(state)
    assert "\n" not in str(caught.value)


def test_an_altered_genesis_record_is_refused(persisted, tmp_path):
    state = tmp_path / "chain"
    state.mkdir()
    (state / "blocks.jsonl").write_bytes((persisted[0] / "blocks.jsonl").read_bytes())
    meta = json.loads((persisted[0] / "chain.json").read_text())
    (state / "chain.json").write_text(json.dumps({**meta, "genesis_hash": "11" * 32}))
    with pytest.raises(ChainError, match="differs at block 0"):
        EmbeddedChain.open(state)


def test_persisted_files_are_plain_json_lines(persisted):
    lines = (persisted[0] / "blocks.jsonl").read_text().splitlines()
    assert len(lines) == len(persisted[1]["hashes"]) - 1   # every block but genesis
    assert all(set(json.loads(line)) == {"number", "timestamp", "transactions", "hash"} for line in lines)
    assert os.path.getsize(persisted[0] / "chain.json") < 1000
