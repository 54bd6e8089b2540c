"""Homomorphic aggregation with CKKS (TenSEAL): the aggregator adds ciphertexts it cannot read.

The key material moves in explicit steps; none of it is a global variable:
1. **Generate.** One member runs `CkksKeys.generate()`.
2. **Publish.** It publishes the public context (`public_context()`: encryption and evaluation
   keys, no secret key). Its digest (`context_digest`) is what a study would put on chain.
3. **Distribute.** It hands the secret context (`secret_context()`) to the other key-holding
   members over a sealed channel, and each loads it with `CkksKeys.load`.
4. **Encrypt.** Every member encrypts its sample-weighted parameters and its sample count with
   the public context (`encrypt`).
5. **Add.** The aggregator, holding only the public context, adds the ciphertexts (`add`).
6. **Decrypt.** A key holder decrypts the sum (`CkksKeys.decrypt`), and `weighted_mean` divides.

CKKS is approximate. A decrypted sum is off by about 1e-9 times its magnitude, so a model
aggregated this way is close to FedAvg's but not bit-identical to it. Only key holders can check
it, not an auditor holding just the public material.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from fedledger.errors import FedLedgerError

# 8192 slots x 2 moduli of 40 bits: 128-bit security (HE standard), about 1e-9 relative error,
# enough depth for additions (no multiplications are needed to sum).
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BITS = (60, 40, 40, 60)
SCALE_BITS = 40


class CkksError(FedLedgerError):
    """Homomorphic aggregation cannot proceed (wrong key material, mismatched ciphertexts)."""


def context_digest(public_context: bytes) -> str:
    """sha-256 of the public context: what members check the context they were given against."""
    return hashlib.sha256(public_context).hexdigest()


def _load_context(data: bytes, *, secret: bool) -> ts.Context:
    try:
        context = ts.context_from(data)
    except Exception as exc:      # TenSEAL raises bare exceptions for malformed bytes
        raise CkksError(f"not a CKKS context: {exc}") from None
    if context.is_private() != secret:
        raise CkksError("expected a secret context (with the secret key)" if secret
                        else "a public context must not hold the secret key")
    return context


class CkksKeys:
    """A key holder's CKKS context, with the secret key."""

    def __init__(self, context: ts.Context) -> None:
        self._context = context

    @classmethod
    def generate(cls) -> CkksKeys:
        context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_MODULUS_DEGREE,
                             coeff_mod_bit_sizes=list(COEFF_MOD_BITS))
        context.global_scale = 2.0**SCALE_BITS
        return cls(context)

    @classmethod
    def load(cls, secret_context: bytes) -> CkksKeys:
        return cls(_load_context(secret_context, secret=True))

    def secret_context(self) -> bytes:
        """The whole context, secret key included: only ever sent sealed to another key holder."""
        return self._context.serialize(save_secret_key=True)

    def public_context(self) -> bytes:
        public = self._context.copy()
        public.make_context_public()
        return public.serialize()

    def decrypt(self, ciphertext: bytes) -> np.ndarray:
        try:
            vector = ts.ckks_vector_from(self._context, ciphertext)
        except Exception as exc:
            raise CkksError(f"not a CKKS ciphertext of this context: {exc}") from None
        return np.array(vector.decrypt(), dtype=np.float64)


def encrypt(public_context: bytes, values: np.ndarray) -> bytes:
    """A member's vector, encrypted under the public context."""
    context = _load_context(public_context, secret=False)
    return ts.ckks_vector(context, np.asarray(values, dtype=np.float64)).serialize()


def add(public_context: bytes, ciphertexts: Sequence[bytes]) -> bytes:
    """The encrypted sum of the members' encrypted vectors; needs no secret key."""
    if not ciphertexts:
        raise CkksError("no ciphertexts to add")
    context = _load_context(public_context, secret=False)
    try:
        vectors = [ts.ckks_vector_from(context, c) for c in ciphertexts]
        total = vectors[0]
        for v in vectors[1:]:
            total = total + v
    except Exception as exc:
        raise CkksError(f"ciphertexts cannot be added: {exc}") from None
    return total.serialize()


def weighted_input(params: np.ndarray, num_samples: int) -> np.ndarray:
    """What a member encrypts: [num_samples x params, num_samples]."""
    return np.append(params.astype(np.float64) * num_samples, float(num_samples))


def weighted_mean(decrypted_sum: np.ndarray) -> np.ndarray:
    """The sample-weighted mean (float32) from a decrypted sum of `weighted_input` vectors."""
    return (decrypted_sum[:-1] / decrypted_sum[-1]).astype(np.float32)
