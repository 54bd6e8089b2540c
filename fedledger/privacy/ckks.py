"""Homomorphic aggregation with CKKS (TenSEAL): the aggregator adds ciphertexts it cannot read.

The key material moves in explicit steps; none of it is a global variable:
1. **Generate.** One member runs `CkksKeys.generate()`.
2. **Publish.** It publishes the public context (`public_context()`: the public key, no secret
   key). Its digest (`context_digest`) is what a study would put on chain.
3. **Distribute.** It hands the secret context (`secret_context()`) to the other key-holding
   members over a sealed channel, and each loads it with `CkksKeys.load`.
4. **Encrypt.** Every member encrypts its sample-weighted parameters and its sample count with
   the public context (`encrypt`).
5. **Add.** The aggregator, holding only the public context, adds the ciphertexts (`add`).
6. **Decrypt.** A key holder decrypts the sum (`CkksKeys.decrypt`), and `weighted_mean` divides.

The public context carries the public key only. Sums need no relinearization or Galois keys, and
TenSEAL serializes the relinearization keys differently for every copy of a context (one loaded
from the secret context included); without them the public context is the same bytes from every
key holder, so its digest identifies the key set.

A ciphertext here is FedLedger's own format, not one TenSEAL vector. TenSEAL spreads a vector
longer than the slot count over several ciphertexts and prints a warning for each such vector,
so a model is cut into explicit chunks of at most `SLOTS` values, each one TenSEAL ciphertext.
Little-endian:

    magic b"FLCKKS" | format version (u8) | key digest (32 bytes, sha-256 of the public context)
    | number of values (u64) | number of chunks (u32) | each chunk's byte length (u64 each)
    | the chunks (TenSEAL CKKSVector serializations, in order)

The key digest is there because TenSEAL loads a ciphertext under any context with the same
parameters and decrypts it to noise; with it, a ciphertext from other keys is refused.

CKKS is approximate. A decrypted sum is off by about 1e-9 times its magnitude, so a model
aggregated this way is close to FedAvg's but not bit-identical to it. Only key holders can check
it, not an auditor holding just the public material.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from fedledger.errors import FedLedgerError

# 8192 slots x 2 moduli of 40 bits: 128-bit security (HE standard), about 1e-9 relative error,
# enough depth for additions (no multiplications are needed to sum).
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BITS = (60, 40, 40, 60)
SCALE_BITS = 40
SLOTS = POLY_MODULUS_DEGREE // 2          # values one CKKS ciphertext holds

_MAGIC = b"FLCKKS"
_VERSION = 1
_HEADER = struct.Struct("<6sB32sQI")      # magic, version, key digest, values, chunks
_CHUNK_LENGTH_BYTES = 8


class CkksError(FedLedgerError):
    """Homomorphic aggregation cannot proceed (wrong key material, mismatched ciphertexts)."""


def context_digest(public_context: bytes) -> str:
    """sha-256 of the public context: what members check the context they were given against."""
    return hashlib.sha256(public_context).hexdigest()


def _load_context(data: bytes, *, secret: bool) -> ts.Context:
    try:
        context = ts.context_from(data)
    except Exception as exc:  # noqa: BLE001 - TenSEAL's C++ errors arrive as assorted types
        raise CkksError(f"not a CKKS context: {exc}") from None
    if context.is_private() != secret:
        raise CkksError("expected a secret context (with the secret key)" if secret
                        else "a public context must not hold the secret key")
    return context


def _pack(key_digest: bytes, size: int, chunks: Sequence[bytes]) -> bytes:
    header = _HEADER.pack(_MAGIC, _VERSION, key_digest, size, len(chunks))
    lengths = struct.pack(f"<{len(chunks)}Q", *(len(c) for c in chunks))
    return b"".join([header, lengths, *chunks])


def _unpack(data: bytes) -> tuple[bytes, int, list[bytes]]:
    """(key digest, number of values, chunk bytes) of a ciphertext, every length checked."""
    if len(data) < _HEADER.size:
        raise CkksError(f"truncated CKKS ciphertext: {len(data)} bytes, the header alone is {_HEADER.size}")
    magic, version, key_digest, size, count = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CkksError("not a FedLedger CKKS ciphertext (wrong magic bytes)")
    if version != _VERSION:
        raise CkksError(f"CKKS ciphertext format version {version}, this FedLedger reads {_VERSION}")
    expected_count = -(-size // SLOTS)
    if size == 0 or count != expected_count:
        raise CkksError(f"CKKS ciphertext header announces {count} chunks for {size} values "
                        f"(expected {expected_count} of at most {SLOTS} values)")
    start = _HEADER.size + count * _CHUNK_LENGTH_BYTES
    if len(data) < start:
        raise CkksError(f"truncated CKKS ciphertext: {len(data)} bytes, its chunk table ends at {start}")
    lengths = struct.unpack_from(f"<{count}Q", data, _HEADER.size)
    if start + sum(lengths) != len(data):
        raise CkksError(f"CKKS ciphertext is {len(data)} bytes, its header announces {start + sum(lengths)}")
    chunks = []
    for length in lengths:
        chunks.append(data[start:start + length])
        start += length
    return key_digest, size, chunks


def describe(ciphertext: bytes) -> tuple[str, int]:
    """(digest of the public context it was made under, number of values) of a ciphertext, from
    its header alone (CkksError if the framing is wrong): what an aggregator checks before adding."""
    key_digest, size, _ = _unpack(ciphertext)
    return key_digest.hex(), size


def _vectors(context: ts.Context, key_digest: bytes, data: bytes) -> tuple[int, list[ts.CKKSVector]]:
    """The chunks of a ciphertext as TenSEAL vectors, refused unless made under `key_digest`."""
    digest, size, chunks = _unpack(data)
    if digest != key_digest:
        raise CkksError("CKKS ciphertext was encrypted under another context (its key digest differs)")
    vectors = []
    for i, chunk in enumerate(chunks):
        try:
            vector = ts.ckks_vector_from(context, chunk)
        except Exception as exc:  # noqa: BLE001 - as in _load_context
            raise CkksError(f"chunk {i} of the CKKS ciphertext is not a CKKS vector: {exc}") from None
        if vector.size() != min(SLOTS, size - i * SLOTS):
            raise CkksError(f"chunk {i} of the CKKS ciphertext holds {vector.size()} values, "
                            f"its header says {min(SLOTS, size - i * SLOTS)}")
        vectors.append(vector)
    return size, vectors


class CkksKeys:
    """A key holder's CKKS context, with the secret key."""

    def __init__(self, context: ts.Context) -> None:
        self._context = context
        self._key_digest = hashlib.sha256(self.public_context()).digest()

    @classmethod
    def generate(cls) -> CkksKeys:
        """Fresh keys: only one member runs this, the others `load` its secret context."""
        context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_MODULUS_DEGREE,
                             coeff_mod_bit_sizes=list(COEFF_MOD_BITS))
        context.global_scale = 2.0**SCALE_BITS
        return cls(context)

    @classmethod
    def load(cls, secret_context: bytes) -> CkksKeys:
        """A second key holder, from the secret context handed over sealed."""
        return cls(_load_context(secret_context, secret=True))

    def secret_context(self) -> bytes:
        """The whole context, secret key included: only ever sent sealed to another key holder."""
        return self._context.serialize(save_secret_key=True)

    def public_context(self) -> bytes:
        """The public key alone: enough to encrypt and add, the same bytes from every key holder."""
        return self._context.serialize(save_public_key=True, save_secret_key=False,
                                       save_galois_keys=False, save_relin_keys=False)

    def decrypt(self, ciphertext: bytes) -> np.ndarray:
        """The values of a ciphertext (`encrypt` or `add`) made under these keys."""
        _, vectors = _vectors(self._context, self._key_digest, ciphertext)
        try:
            return np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in vectors])
        except Exception as exc:  # noqa: BLE001 - as in _load_context
            raise CkksError(f"CKKS ciphertext cannot be decrypted: {exc}") from None


