"""The revm engine of the embedded chain: a node's checks and a node's gas (Hardhat's, exactly)."""

import sys
from pathlib import Path

import pytest
from eth_account import Account

from fedledger.chain import EmbeddedChain
from fedledger.chain.embedded import CHAIN_ID, FUNDER
from fedledger.config import config_from_dict
from fedledger.errors import ChainError, ConfigError
from fedledger.simulation import run_study

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import engine_gas  # noqa: E402


def _transfer(account, nonce: int, value: int, chain_id: int = CHAIN_ID, max_fee: int = 10**10, gas: int = 21_000):
    return account.sign_transaction({"to": "0x" + "22" * 20, "value": value, "gas": gas, "nonce": nonce,
                                     "maxFeePerGas": max_fee, "maxPriorityFeePerGas": 0,
                                     "chainId": chain_id}).raw_transaction


@pytest.mark.parametrize("case, why", [
    ("wrong chain", "chain"),
    ("nonce from the future", "nonce"),
    ("fee below the base fee", "base fee"),
    ("gas below the intrinsic", "intrinsic"),
    ("more than the balance", "afford"),
])
def test_raw_transactions_are_checked_as_a_node_checks_them(case, why):
    chain = EmbeddedChain.create(None, "revm")
    poor = Account.create()
    chain.fund([poor.address], 10**15)
    raw = {"wrong chain": _transfer(FUNDER, 1, 1, chain_id=31337),
           "nonce from the future": _transfer(FUNDER, 5, 1),
           "fee below the base fee": _transfer(FUNDER, 1, 1, max_fee=1),
           "gas below the intrinsic": _transfer(FUNDER, 1, 1, gas=20_000),
           "more than the balance": _transfer(poor, 0, 10**15)}[case]
    answer = chain.w3.provider.make_request("eth_sendRawTransaction", ["0x" + raw.hex()])
    assert why in answer["error"]["message"]
    assert chain.w3.eth.get_balance("0x" + "22" * 20) == 0


def test_a_persisted_revm_chain_replays_and_refuses_an_edit(tmp_path):
    chain = EmbeddedChain.create(tmp_path / "chain", "revm")
    chain.fund([Account.create().address for _ in range(3)], 10**18)
    head = chain.w3.eth.get_block("latest")["hash"]
    chain.close()
    reopened = EmbeddedChain.open(tmp_path / "chain")
    assert reopened.engine == "revm" and reopened.w3.eth.get_block("latest")["hash"] == head
    reopened.close()
    log = tmp_path / "chain" / "blocks.jsonl"
    log.write_text(log.read_text().replace('"timestamp":', '"timestamp":1', 1))
    with pytest.raises(ChainError, match="differs at block 1"):
        EmbeddedChain.open(tmp_path / "chain")


@pytest.mark.parametrize("architecture", engine_gas.ARCHITECTURES)
def test_every_transaction_of_a_study_costs_on_revm_what_it_costs_on_hardhat(architecture, tmp_path, hardhat_installed):
    from fedledger.deploy.devchain import HardhatNode

    with HardhatNode(tmp_path / "node.log") as node:
        rows = engine_gas.compare(architecture, tmp_path, node.url, rounds=2)
    functions = {row["label"] for row in rows}
    assert {"Consortium.add_member", "Consortium.constructor"} <= functions
    assert len(functions) >= {"loose": 5, "semi": 4, "full": 8}[architecture], functions
    assert [(row["label"], row["revm"]) for row in rows] == [(row["label"], row["hardhat"]) for row in rows]
    assert all(row["revm"][1] == 1 for row in rows)


def test_an_unknown_engine_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="engine"):
        config_from_dict({"chain": {"engine": "geth"}}, base_dir=tmp_path)
    with pytest.raises(ChainError, match="geth"):
        EmbeddedChain.create(None, "geth")


def test_semi_is_refused_on_revm_before_any_chain_exists(tmp_path):
    """revm cannot supply block hashes, so semi's committee draw could never be audited."""
    cfg = config_from_dict({"study": {"architecture": "semi", "rounds": 1}, "chain": {"engine": "revm"}},
                           base_dir=tmp_path)
    with pytest.raises(ConfigError, match="semi"):
        run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "chain").exists()
