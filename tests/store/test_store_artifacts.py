"""ArtifactStore: content addressing, atomic idempotent writes, re-hashing on every read."""

import os

import numpy as np
import pytest

from fedledger.errors import ArtifactCorrupt, ArtifactMissing, StoreError, UpdateRejected
from fedledger.store import ArtifactStore, sha256_hex


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "store")


def _blob(store, digest):
    return store.root / digest[:2] / digest[2:]


def test_digest_format_is_lowercase_hex_sha256():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_put_get_roundtrip_and_sharded_layout(tmp_path):
    store = ArtifactStore(tmp_path / "a" / "b")  # creates missing parents
    digest = store.put(b"hello")
    assert digest == sha256_hex(b"hello")
    assert _blob(store, digest).read_bytes() == b"hello"
    assert store.get(digest) == b"hello"
    assert store.has(digest) and store.digests() == [digest]


def test_only_the_owner_can_read_the_store(store):
    """Stored updates are patient-derived: no other user of the machine reads them (issue 14,
    finding 12: blobs were world-readable)."""
    digest = store.put(b"an update")
    for path in (store.root, _blob(store, digest).parent, _blob(store, digest)):
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)


def test_put_is_idempotent_and_leaves_no_temporary_files(store):
    first = store.put(b"same bytes")
    mtime = _blob(store, first).stat().st_mtime_ns
    assert store.put(b"same bytes") == first
    assert _blob(store, first).stat().st_mtime_ns == mtime  # not rewritten
    assert sorted(p.name for p in _blob(store, first).parent.iterdir()) == [first[2:]]


def test_digests_lists_every_blob_sorted_and_skips_stray_files(store):
    digests = sorted(store.put(bytes([i])) for i in range(20))
    (_blob(store, digests[0]).parent / ".tmp-interrupted").write_bytes(b"partial")
    (store.root / "README").write_text("not a blob")
    assert store.digests() == digests


def test_missing_artifact(store):
    digest = sha256_hex(b"never stored")
    assert not store.has(digest)
    with pytest.raises(ArtifactMissing, match=f"artifact {digest} is not in the store"):
        store.get(digest)


def test_one_flipped_byte_is_detected_on_read_and_put_repairs_it(store):
    data = os.urandom(1000)
    digest = store.put(data)
    path = _blob(store, digest)
    damaged = bytearray(data)
    damaged[500] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactCorrupt, match=f"artifact {digest} is corrupt: content hashes to {sha256_hex(damaged)}"):
        store.get(digest)
    with pytest.raises(ArtifactCorrupt):
        store.get_params(digest)
    assert store.put(data) == digest
    assert store.get(digest) == data


@pytest.mark.parametrize("bad", ["0x" + "ab" * 32, "AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, "",
                                 "../" * 21 + "a", None, b"ab" * 32, 12])
def test_malformed_digest_is_a_clear_store_error(store, bad):
    for call in (store.get, store.has, store.get_params, store.get_json, store.get_arrays):
        with pytest.raises(StoreError, match="invalid digest .*expected 64 lowercase hex") as info:
            call(bad)
        assert type(info.value) is StoreError


def test_params_roundtrip_bit_exact(store):
    params = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    params[0] = -0.0
    digest = store.put_params(params)
    back = store.get_params(digest)
    assert back.dtype == np.float32 and back.tobytes() == params.tobytes()
    assert store.put_params(params.copy()) == digest


def test_put_params_refuses_what_get_params_would_refuse(store):
    for bad in [np.zeros(3), np.zeros((2, 2), np.float32), np.array([np.nan], np.float32), [1.0, 2.0]]:
        with pytest.raises(UpdateRejected, match="parameter vector cannot be encoded"):
            store.put_params(bad)
    assert store.digests() == []


def test_get_params_of_a_non_parameter_blob_is_corrupt(store):
    digest = store.put_json({"not": "params"})
    with pytest.raises(ArtifactCorrupt, match=f"artifact {digest} is corrupt: not a valid parameter vector"):
        store.get_params(digest)


def test_arrays_roundtrip_and_digest_ignores_insertion_order(store):
    arrays = {"v": np.arange(4, dtype=np.float64) / 3, "m": np.full(4, -1.5), "step": np.array([7], np.int64),
              "w": np.ones((2, 3), np.float32)}
    digest = store.put_arrays(arrays)
    assert store.put_arrays(dict(reversed(arrays.items()))) == digest
    back = store.get_arrays(digest)
    assert list(back) == sorted(arrays)
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape
        assert back[name].tobytes() == arr.tobytes()


def test_json_is_canonical_and_roundtrips(store):
    obj = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": -0.0}, "c": 10**20}
    digest = store.put_json(obj)
    assert store.put_json({"c": 10**20, "a": {"y": -0.0, "z": "é"}, "b": [1, 2.5, None, True]}) == digest
    assert store.get(digest) == b'{"a":{"y":-0.0,"z":"\\u00e9"},"b":[1,2.5,null,true],"c":100000000000000000000}'
    assert store.get_json(digest) == obj


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}, {1: 2, "1": 3}])
def test_put_json_refuses_what_is_not_canonical_json(store, bad):
    with pytest.raises(StoreError, match="cannot encode as canonical JSON"):
        store.put_json(bad)


@pytest.mark.parametrize("raw", [b'{"a": 1}', b'{"b":1,"a":2}', b'{"a":NaN}', b'{"a":1,"a":2}', b"\xff", b"[1,",
                                 "{\"a\":\"é\"}".encode()])
def test_get_json_refuses_non_canonical_blobs(store, raw):
    digest = store.put(raw)
    with pytest.raises(ArtifactCorrupt, match=f"artifact {digest} is corrupt: not a valid canonical JSON"):
        store.get_json(digest)
