"""`fedledger keys new`, `consortium init`, `status` and `node` as commands, against a Hardhat node:
what they write, what they read back from the chain, and one clear line for every refusal."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.chain import SemiStudy, Consortium, Role, RpcChain

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "correct horse battery staple"


def fedledger(*args, env_password=True):
    env = {**os.environ, "FEDLEDGER_PASSWORD": PASSWORD} if env_password else \
        {k: v for k, v in os.environ.items() if k != "FEDLEDGER_PASSWORD"}
    return subprocess.run([sys.executable, "-m", "fedledger", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def one_clear_line(proc, fragment):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedledger: error: "), proc.stderr
    assert fragment in lines[0], lines[0]


def semi_study(tmp_path):
    text = (EXAMPLES / "compare_heart_disease.toml").read_text()
    path = tmp_path / "study.toml"
    path.write_text(text.replace("[study]\n", '[study]\narchitecture = "semi"\n', 1))
    return path


def make_roster(tmp_path, names, coordinator=False):
    """Keys made with `keys new`, and a roster of their addresses."""
    tables = []
    for i, name in enumerate((["coordinator"] if coordinator else []) + names):
        proc = fedledger("keys", "new", tmp_path / "keys" / f"{name}.json")
        assert proc.returncode == 0, proc.stderr
        address = proc.stdout.split()[0]
        role = 'role = "coordinator"\n' if name == "coordinator" else ""
        tables.append(f'[[member]]\nname = "{name}"\naddress = "{address}"\n'
                      f'endpoint = "https://127.0.0.1:{18700 + i}"\n{role}')
    roster = tmp_path / "roster.toml"
    roster.write_text("\n".join(tables))
    return roster


SITES = ["cleveland", "hungarian", "switzerland", "va"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, hardhat_url):
    tmp = tmp_path_factory.mktemp("deployed")
    roster = make_roster(tmp, SITES)
    proc = fedledger("consortium", "init", roster, "--config", semi_study(tmp), "--rpc", hardhat_url,
                     "--out", tmp / "consortium", "--admin-keystore", tmp / "keys" / "admin.json")
    assert proc.returncode == 0, proc.stderr
    return tmp


def test_init_enrols_the_roster_and_writes_the_consortium_file(deployed, hardhat_url):
    doc = json.loads((deployed / "consortium" / "consortium.json").read_text())
    assert doc["architecture"] == "semi" and [m["name"] for m in doc["members"]] == SITES
    backend = RpcChain(hardhat_url)
    consortium = Consortium(backend, doc["contracts"]["consortium"])
    on_chain = {m.name: m for m in consortium.members()}
    for member in doc["members"]:
        assert on_chain[member["name"]].address == member["address"]
        assert on_chain[member["name"]].roles == Role.INSTITUTION
        assert backend.w3.eth.get_balance(member["address"]) > 0          # funded for gas
    study = SemiStudy(backend, doc["contracts"]["ledger"])
    assert study.roster() == [m["address"] for m in doc["members"]]
    assert study.config_digest() == doc["config_digest"] and study.initial_model() == doc["initial_model"]
    run = json.loads((deployed / "consortium" / "run.json").read_text())
    assert run["peers"] == [m["endpoint"] for m in doc["members"]]
    assert run["peer_members"] == {m["endpoint"]: m["address"] for m in doc["members"]}
    assert oct((deployed / "keys" / "admin.json").stat().st_mode & 0o777) == "0o600"


def test_status_reads_the_open_round_from_the_chain(deployed):
    proc = fedledger("status", deployed / "consortium", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["open_round"], doc["phase"], doc["finished"]) == (1, "committing", 0)
    assert [m["name"] for m in doc["members"] if m["roles"] == "INSTITUTION"] == SITES
    assert all(m["node"] == "down" and not m["committed"] and m["reputation"] == 100
               for m in doc["members"] if m["roles"] == "INSTITUTION")
    text = fedledger("status", deployed / "consortium").stdout
    assert "round 1 of 15: committing" in text and "cleveland" in text


def node_file(deployed, name, key=None, **extra):
    lines = [f'name = "{name}"', 'consortium = "consortium"', f'keystore = "keys/{key or name}.json"',
             'state_dir = "state"', *(f"{k} = {json.dumps(v)}" for k, v in extra.items())]
    path = deployed / f"{name}-{key or name}.toml"
    path.write_text("[node]\n" + "\n".join(lines) + "\n")
    return path


def test_node_refuses_another_members_key(deployed):
    one_clear_line(fedledger("node", node_file(deployed, "cleveland", key="va")),
                   "belongs to va, not cleveland")


def test_node_refuses_a_wrong_password(deployed):
    (deployed / "wrong-password").write_text("not it\n")
    one_clear_line(fedledger("node", node_file(deployed, "va", password_file="wrong-password")), "wrong password")


def test_node_without_a_password_says_how_to_give_one(deployed):
    one_clear_line(fedledger("node", node_file(deployed, "va"), env_password=False),
                   "set the environment variable FEDLEDGER_PASSWORD")


def test_node_refuses_a_consortium_file_whose_config_was_changed(deployed, tmp_path):
    copy = tmp_path / "consortium"
    copy.mkdir()
    doc = json.loads((deployed / "consortium" / "consortium.json").read_text())
    doc["config"]["training"]["lr"] = 0.5
    (copy / "consortium.json").write_text(json.dumps(doc))
    node = tmp_path / "va.toml"
    node.write_text(f'[node]\nname = "va"\nconsortium = "{copy}"\nkeystore = "{deployed}/keys/va.json"\n'
                    f'state_dir = "{tmp_path}/state"\n')
    one_clear_line(fedledger("node", node), "does not hash to its config_digest")


def test_init_refuses_a_loose_roster_without_a_coordinator(tmp_path, hardhat_url):
    roster = make_roster(tmp_path, SITES[:2])
    study = tmp_path / "loose.toml"
    study.write_text((EXAMPLES / "fed_heart_disease.toml").read_text())
    one_clear_line(fedledger("consortium", "init", roster, "--config", study, "--rpc", hardhat_url, "--out",
                             tmp_path / "c", "--admin-keystore", tmp_path / "admin.json"),
                   'needs exactly one member with role = "coordinator"')
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_init_without_a_chain_is_one_clear_line(tmp_path):
    roster = make_roster(tmp_path, SITES[:2])
    one_clear_line(fedledger("consortium", "init", roster, "--config", semi_study(tmp_path), "--rpc",
                             "http://127.0.0.1:9", "--out", tmp_path / "c", "--admin-keystore",
                             tmp_path / "admin.json"), "no Ethereum JSON-RPC node answers")


def test_init_refuses_simulated_attacks_and_faults(tmp_path):
    roster = make_roster(tmp_path, SITES[:2])
    study = semi_study(tmp_path)
    base = study.read_text()
    for section in ('[attack]\nkind = "sign_flip"\nfraction = 0.5\n', "[faults]\nsilent = 1\n",
                    "[faults]\ndropout = 0.1\n", "[faults]\nstraggler = 0.1\n"):
        study.write_text(base + "\n" + section)
        one_clear_line(fedledger("consortium", "init", roster, "--config", study, "--rpc", "http://127.0.0.1:9",
                                 "--out", tmp_path / "c", "--admin-keystore", tmp_path / "admin.json"),
                       "a deployed node runs its institution's part honestly" if "attack" in section
                       else "a deployed node runs its part honestly")
