"""Secure aggregation by pairwise masking (Bonawitz et al., CCS 2017), in the fixed-point domain.

The aggregator learns the sum of the members' integer vectors and nothing else about any one of
them, even when some members drop out after masking (up to n - threshold of them).

One round, every message passing through the aggregator:
1. **Advertise.** Each member makes two X25519 key pairs, one to encrypt its secret shares to
   the other members and one for the pairwise masks, and publishes the public halves
   (`PublicKeys`; a study would register them on chain).
2. **Share.** Each member draws a self-mask seed b_u and splits b_u and its mask private key into
   Shamir shares (threshold t of n, `fedledger.privacy.shamir`). The share meant for member v is
   encrypted with AES-GCM under a key derived from the cipher key agreement of u and v.
3. **Mask.** Member u sends y_u = x_u + PRG(b_u) + sum over v > u of PRG(s_uv) - sum over v < u
   of PRG(s_uv), mod 2**64. Here s_uv = HKDF(X25519(mask keys of u and v), context) is the same
   for u and v, and PRG is AES-256-CTR.
4. **Unmask.** For every member that sent y_u, the survivors reveal their share of b_u; for every
   member that shared but dropped out, they reveal their share of its mask key. A survivor never
   reveals both for the same member: that would unmask its input.
   The aggregator rebuilds the secrets from t shares, removes the self masks of the senders and
   the dropped members' pairwise masks, and is left with the sum of the senders' x_u.

Arithmetic is uint64 with wraparound, so the masks cancel exactly. The sum is read back as int64,
which is exact whenever the true sum fits. The fixed-point bounds of `fedledger.aggregation`
guarantee that for sample-weighted parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.errors import FedLedgerError
from fedledger.privacy import shamir

SEED_BYTES = 32


class SecAggError(FedLedgerError):
    """A secure-aggregation step cannot proceed (too few survivors, a bad share, a refused request)."""


@dataclass(frozen=True)
class PublicKeys:
    """What a member publishes: its id and the raw X25519 public keys for shares and masks."""
    member: str
    cipher_key: bytes
    mask_key: bytes


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private_raw(private: X25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())


def _derive(shared: bytes, context: bytes, label: bytes) -> bytes:
    return HKDF(hashes.SHA256(), SEED_BYTES, salt=None, info=b"fedledger secagg/1 " + label + context).derive(shared)


def _pair_context(context: bytes, a: str, b: str) -> bytes:
    first, second = sorted((a, b))
    return context + b"|" + first.encode() + b"|" + second.encode()


def prg(seed: bytes, length: int) -> np.ndarray:
    """`length` pseudo-random uint64 values from a 32-byte seed (AES-256 in counter mode)."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor()
    return np.frombuffer(encryptor.update(b"\0" * (8 * length)) + encryptor.finalize(), dtype="<u8")


def pair_mask(private: X25519PrivateKey, other: PublicKeys, me: str, context: bytes, length: int) -> np.ndarray:
    """The pairwise mask member `me` adds for `other`: +PRG(s) if other's id is larger, else -PRG(s)."""
    seed = _derive(private.exchange(X25519PublicKey.from_public_bytes(other.mask_key)),
                   _pair_context(context, me, other.member), b"mask")
    mask = prg(seed, length)
    return mask if other.member > me else (np.uint64(0) - mask)