def encrypt(public_context: bytes, values: np.ndarray) -> bytes:
    """A member's vector, encrypted under the public context in chunks of at most `SLOTS` values."""
    context = _load_context(public_context, secret=False)
    flat = np.asarray(values, dtype=np.float64)
    if flat.ndim != 1 or flat.size == 0:
        raise CkksError(f"only a non-empty 1-D vector can be encrypted, not shape {flat.shape}")
    chunks = [ts.ckks_vector(context, flat[i:i + SLOTS]).serialize() for i in range(0, flat.size, SLOTS)]
    return _pack(hashlib.sha256(public_context).digest(), flat.size, chunks)


def add(public_context: bytes, ciphertexts: Sequence[bytes]) -> bytes:
    """The encrypted sum of the members' encrypted vectors, chunk by chunk; needs no secret key."""
    if not ciphertexts:
        raise CkksError("no ciphertexts to add")
    context = _load_context(public_context, secret=False)
    key_digest = hashlib.sha256(public_context).digest()
    size, total = _vectors(context, key_digest, ciphertexts[0])
    for i, ciphertext in enumerate(ciphertexts[1:], start=1):
        other_size, vectors = _vectors(context, key_digest, ciphertext)
        if other_size != size:
            raise CkksError(f"CKKS ciphertext {i} holds {other_size} values in {len(vectors)} chunks, "
                            f"ciphertext 0 holds {size} in {len(total)}")
        try:
            for chunk_sum, vector in zip(total, vectors, strict=True):
                chunk_sum.add_(vector)
        except Exception as exc:  # noqa: BLE001 - as in _load_context
            raise CkksError(f"CKKS ciphertext {i} cannot be added: {exc}") from None
    return _pack(key_digest, size, [v.serialize() for v in total])


def weighted_input(params: np.ndarray, num_samples: int) -> np.ndarray:
    """What a member encrypts: [num_samples x params, num_samples]."""
    return np.append(params.astype(np.float64) * num_samples, float(num_samples))


def weighted_mean(decrypted_sum: np.ndarray) -> np.ndarray:
    """The sample-weighted mean (float32) from a decrypted sum of `weighted_input` vectors."""
    return (decrypted_sum[:-1] / decrypted_sum[-1]).astype(np.float32)
