"""Sums of a few numbers per member in which no member's own numbers show: pairwise masking for
a step every member must take part in (the consortium's standardization statistics).

Each member holds an X25519 key; each pair of members agrees on a secret by Diffie-Hellman and
expands it (SHAKE-256, bound to the study) into one mask per number. The member whose address
sorts first adds the pair's masks, the other subtracts them, so that over all members the masks
cancel and the sum of the masked vectors is the sum of the numbers, while one masked vector alone
looks uniformly random. Numbers travel as fixed-point integers modulo 2**128 (FRACTION_BITS
fraction bits). Nothing here survives a member that drops out: the caller waits for everyone,
as the standardization does (secure aggregation's SecAgg+, fedledger.privacy.secagg, is the
dropout-tolerant kind). With two members each learns the other's numbers from the sum and its
own: masking hides a member's numbers among the others'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.errors import FedLedgerError

MODULUS = 2**128
FRACTION_BITS = 32
MAX_ABS = 2.0**62            # a member's numbers: their sum over 128 members stays far inside the modulus
_DOMAIN = b"FedLedger masked sums v1|"


class MaskingError(FedLedgerError):
    """Numbers that cannot be masked, or a masked vector that is not one."""


def member_key(account_key: bytes, context: bytes) -> X25519PrivateKey:
    """A member's X25519 key for `context` (a study), derived from its account's private key:
    a node that restarts has it again, and nothing new is kept on disk."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DOMAIN + b"key|" + context).derive(account_key)
    return X25519PrivateKey.from_private_bytes(seed)


def public_key_hex(key: X25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def encode(values: Sequence[float]) -> list[int]:
    """`values` as fixed-point integers modulo MODULUS; MaskingError for one too large."""
    out = []
    for i, v in enumerate(values):
        if not abs(v) < MAX_ABS:
            raise MaskingError(f"value {i} ({v}) is too large to mask (at most {MAX_ABS:.3g} in magnitude)")
        out.append(round(v * 2**FRACTION_BITS) % MODULUS)
    return out


def decode(total: Sequence[int]) -> list[float]:
    """The signed numbers that fixed-point `total` stands for."""
    return [((t + MODULUS // 2) % MODULUS - MODULUS // 2) / 2**FRACTION_BITS for t in total]


def masked(values: Sequence[float], me: str, key: X25519PrivateKey, peers: Mapping[str, str],
           context: bytes) -> list[int]:
    """`values` encoded and masked for a sum over `me` and `peers` (address -> public key hex)."""
    vector = encode(values)
    for peer, public in peers.items():
        if peer.lower() == me.lower():
            continue
        try:
            secret = key.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(public)))
        except ValueError as exc:
            raise MaskingError(f"{peer}'s key is not an X25519 public key: {exc}") from None
        stream = hashlib.shake_256(_DOMAIN + context + b"|" + secret).digest(16 * len(vector))
        sign = 1 if me.lower() < peer.lower() else -1
        vector = [(x + sign * int.from_bytes(stream[16 * i:16 * i + 16], "big")) % MODULUS
                  for i, x in enumerate(vector)]
    return vector


def unmasked_sum(vectors: Sequence[Sequence[int]]) -> list[float]:
    """The sum of the numbers behind every member's masked vector (all members', or it is noise)."""
    size = len(vectors[0])
    if any(len(v) != size or not all(isinstance(x, int) and 0 <= x < MODULUS for x in v) for v in vectors):
        raise MaskingError(f"masked vectors must each hold {size} integers from 0 to 2**128 - 1")
    return decode([sum(column) % MODULUS for column in zip(*vectors)])
