"""Canonical bytes for parameter vectors, named arrays and JSON, and strict decoding of them.

Digests of these bytes are anchored on chain and recomputed by auditors years later, so the bytes
must depend on the content only. We therefore write the safetensors format ourselves instead of
calling `safetensors.numpy.save`, whose layout could change between library versions. The
canonical form is what safetensors 0.8 writes without metadata: an 8-byte little-endian header
length, a compact JSON header (per tensor: dtype, shape, data_offsets), padded with spaces to a
multiple of 8, then the little-endian C-order data, tensors ordered I64, F64, F32, then by name.

Decoding parses with the safetensors library (bytes from other institutions are never unpickled),
checks the content, and finally requires the input to be exactly the canonical encoding of what
it decoded: metadata, other padding or another tensor order are refused, so one content has one
digest and no two parsers can read one artifact differently.

Which exception each path raises (every message is one line):
- decode_params: UpdateRejected("update is not a valid safetensors parameter vector: <why>")
- decode_arrays: UpdateRejected("data is not a valid safetensors array file: <why>")
- encode_params / encode_arrays: UpdateRejected("... cannot be encoded: <why>") for content the
  decoder would refuse (wrong dtype or rank, NaN/Inf, bad names), so nothing undecodable is stored
- canonical_json: StoreError("cannot encode as canonical JSON: <why>")
- parse_params / parse_arrays / parse_json: InvalidContent(<why>), for ArtifactStore, which
  reports it as ArtifactCorrupt naming the digest.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from fedledger.errors import StoreError, UpdateRejected
from fedledger.params import vector_problem

PARAMS_TENSOR = "params"
# Header lengths the decoder reads at all: a hostile header of a million empty tensors would
# otherwise cost seconds and gigabytes to parse. One float32 vector's header is under 100 bytes;
# a server optimizer's state has a handful of tensors.
MAX_PARAMS_HEADER = 256
MAX_ARRAYS_HEADER = 64 * 1024
# (kind, itemsize) -> (rank in the canonical order, safetensors dtype tag)
_DTYPES = {("i", 8): (0, "I64"), ("f", 8): (1, "F64"), ("f", 4): (2, "F32")}
# Names are restricted so that the JSON header needs no escaping (Python's and serde's differ).
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


class InvalidContent(ValueError):
    """Bytes or arrays that do not satisfy the codec's rules; the message is the reason.

    `kind` classifies it for rejection records: "format" (not canonical safetensors or JSON),
    "layout" (wrong tensor names, shapes or dtypes) or "values" (NaN or infinite).
    """

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _dtype_tag(arr: np.ndarray) -> tuple[int, str] | None:
    return _DTYPES.get((arr.dtype.kind, arr.dtype.itemsize))


def _encode(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Canonical safetensors bytes; the arrays must already have passed validation."""
    ordered = sorted(tensors.items(), key=lambda item: (_dtype_tag(item[1])[0], item[0]))
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, arr in ordered:
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _dtype_tag(arr)[1], "shape": [int(d) for d in arr.shape],
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    return _header_bytes(header) + b"".join(chunks)


def _header_bytes(header: Mapping[str, Any]) -> bytes:
    """The 8-byte length and the compact JSON header, padded with spaces to a multiple of 8."""
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def params_nbytes(count: int) -> int:
    """The length of the canonical encoding of a vector of `count` float32 parameters: what an
    update to a model of that size must measure, known before any byte of it is read."""
    header = {PARAMS_TENSOR: {"dtype": "F32", "shape": [count], "data_offsets": [0, 4 * count]}}
    return len(_header_bytes(header)) + 4 * count


def _load(data: bytes, max_header: int) -> dict[str, np.ndarray]:
    """Parse safetensors bytes whose header is at most `max_header` bytes (checked first)."""
    if len(data) < 8:
        raise InvalidContent(f"{len(data)} bytes: shorter than the 8-byte header length")
    (header,) = struct.unpack_from("<Q", data)
    if header > max_header:
        raise InvalidContent(f"its header claims {header:,} bytes, above the {max_header:,} this file may have")
    try:
        return safetensors.numpy.load(bytes(data))
    except SafetensorError as exc:
        raise InvalidContent(_one_line(exc)) from None
    except KeyError as exc:  # the numpy bridge has no type for some valid dtypes (BF16, F8...)
        raise InvalidContent(f"unsupported tensor dtype {exc.args[0]}", "layout") from None
    except (ValueError, TypeError) as exc:
        raise InvalidContent(_one_line(exc)) from None


