"""The files of a deployment: keystores, passwords, rosters, node files, journals, the consortium
file, and the signed updates nodes exchange."""

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from fedledger.crypto import UpdateCommitment, recover_signer, sign_commitment
from fedledger.deploy.consortium import (
    CONSORTIUM_FILE,
    CONSORTIUM_FORMAT,
    load_consortium,
    load_roster,
)
from fedledger.deploy.journal import read_entry, write_entry
from fedledger.deploy.keys import (
    PASSWORD_ENV,
    create_keystore,
    load_keystore,
    read_password,
)
from fedledger.deploy.node import load_node_config
from fedledger.errors import ConfigError, UpdateRejected
from fedledger.protocol.messages import SignedUpdate
from fedledger.store import sha256_hex

# --- keystores and passwords ---

SECRET = "a long s3cret phrase"


@pytest.fixture(scope="module")
def keystore(tmp_path_factory):
    """(path, account) of one keystore with password SECRET (scrypt is slow: made once)."""
    path = tmp_path_factory.mktemp("keys") / "node.key.json"
    return path, create_keystore(path, SECRET)


def test_keystore_round_trips_the_key(keystore):
    path, account = keystore
    loaded = load_keystore(path, SECRET)
    assert loaded.address == account.address and loaded.key == account.key
    assert json.loads(path.read_text())["address"].lower() == account.address[2:].lower()
    assert account.key.hex().removeprefix("0x") not in path.read_text()  # encrypted, not in the clear


def test_keystore_file_is_readable_by_its_owner_only(keystore):
    assert stat.S_IMODE(keystore[0].stat().st_mode) == 0o600


def test_wrong_password_is_a_config_error(keystore):
    with pytest.raises(ConfigError, match="wrong password"):
        load_keystore(keystore[0], "not it")


def test_keystore_is_never_overwritten(keystore):
    path, _ = keystore
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        create_keystore(path, "another long password")
    assert path.read_bytes() == before


def test_a_short_password_is_refused(tmp_path):
    """Issue 14, finding 12: `keys new` took a one-character password."""
    with pytest.raises(ConfigError, match="a keystore password needs at least 12 characters, this one has 1"):
        create_keystore(tmp_path / "k.json", "x")
    assert not (tmp_path / "k.json").exists()


def test_missing_or_malformed_keystore_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the keystore"):
        load_keystore(tmp_path / "absent.json", "pw")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_keystore(tmp_path / "text.json", "pw")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a valid keystore"):
        load_keystore(tmp_path / "empty.json", "pw")