class SecAggMember:
    """One member's side of a round: its keys and secrets, the shares it holds for others."""

    def __init__(self, member: str, context: bytes, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.member = member
        self.context = context      # binds every key and mask to one study and round
        self._cipher = X25519PrivateKey.from_private_bytes(random_bytes(SEED_BYTES))
        self._mask = X25519PrivateKey.from_private_bytes(random_bytes(SEED_BYTES))
        self._self_seed = random_bytes(SEED_BYTES)
        self._roster: dict[str, PublicKeys] = {}
        self._held: dict[str, tuple[shamir.Share, shamir.Share]] = {}  # sender -> (self-seed, mask-key share)
        self._revealed: dict[str, str] = {}              # sender -> which secret this member revealed

    def public_keys(self) -> PublicKeys:
        return PublicKeys(self.member, _raw(self._cipher.public_key()), _raw(self._mask.public_key()))

    def _channel(self, other: PublicKeys) -> AESGCM:
        shared = self._cipher.exchange(X25519PublicKey.from_public_bytes(other.cipher_key))
        return AESGCM(_derive(shared, _pair_context(self.context, self.member, other.member), b"channel"))

    def share_secrets(self, roster: Sequence[PublicKeys], threshold: int) -> dict[str, bytes]:
        """Encrypted shares of this member's self-mask seed and mask key, one per roster member."""
        ids = [k.member for k in roster]
        if len(set(ids)) != len(ids) or self.member not in ids:
            raise SecAggError("the roster must list each member once, this one included")
        if not 1 <= threshold <= len(ids):
            raise SecAggError(f"threshold must be 1 to {len(ids)}, got {threshold}")
        self._roster = {k.member: k for k in roster}
        seed_shares = shamir.split(self._self_seed, threshold, len(ids))
        key_shares = shamir.split(_private_raw(self._mask), threshold, len(ids))
        sealed = {}
        for k, keys in enumerate(roster):
            payload = shamir.encode(seed_shares[k]) + shamir.encode(key_shares[k])
            nonce = os.urandom(12)
            sealed[keys.member] = nonce + self._channel(keys).encrypt(nonce, payload, self.member.encode())
        return sealed

    def receive_share(self, sender: str, sealed: bytes) -> None:
        """Keep `sender`'s shares meant for this member (SecAggError if they do not decrypt)."""
        if sender not in self._roster:
            raise SecAggError(f"shares from {sender}, who is not on the roster")
        try:
            payload = self._channel(self._roster[sender]).decrypt(sealed[:12], sealed[12:], sender.encode())
        except (InvalidTag, ValueError):
            raise SecAggError(f"the shares from {sender} do not decrypt: tampered or not meant for "
                              f"{self.member}") from None
        half = len(payload) // 2
        self._held[sender] = (shamir.decode(payload[:half]), shamir.decode(payload[half:]))

    def mask(self, values: np.ndarray, peers: Sequence[str] | None = None) -> np.ndarray:
        """y = x + self mask + pairwise masks (uint64, wrapping), for an int64 vector x.

        `peers`: the members whose shares were delivered (default: the whole roster). A member
        that dropped out before sharing gets no mask, since no one could cancel it.
        """
        if values.dtype != np.int64 or values.ndim != 1:
            raise SecAggError(f"secure aggregation masks 1-D int64 vectors, got {values.dtype} {values.shape}")
        keep = set(self._roster) if peers is None else set(peers)
        masked = values.view(np.uint64) + prg(self._self_seed, values.size)
        for other in self._roster.values():
            if other.member != self.member and other.member in keep:
                masked = masked + pair_mask(self._mask, other, self.member, self.context, values.size)
        return masked

    def reveal(self, senders: Sequence[str], dropped: Sequence[str]) -> dict[str, tuple[str, shamir.Share]]:
        """This member's shares for unmasking: of the self-mask seed of each member that sent a
        masked input, of the mask key of each member that dropped out. A request for both
        secrets of one member (across calls too) is refused."""
        overlap = set(senders) & set(dropped)
        if overlap:
            raise SecAggError(f"asked to reveal both secrets of {sorted(overlap)}: refused")
        out = {}
        for kind, members in (("seed", senders), ("key", dropped)):
            for u in members:
                if self._revealed.setdefault(u, kind) != kind:
                    raise SecAggError(f"already revealed the other secret of {u}: refused")
                if u in self._held:
                    out[u] = (kind, self._held[u][0 if kind == "seed" else 1])
        return out


def unmask_sum(masked: Mapping[str, np.ndarray], roster: Sequence[PublicKeys], revealed: Sequence[Mapping],
               threshold: int, context: bytes) -> np.ndarray:
    """The sum (int64) of the inputs behind `masked` (member -> y_u), from the survivors'
    `reveal` answers; SecAggError if fewer than `threshold` shares of some secret arrived.
    `roster`: the keys of the members whose shares were delivered (the `peers` of `mask`)."""
    if not masked:
        raise SecAggError("no masked input to aggregate")
    length = next(iter(masked.values())).size
    if any(y.dtype != np.uint64 or y.shape != (length,) for y in masked.values()):
        raise SecAggError("masked inputs must be uint64 vectors of one length")
    keys = {k.member: k for k in roster}
    total = np.zeros(length, dtype=np.uint64)
    for y in masked.values():
        total = total + y
    shares: dict[tuple[str, str], list] = {}
    for answer in revealed:
        for member, (kind, share) in answer.items():
            shares.setdefault((member, kind), []).append(share)

    def secret(member: str, kind: str) -> bytes:
        got = shares.get((member, kind), [])
        if len(got) < threshold:
            raise SecAggError(f"only {len(got)} of the {threshold} shares needed to unmask {member} arrived")
        try:
            return shamir.combine(got[:threshold])
        except ValueError as exc:
            raise SecAggError(f"cannot rebuild the {kind} of {member}: {exc}") from None

    for member in masked:
        total = total - prg(secret(member, "seed"), length)
    for member in set(keys) - set(masked):            # dropped after sharing: cancel their pair masks
        private = X25519PrivateKey.from_private_bytes(secret(member, "key"))
        for survivor in masked:
            # what the survivor added for the dropped member is the negation of what the dropped
            # member would have added for the survivor
            total = total + pair_mask(private, keys[survivor], member, context, length)
    return total.view(np.int64)