def _array_problem(name: object, arr: object) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "__metadata__":
        return f"array name {name!r} is not 1-128 characters of A-Z a-z 0-9 _ . -"
    if not isinstance(arr, np.ndarray):
        return f"array {name!r} is a {type(arr).__name__}, expected a numpy array"
    if _dtype_tag(arr) is None:
        return f"array {name!r} has dtype {arr.dtype}, expected float32, float64 or int64"
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return f"array {name!r} contains NaN or infinite values"
    return None


def _kind(problem: str) -> str:
    """A decoded tensor's problem is about its values (NaN, Inf) or else about its layout."""
    return "values" if "NaN" in problem else "layout"


def _canonical(data: bytes, tensors: Mapping[str, np.ndarray]) -> None:
    if _encode(tensors) != bytes(data):
        raise InvalidContent("bytes are not in canonical form (metadata, padding or tensor order differ)")


def parse_params(data: bytes) -> np.ndarray:
    """Decode a canonical parameter vector, raising InvalidContent with the reason."""
    tensors = _load(data, MAX_PARAMS_HEADER)
    if list(tensors) != [PARAMS_TENSOR]:
        names = sorted(tensors)
        raise InvalidContent(f"holds {len(names)} tensors {names[:3]}{'...' if len(names) > 3 else ''}, "
                             f"expected exactly one named {PARAMS_TENSOR!r}", "layout")
    arr = tensors[PARAMS_TENSOR]
    problem = vector_problem(arr)
    if problem:
        raise InvalidContent(problem, _kind(problem))
    _canonical(data, tensors)
    return arr.astype(np.float32, copy=False)


def parse_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Decode a canonical file of named arrays, raising InvalidContent with the reason."""
    tensors = _load(data, MAX_ARRAYS_HEADER)
    for name in sorted(tensors):
        problem = _array_problem(name, tensors[name])
        if problem:
            raise InvalidContent(problem, _kind(problem))
    _canonical(data, tensors)
    return {name: tensors[name] for name in sorted(tensors)}


def encode_params(params: np.ndarray) -> bytes:
    """Canonical safetensors bytes of a finite, non-empty 1-D float32 vector."""
    problem = vector_problem(params)
    if problem:
        raise UpdateRejected(f"parameter vector cannot be encoded: {problem}")
    return _encode({PARAMS_TENSOR: params})


def decode_params(data: bytes) -> np.ndarray:
    """Decode untrusted bytes into a parameter vector; UpdateRejected says why they are refused."""
    try:
        return parse_params(data)
    except InvalidContent as exc:
        raise UpdateRejected(f"update is not a valid safetensors parameter vector: {exc}") from None


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Canonical safetensors bytes of named float32/float64/int64 arrays (any shape, finite)."""
    for name, arr in arrays.items():
        problem = _array_problem(name, arr)
        if problem:
            raise UpdateRejected(f"arrays cannot be encoded: {problem}")
    return _encode(arrays)


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Decode untrusted bytes into named arrays (sorted by name); UpdateRejected says why not."""
    try:
        return parse_arrays(data)
    except InvalidContent as exc:
        raise UpdateRejected(f"data is not a valid safetensors array file: {exc}") from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not allowed in canonical JSON")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, ASCII only, no NaN or Infinity."""
    try:
        return _dumps(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"cannot encode as canonical JSON: {_one_line(exc)}") from None


def parse_json(data: bytes) -> Any:
    """Decode canonical JSON, raising InvalidContent if the bytes are not exactly canonical."""
    try:
        obj = json.loads(bytes(data).decode("ascii"), parse_constant=_no_constants)
        canonical = _dumps(obj)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidContent(f"not JSON: {_one_line(exc)}") from None
    if canonical != bytes(data):
        raise InvalidContent("JSON is not in canonical form (key order, spacing or escapes differ)")
    return obj