def test_password_from_environment(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    monkeypatch.setenv("OTHER_PW", "other")
    assert read_password() == "from-env"
    assert read_password("OTHER_PW") == "other"


def test_password_from_file_without_its_trailing_newline(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    (tmp_path / "pw").write_text("from file \n")
    assert read_password(file=tmp_path / "pw") == "from file "  # the file wins; inner spaces are kept
    (tmp_path / "crlf").write_bytes(b"windows\r\n")
    assert read_password(file=tmp_path / "crlf") == "windows"


def test_no_password_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"set the environment variable {PASSWORD_ENV}"):
        read_password()
    monkeypatch.setenv(PASSWORD_ENV, "")
    with pytest.raises(ConfigError, match="no keystore password"):
        read_password()
    with pytest.raises(ConfigError, match="cannot read the password file"):
        read_password(file=tmp_path / "absent")


# --- rosters ---

ADDRESSES = [Account.from_key(i.to_bytes(32, "big")).address for i in range(1, 5)]   # fixed: test ids name them


def _roster(tmp_path, *members, extra=""):
    lines = []
    for member in members:
        lines.append("[[member]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in member.items()]
    path = tmp_path / "roster.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _member(i, **changes):
    return {"name": f"inst{i}", "address": ADDRESSES[i].lower(), "endpoint": f"https://10.0.0.{i}:8701", **changes}


def test_valid_roster(tmp_path):
    auditor = {"name": "regulator", "address": ADDRESSES[3].lower(), "role": "auditor"}    # runs no node
    path = _roster(tmp_path, _member(0, endpoint="https://10.0.0.0:8701/"), _member(1, role="coordinator"),
                   _member(2, endpoint="https://node.example.org:443"), auditor)
    members = load_roster(path)
    assert [m.name for m in members] == ["inst0", "inst1", "inst2", "regulator"]
    assert [m.address for m in members] == ADDRESSES[:4]  # checksummed
    assert [m.endpoint for m in members] == ["https://10.0.0.0:8701", "https://10.0.0.1:8701",
                                             "https://node.example.org:443", ""]
    assert [m.role for m in members] == ["institution", "coordinator", "institution", "auditor"]


@pytest.mark.parametrize("members, message", [
    ([], "lists no members"),
    ([_member(0, port=1)], r"member 1: unknown key\(s\) port"),
    ([_member(0), _member(1, name="")], "member 2: name must be a non-empty string"),
    ([_member(0, address=None)], "address must be a non-empty string"),
    ([_member(0, address="0x1234")], "'0x1234' is not an Ethereum address"),
    ([_member(0, endpoint="https://10.0.0.1")], "must be an https URL with a port"),
    ([_member(0, endpoint="ftp://10.0.0.1:21")], "must be an https URL with a port"),
    ([_member(0, endpoint="10.0.0.1:8701")], "must be an https URL with a port"),
    ([_member(0, endpoint="https://10.0.0.1:99999")], "must be an https URL with a port"),
    ([_member(0, endpoint="https://10.0.0.1:abc")], "must be an https URL with a port"),
    ([_member(0, endpoint="http://10.0.0.1:8701")], r"must be an https URL with a port \(nodes serve TLS only\)"),
    ([_member(0, role="auditor")], "an auditor runs no node: remove its endpoint"),
    ([_member(0, role="observer")], "role 'observer' must be one of institution, coordinator, auditor"),
    ([_member(0), _member(1, name="inst0")], "name listed more than once: inst0"),
    ([_member(0), _member(1, address=ADDRESSES[0])], f"address listed more than once: {ADDRESSES[0]}"),
    ([_member(0), _member(1, endpoint="https://10.0.0.0:8701/")],
     "endpoint listed more than once: https://10.0.0.0:8701"),
])
def test_invalid_roster_is_a_config_error(tmp_path, members, message):
    members = [{k: v for k, v in m.items() if v is not None} for m in members]
    with pytest.raises(ConfigError, match=message):
        load_roster(_roster(tmp_path, *members))


def test_unreadable_roster_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="roster not found"):
        load_roster(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_roster(_roster(tmp_path, extra="[[member]\n"))
    with pytest.raises(ConfigError, match="lists no members"):
        load_roster(_roster(tmp_path, extra='member = "x"\n'))
    with pytest.raises(ConfigError, match="member 1 is not a table"):
        load_roster(_roster(tmp_path, extra="member = [1]\n"))


# --- node files ---


def _node_file(tmp_path, body):
    path = tmp_path / "nodes" / "node.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return path


NODE = '''[node]
name = "cleveland"
consortium = "../consortium"
keystore = "cleveland.key.json"
state_dir = "state"
'''


def test_node_file_paths_are_relative_to_it(tmp_path):
    path = _node_file(tmp_path, NODE + 'password_file = "pw.txt"\ndata = "c.csv"\nlisten = "0.0.0.0:9000"\n'
                                       "poll_seconds = 2\n")
    cfg = load_node_config(path)
    base = tmp_path / "nodes"
    assert cfg.name == "cleveland"
    assert cfg.consortium == base / "../consortium"
    assert cfg.keystore == base / "cleveland.key.json"
    assert cfg.state_dir == base / "state"
    assert cfg.password_file == base / "pw.txt" and cfg.data == base / "c.csv"
    assert cfg.listen == "0.0.0.0:9000" and cfg.poll_seconds == 2.0


def test_node_file_defaults(tmp_path):
    cfg = load_node_config(_node_file(tmp_path, NODE))
    assert (cfg.password_env, cfg.password_file, cfg.listen, cfg.data, cfg.poll_seconds) == (None, None, None,
                                                                                             None, 0.5)


@pytest.mark.parametrize("body, message", [
    ('name = "x"\n', "has no \\[node\\] table"),
    (NODE.replace('name = "cleveland"\n', ""), "\\[node\\].name must be a non-empty string"),
    (NODE.replace('state_dir = "state"', "state_dir = 3"), "\\[node\\].state_dir must be a non-empty string"),
    (NODE + 'port = 8701\n', "unknown \\[node\\] key\\(s\\) port"),
    (NODE + "poll_seconds = 0\n", "poll_seconds must be a number of seconds"),
    (NODE + "poll_seconds = 61\n", "poll_seconds must be a number of seconds"),
    (NODE + 'poll_seconds = "1"\n', "poll_seconds must be a number of seconds"),
    (NODE + "poll_seconds = true\n", "poll_seconds must be a number of seconds"),
    (NODE + "data = 5\n", "\\[node\\].data must be a non-empty string"),
    (NODE + "password_env = 5\n", "\\[node\\].password_env must be a non-empty string"),
    (NODE + 'listen = ""\n', "\\[node\\].listen must be a non-empty string"),
    (NODE + "[node\n", "not valid TOML"),
])
def test_invalid_node_file_is_a_config_error(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_node_config(_node_file(tmp_path, body))


def test_missing_node_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="node file not found"):
        load_node_config(tmp_path / "absent.toml")


# --- journal ---


def test_journal_round_trip(tmp_path):
    journal = tmp_path / "state" / "journal"
    assert read_entry(journal, 1, "update") is None
    write_entry(journal, 1, "update", {"update": "ab" * 32, "num_samples": 7})
    write_entry(journal, 2, "update", {"update": "cd" * 32})
    write_entry(journal, 1, "senders", {"senders": []})
    write_entry(journal, 1, "update", {"update": "ef" * 32, "num_samples": 8})  # replaced whole
    assert read_entry(journal, 1, "update") == {"update": "ef" * 32, "num_samples": 8}
    assert read_entry(journal, 2, "update") == {"update": "cd" * 32}
    assert read_entry(journal, 1, "senders") == {"senders": []}
    assert read_entry(journal, 3, "update") is None
    assert sorted(p.name for p in journal.iterdir()) == ["1.senders.json", "1.update.json", "2.update.json"]
    with pytest.raises(ValueError, match="not a notice kind"):     # a kind never names another path
        read_entry(journal, 1, "../../keys")


# --- signed updates ---


@pytest.fixture(scope="module")
def signed():
    account = Account.create()
    commitment = UpdateCommitment(chain_id=31337, ledger=Account.create().address, round=3,
                                  parent_model=sha256_hex(b"parent"), update=sha256_hex(b"update"), num_samples=120)
    return SignedUpdate(account.address, commitment, sign_commitment(account, commitment))


def test_signed_update_round_trips_through_json(signed):
    doc = json.loads(json.dumps(signed.to_dict()))
    again = SignedUpdate.from_dict(doc)
    assert again == signed
    assert recover_signer(again.commitment, again.signature) == signed.institution


def test_signed_update_institution_is_checksummed(signed):
    doc = signed.to_dict()
    doc["institution"] = doc["institution"].lower()
    assert SignedUpdate.from_dict(doc).institution == signed.institution


def _without(doc, key):
    return {k: v for k, v in doc.items() if k != key}


def _with_commitment(doc, **changes):
    return {**doc, "commitment": {**doc["commitment"], **changes}}


@pytest.mark.parametrize("change", [
    lambda d: _without(d, "commitment"),
    lambda d: _without(d, "signature"),
    lambda d: _without(d, "institution"),
    lambda d: {**d, "commitment": _without(d["commitment"], "num_samples")},
    lambda d: {**d, "commitment": [1, 2, 3]},
    lambda d: _with_commitment(d, round="3"),
    lambda d: _with_commitment(d, num_samples=True),
    lambda d: _with_commitment(d, chain_id=31337.0),
    lambda d: _with_commitment(d, ledger=None),
    lambda d: _with_commitment(d, parent_model="0x" + "ab" * 32),
    lambda d: _with_commitment(d, update="AB" * 32),
    lambda d: _with_commitment(d, update="ab" * 31),
    lambda d: {**d, "signature": 1234},
    lambda d: {**d, "institution": "not an address"},
    lambda d: None,
    lambda d: [d],
    lambda d: "a string",
    lambda d: 42,
])
def test_malformed_signed_update_is_rejected(signed, change):
    with pytest.raises(UpdateRejected, match="malformed signed update"):
        SignedUpdate.from_dict(change(signed.to_dict()))


# --- the consortium file ---


def test_unreadable_consortium_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the consortium file"):
        load_consortium(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match=f"cannot read the consortium file {tmp_path / CONSORTIUM_FILE}"):
        load_consortium(tmp_path)  # a directory: its consortium.json
    (tmp_path / CONSORTIUM_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_consortium(tmp_path)


@pytest.mark.parametrize("doc", [{"format": "fedledger.run/1"}, {}, [CONSORTIUM_FORMAT], "x"])
def test_wrong_format_is_a_config_error(tmp_path, doc):
    (tmp_path / CONSORTIUM_FILE).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"is not a {CONSORTIUM_FORMAT} file"):
        load_consortium(tmp_path / CONSORTIUM_FILE)


def _consortium_doc():
    return {"format": CONSORTIUM_FORMAT, "chain": {"kind": "rpc", "rpc_url": "http://127.0.0.1:8545",
                                                    "chain_id": 31337},
            "contracts": {"consortium": ADDRESSES[0], "ledger": ADDRESSES[1]}, "architecture": "loose",
            "config": {"study": {"name": "demo"}}, "config_digest": sha256_hex(b"config"),
            "initial_model": sha256_hex(b"model"), "num_features": 13,
            "members": [{"name": "a", "address": ADDRESSES[0], "endpoint": "http://127.0.0.1:1",
                         "role": "coordinator"},
                        {"name": "b", "address": ADDRESSES[1], "endpoint": "http://127.0.0.1:2"}]}


def test_consortium_file_loads(tmp_path):
    (tmp_path / CONSORTIUM_FILE).write_text(json.dumps(_consortium_doc()))
    consortium = load_consortium(tmp_path)
    assert consortium.architecture == "loose" and consortium.num_features == 13
    assert [m.name for m in consortium.institutions] == ["b"]
    assert consortium.member(ADDRESSES[1].lower()).name == "b"
    with pytest.raises(ConfigError, match="is not a member"):
        consortium.member(ADDRESSES[2])


@pytest.mark.parametrize("change", [
    lambda d: _without(d, "members"),
    lambda d: _without(d, "num_features"),
    lambda d: {**d, "members": [{"name": "a"}]},
    lambda d: {**d, "members": [{**d["members"][0], "colour": "red"}]},
    lambda d: {**d, "members": ["a"]},
])
def test_incomplete_consortium_file_is_a_config_error(tmp_path, change):
    path = tmp_path / CONSORTIUM_FILE
    path.write_text(json.dumps(change(_consortium_doc())))
    with pytest.raises(ConfigError, match="is incomplete or malformed"):
        load_consortium(Path(path))
