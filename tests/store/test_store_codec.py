"""The safetensors codec: canonical bytes, interoperable with the library, strict on untrusted input."""

import json
import pickle
import struct

import numpy as np
import pytest
import safetensors.numpy

from fedledger.errors import UpdateRejected
from fedledger.store import decode_arrays, decode_params, encode_arrays, encode_params
from fedledger.store.codec import params_nbytes

PREFIX = "update is not a valid safetensors parameter vector: "


def _file(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def test_canonical_form_is_pinned_independently_of_the_library():
    header = b'{"params":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}     '
    expected = struct.pack("<Q", 64) + header + struct.pack("<2f", 1.0, -2.5)
    assert encode_params(np.array([1.0, -2.5], np.float32)) == expected


@pytest.mark.parametrize("size", [1, 2, 3, 7, 10, 99, 1000, 12345])
def test_params_encoding_is_what_safetensors_writes_and_reads(size):
    params = np.random.default_rng(size).normal(size=size).astype(np.float32)
    data = encode_params(params)
    assert data == safetensors.numpy.save({"params": params})
    assert safetensors.numpy.load(data)["params"].tobytes() == params.tobytes()
    assert decode_params(data).tobytes() == params.tobytes()


def test_params_encoding_ignores_memory_layout():
    base = np.arange(20, dtype=np.float32)
    strided = base[::2]
    big_endian = strided.astype(">f4")
    assert encode_params(strided) == encode_params(big_endian) == encode_params(strided.copy())


def test_arrays_encoding_is_what_safetensors_writes():
    arrays = {"b2": np.arange(3, dtype=np.int64), "a2": np.linspace(0, 1, 5), "c": np.ones((2, 3), np.float32),
              "d": np.array(2.5, np.float32)}
    data = encode_arrays(arrays)
    assert data == safetensors.numpy.save(arrays)
    back = decode_arrays(data)
    assert list(back) == ["a2", "b2", "c", "d"]
    assert all(back[k].tobytes() == arrays[k].tobytes() and back[k].shape == arrays[k].shape for k in arrays)


class _Trap:
    """Unpickling this would create a file: proof that no decoder ever unpickles."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_payload_is_refused_without_being_unpickled(tmp_path):
    trap = tmp_path / "unpickled"
    payload = pickle.dumps(_Trap(str(trap)))
    with pytest.raises(UpdateRejected, match=PREFIX):
        decode_params(payload)
    with pytest.raises(UpdateRejected):
        decode_arrays(payload)
    with pytest.raises(UpdateRejected, match=PREFIX):
        decode_params(pickle.dumps(np.zeros(3, np.float32)))
    assert not trap.exists()


GOOD = encode_params(np.arange(5, dtype=np.float32))
BAD_INPUTS = {
    "empty": b"",
    "garbage": b"definitely not safetensors",
    "random": bytes(range(256)) * 4,
    "huge header length": b"\xff" * 8 + b"{}",
    "truncated header": GOOD[:20],
    "truncated data": GOOD[:-1],
    "trailing byte": GOOD + b"\x00",
    "wrong tensor name": safetensors.numpy.save({"weights": np.zeros(3, np.float32)}),
    "two tensors": safetensors.numpy.save({"params": np.zeros(3, np.float32), "extra": np.zeros(1, np.float32)}),
    "no tensor": safetensors.numpy.save({}),
    "float64": safetensors.numpy.save({"params": np.zeros(3)}),
    "float16": safetensors.numpy.save({"params": np.zeros(3, np.float16)}),
    "int32": safetensors.numpy.save({"params": np.zeros(3, np.int32)}),
    "bfloat16": _file({"params": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4),
    "2-D": safetensors.numpy.save({"params": np.zeros((2, 3), np.float32)}),
    "scalar": safetensors.numpy.save({"params": np.array(1.0, np.float32)}),
    "zero length": safetensors.numpy.save({"params": np.zeros(0, np.float32)}),
    "NaN": safetensors.numpy.save({"params": np.array([1.0, np.nan], np.float32)}),
    "Inf": safetensors.numpy.save({"params": np.array([-np.inf, 1.0], np.float32)}),
    "metadata": safetensors.numpy.save({"params": np.arange(5, dtype=np.float32)}, metadata={"k": "v"}),
    "other padding": _file({"params": {"dtype": "F32", "shape": [5], "data_offsets": [0, 20]}}, GOOD[-20:])
    .replace(b"}}  ", b"}}\t ", 1),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_decode_params_refuses_malformed_input(case):
    with pytest.raises(UpdateRejected, match=PREFIX) as info:
        decode_params(BAD_INPUTS[case])
    assert "\n" not in str(info.value)


def test_refusals_say_why():
    reasons = {"wrong tensor name": "expected exactly one named 'params'", "float64": "dtype float64",
               "2-D": r"shape \(2, 3\)", "NaN": "NaN or infinite", "metadata": "canonical form",
               "bfloat16": "unsupported tensor dtype BF16", "truncated data": "deserializing"}
    for case, reason in reasons.items():
        with pytest.raises(UpdateRejected, match=reason):
            decode_params(BAD_INPUTS[case])


def test_every_truncation_is_refused():
    for cut in range(len(GOOD)):
        with pytest.raises(UpdateRejected):
            decode_params(GOOD[:cut])


@pytest.mark.parametrize("arrays, reason", [
    ({"x": np.array([np.nan])}, "NaN"),
    ({"x": np.zeros(2, np.float16)}, "dtype float16"),
    ({"bad name": np.zeros(2)}, "array name"),
    ({"__metadata__": np.zeros(2)}, "array name"),
    ({"x": [1.0]}, "expected a numpy array"),
])
def test_encode_arrays_refuses_what_decode_would_refuse(arrays, reason):
    with pytest.raises(UpdateRejected, match=f"arrays cannot be encoded: .*{reason}"):
        encode_arrays(arrays)


@pytest.mark.parametrize("data", [
    safetensors.numpy.save({"x": np.array([np.inf])}),
    safetensors.numpy.save({"x": np.zeros(2, np.float16)}),
    safetensors.numpy.save({"x": np.zeros(2)}, metadata={"a": "b"}),
    b"junk",
])
def test_decode_arrays_is_strict(data):
    with pytest.raises(UpdateRejected, match="data is not a valid safetensors array file: "):
        decode_arrays(data)


def _empty_tensors(count: int) -> bytes:
    return _file({f"t{i:07d}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)})


def test_a_header_longer_than_the_file_may_have_is_refused_unparsed():
    """Issue 14, finding 6: a blob of a million empty tensors cost 13.9 s and 2 GB to parse and
    a 10.9-million-character reason. Headers are bounded before the parser sees them."""
    for decode, limit in ((decode_params, "256"), (decode_arrays, "65,536")):
        for blob in (_empty_tensors(100_000), struct.pack("<Q", 2**63 - 1) + b"{}"):
            with pytest.raises(UpdateRejected, match=rf"its header claims [\d,]+ bytes, above the {limit}") as info:
                decode(blob)
            assert len(str(info.value)) < 200
    with pytest.raises(UpdateRejected, match="shorter than the 8-byte header length"):
        decode_params(b"\x01\x02")
    # within the bound, a file of several tensors is named by its count and a few names
    with pytest.raises(UpdateRejected, match=r"holds 3 tensors \['t0000000', 't0000001', 't0000002'\], expected"):
        decode_params(_empty_tensors(3))


@pytest.mark.parametrize("count", [1, 14, 10_000, 123_457])
def test_the_size_of_an_update_is_known_before_it_is_read(count):
    assert params_nbytes(count) == len(encode_params(np.zeros(count, np.float32)))
