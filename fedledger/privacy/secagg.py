"""Secure aggregation by pairwise masking, in the fixed-point domain: Bonawitz et al. (CCS 2017)
on the complete graph, and SecAgg+ (Bell et al., CCS 2020) on a sparse graph of degree k.

The aggregator learns the sum of the members' integer vectors and nothing else about any one of
them, even when some members drop out after masking.

Who masks with whom is a `MaskGraph`, built by every party from public data. On the complete
graph every pair of members shares a mask and every member holds shares of everyone's secrets
(the original protocol). On a Harary graph of even degree k whose ring order is a pseudo-random
permutation derived from the round context (`MaskGraph.harary`), a member masks only with its k
neighbours and shares its secrets only among them and itself, so masking, sharing and the
unmasking of a dropped member cost O(k) instead of O(n). `secagg_plus_parameters` chooses k
and the threshold t from the fractions of dropouts and corrupt members to tolerate.

One round, every message passing through the aggregator:
1. **Advertise.** Each member makes two X25519 key pairs, one to encrypt its secret shares to
   other members and one for the pairwise masks, and publishes the public halves
   (`PublicKeys`; a study would register them on chain).
2. **Share.** Each member u draws a self-mask seed b_u and splits b_u and its mask private key
   into Shamir shares (threshold t, `fedledger.privacy.shamir`), one per holder: u and its
   neighbours. The share meant for member v is encrypted with AES-GCM under a key derived from
   the cipher key agreement of u and v.
3. **Mask.** Member u sends y_u = x_u + PRG(b_u) + sum over neighbours v > u of PRG(s_uv) - sum
   over neighbours v < u of PRG(s_uv), mod 2**64. Here s_uv = HKDF(X25519(mask keys of u and v),
   context) is the same for u and v, and PRG is AES-256-CTR.
4. **Unmask.** For every member that sent y_u, the survivors reveal their share of b_u; for every
   member that shared but dropped out, they reveal their share of its mask key. A survivor never
   reveals both for the same member: that would unmask its input.
   The aggregator rebuilds the secrets from t shares, removes the self masks of the senders and
   the masks between each dropped member and its surviving neighbours, and is left with the sum
   of the senders' x_u.

Arithmetic is uint64 with wraparound, so the masks cancel exactly. The sum is read back as int64,
which is exact whenever the true sum fits. The fixed-point bounds of `fedledger.aggregation`
guarantee that for sample-weighted parameters.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.errors import FedLedgerError
from fedledger.privacy import shamir

SEED_BYTES = 32
SECURITY_BITS = 40      # a privacy failure (an input unmasked) has probability at most 2**-40
CORRECTNESS_BITS = 20   # a round that cannot be unmasked (it is rerun) at most 2**-20


class SecAggError(FedLedgerError):
    """A secure-aggregation step cannot proceed (too few survivors, a bad share, a refused request)."""


@dataclass(frozen=True)
class PublicKeys:
    """What a member publishes: its id and the raw X25519 public keys for shares and masks."""
    member: str
    cipher_key: bytes
    mask_key: bytes


@dataclass(frozen=True)
class MaskGraph:
    """Who masks with whom, and so who holds whose shares: a symmetric graph over member ids.

    Every party builds it from public data (the advertised roster and the round context), so all
    of them hold the same graph without the aggregator choosing it.
    """
    neighbours: Mapping[str, frozenset[str]]

    @classmethod
    def complete(cls, members: Iterable[str]) -> MaskGraph:
        """Everyone with everyone: the original protocol (Bonawitz et al.)."""
        ids = frozenset(members)
        return cls({m: ids - {m} for m in ids})

    @classmethod
    def harary(cls, members: Iterable[str], degree: int, context: bytes) -> MaskGraph:
        """The Harary graph H(degree, n) on a ring whose order is a pseudo-random permutation of
        the members derived from `context`: each member is joined to the degree/2 members on
        either side. k-connected, and with the random order every neighbourhood is a uniformly
        random set of k others (the graph of Bell et al.). Degree n - 1 or more: complete."""
        ids = sorted(set(members))
        if degree >= len(ids) - 1:
            return cls.complete(ids)
        if degree < 2 or degree % 2:
            raise SecAggError(f"a sparse mask graph needs an even degree of at least 2, got {degree}")
        ring = sorted(ids, key=lambda m: hashlib.sha256(
            b"fedledger secagg/1 graph|" + context + b"|" + m.encode()).digest())
        half = degree // 2
        around = ring[-half:] + ring + ring[:half]     # the ring unrolled: ring[i] is around[i + half]
        return cls({m: frozenset(around[i:i + half] + around[i + half + 1:i + degree + 1])
                    for i, m in enumerate(ring)})

    def holders(self, member: str) -> tuple[str, ...]:
        """Who gets shares of `member`'s secrets: its neighbours and itself, in id order (a
        holder's share index is its position here, plus one)."""
        return tuple(sorted(self.neighbours[member] | {member}))


def _tail(population: int, marked: int, draws: int, at_least: int) -> Fraction:
    """P[X >= at_least] for X hypergeometric: `draws` taken from `population` of which `marked` are marked."""
    top = min(marked, draws)
    hits = sum(math.comb(marked, i) * math.comb(population - marked, draws - i)
               for i in range(max(at_least, 0), top + 1))
    return Fraction(hits, math.comb(population, draws))


@cache
def secagg_plus_parameters(members: int, dropout: float = 0.3, corrupt: float = 0.1) -> tuple[int, int]:
    """(degree k, threshold t) for `MaskGraph.harary` when up to a fraction `dropout` of the
    members may drop out and up to a fraction `corrupt` may collude with an honest-but-curious
    aggregator; the smallest even k that meets the three conditions of Bell et al. (CCS 2020):

    - privacy: no honest member has t corrupt holders of its shares (with t they rebuild both of
      its secrets), at most 2**-SECURITY_BITS over the random placement, together with
    - connectivity: the graph of honest survivors stays connected, else the aggregator learns the
      sum of each piece. On the ring, that fails only if two runs of k/2 consecutive members are
      all dropped or corrupt, which bounds its probability;
    - correctness: every member keeps t surviving holders, so its secret can be rebuilt, failing
      with probability at most 2**-CORRECTNESS_BITS (a round that fails is rerun, not leaked).

    Each condition is a hypergeometric tail (a neighbourhood is a uniformly random k-subset of
    the other members), summed over the members; the counts are fraction x n rounded up, and the
    placement must be independent of who is corrupt or drops out. Among the thresholds that meet
    all three, the largest, so privacy keeps the most margin. When no sparse graph qualifies the
    answer is the complete graph (k = n - 1), where the conditions hold with certainty or never.
    An aggregator that lies about who dropped out is outside this model (docs/privacy.md).
    """
    if members < 2 or not (0 <= dropout and 0 <= corrupt and dropout + corrupt < 1):
        raise SecAggError(f"need 2 or more members and dropout + corrupt below 1, got {members}, "
                          f"{dropout}, {corrupt}")
    n = members
    dropped, bad = (math.ceil(round(f * n, 9)) for f in (dropout, corrupt))   # round up: 10% of 5 is 1
    gone = min(n, dropped + bad)
    for k in [*range(2, n - 1, 2), n - 1]:
        split = Fraction(0)               # P[the honest survivors' graph splits], union over pairs of runs
        if k < n - 1 and gone >= k:
            split = n * (n - 1) // 2 * Fraction(math.comb(n - k, gone - k), math.comb(n, gone))
        for t in range(k + 1, 0, -1):
            # a dropped member's shares are with its k neighbours, a survivor's also with itself
            stuck = (dropped * _tail(n - 1, dropped - 1, k, k - t + 1)
                     + (n - dropped) * _tail(n - 1, dropped, k, k - t + 2))
            if stuck > Fraction(1, 2**CORRECTNESS_BITS):
                continue
            if (n - bad) * _tail(n - 1, bad, k, t) + split <= Fraction(1, 2**SECURITY_BITS):
                return k, t
            break                         # a smaller t only weakens privacy
    raise SecAggError(f"no threshold tolerates {dropped} dropouts and {bad} corrupt members of {n}")


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


@lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    return bytes(size)


_COUNTER = modes.CTR(bytes(16))   # every seed keys one stream only, so each may start at block 0


def _expand_into(seed: bytes, out: np.ndarray) -> np.ndarray:
    """`out` (uint64) overwritten with PRG(seed), and returned: AES-256-CTR encrypts zeros straight
    into the caller's buffer. A party expands hundreds of masks of one length, so it reuses one
    buffer rather than allocate a stream per mask; the zero plaintext is shared too, and CTR has
    nothing to finalize."""
    Cipher(algorithms.AES(seed), _COUNTER).encryptor().update_into(_zeros(out.nbytes), out.view(np.uint8))
    return out


def prg(seed: bytes, length: int) -> np.ndarray:
    """`length` pseudo-random uint64 values from a 32-byte seed (AES-256 in counter mode, little-endian words)."""
    return _expand_into(seed, np.empty(length, dtype="<u8"))


def add_pair_mask(acc: np.ndarray, private: X25519PrivateKey, me: str, other: str, other_key: X25519PublicKey,
                  context: bytes, stream: np.ndarray) -> None:
    """Add, in place, the pairwise mask member `me` uses for `other` (whose mask key is
    `other_key`): +PRG(s) if other's id is larger, else -PRG(s), so the two masks of a pair cancel
    in the sum. `stream`: scratch space of acc's size for the PRG, reused from call to call."""
    seed = _derive(private.exchange(other_key), _pair_context(context, me, other), b"mask")
    (np.add if other > me else np.subtract)(acc, _expand_into(seed, stream), out=acc)


def _mask_key(keys: PublicKeys) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(keys.mask_key)


def _seal(channel: AESGCM, sender: str, payload: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + channel.encrypt(nonce, payload, sender.encode())


def _open(channel: AESGCM, sender: str, sealed: bytes, me: str) -> bytes:
    try:
        return channel.decrypt(sealed[:12], sealed[12:], sender.encode())
    except (InvalidTag, ValueError):
        raise SecAggError(f"what {sender} sealed does not open: tampered or not meant for {me}") from None


class SecAggMember:
    """One member's side of a round: its keys and secrets, the shares it holds for others."""

    def __init__(self, member: str, context: bytes, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.member = member
        self.context = context      # binds every key, mask and the graph to one study and round
        self._cipher = X25519PrivateKey.from_private_bytes(random_bytes(SEED_BYTES))
        self._mask = X25519PrivateKey.from_private_bytes(random_bytes(SEED_BYTES))
        self._self_seed = random_bytes(SEED_BYTES)
        self._roster: dict[str, PublicKeys] = {}
        self._neighbours: frozenset[str] = frozenset()
        self._channels: dict[str, AESGCM] = {}           # holder or sender -> sealed channel
        self._held: dict[str, tuple[shamir.Share, shamir.Share]] = {}  # sender -> (self-seed, mask-key share)
        self._revealed: dict[str, str] = {}              # sender -> which secret this member revealed

    def public_keys(self) -> PublicKeys:
        return PublicKeys(self.member, _raw(self._cipher.public_key()), _raw(self._mask.public_key()))

    def _channel(self, other: PublicKeys) -> AESGCM:
        shared = self._cipher.exchange(X25519PublicKey.from_public_bytes(other.cipher_key))
        return AESGCM(_derive(shared, _pair_context(self.context, self.member, other.member), b"channel"))

    def share_secrets(self, roster: Sequence[PublicKeys], threshold: int,
                      graph: MaskGraph | None = None) -> dict[str, bytes]:
        """Encrypted shares of this member's self-mask seed and mask key, one per holder (itself
        and its neighbours in `graph`; default: the complete graph over the roster)."""
        ids = [k.member for k in roster]
        if len(set(ids)) != len(ids) or self.member not in ids:
            raise SecAggError("the roster must list each member once, this one included")
        graph = MaskGraph.complete(ids) if graph is None else graph
        if set(graph.neighbours) != set(ids):
            raise SecAggError("the mask graph must cover exactly the roster")
        holders = graph.holders(self.member)
        if not 1 <= threshold <= len(holders):
            raise SecAggError(f"threshold must be 1 to {len(holders)}, got {threshold}")
        self._roster = {k.member: k for k in roster}
        self._neighbours = graph.neighbours[self.member]
        self._channels = {v: self._channel(self._roster[v]) for v in holders}   # reused to open theirs
        seed_shares = shamir.split(self._self_seed, threshold, len(holders))
        key_shares = shamir.split(_private_raw(self._mask), threshold, len(holders))
        sealed = {}
        for v, seed_share, key_share in zip(holders, seed_shares, key_shares):
            sealed[v] = _seal(self._channels[v], self.member, shamir.encode(seed_share) + shamir.encode(key_share))
        return sealed

    def seal_to(self, other: PublicKeys, payload: bytes) -> bytes:
        """`payload` sealed for `other` alone, over this round's pairwise channel (e.g. a CKKS
        secret context handed to another key holder)."""
        return _seal(self._channel(other), self.member, payload)

    def open_from(self, sender: PublicKeys, sealed: bytes) -> bytes:
        """What `sender` sealed for this member with `seal_to` (SecAggError if it does not open)."""
        return _open(self._channel(sender), sender.member, sealed, self.member)

    def receive_share(self, sender: str, sealed: bytes) -> None:
        """Keep `sender`'s shares meant for this member (SecAggError if they do not decrypt)."""
        if sender not in self._roster:
            raise SecAggError(f"shares from {sender}, who is not on the roster")
        if sender not in self._channels:
            raise SecAggError(f"shares from {sender}, who is not a neighbour of {self.member} in the mask graph")
        payload = _open(self._channels[sender], sender, sealed, self.member)
        half = len(payload) // 2
        self._held[sender] = (shamir.decode(payload[:half]), shamir.decode(payload[half:]))

    def mask(self, values: np.ndarray, peers: Sequence[str] | None = None) -> np.ndarray:
        """y = x + self mask + pairwise masks with the neighbours (uint64, wrapping), for an int64 vector x.

        `peers`: the members whose shares were delivered (default: the whole roster). A member
        that dropped out before sharing gets no mask, since no one could cancel it.
        """
        if values.dtype != np.int64 or values.ndim != 1:
            raise SecAggError(f"secure aggregation masks 1-D int64 vectors, got {values.dtype} {values.shape}")
        keep = self._neighbours if peers is None else self._neighbours & set(peers)
        stream = prg(self._self_seed, values.size)
        masked = values.view(np.uint64) + stream
        for other in sorted(keep):
            add_pair_mask(masked, self._mask, self.member, other, _mask_key(self._roster[other]), self.context, stream)
        return masked

    def reveal(self, senders: Sequence[str], dropped: Sequence[str]) -> dict[str, tuple[str, shamir.Share]]:
        """This member's shares for unmasking: of the self-mask seed of each member that sent a
        masked input, of the mask key of each member that dropped out (only those it holds: its
        neighbours' and its own). A request for both secrets of one member (across calls too)
        is refused."""
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
               threshold: int, context: bytes, graph: MaskGraph | None = None) -> np.ndarray:
    """The sum (int64) of the inputs behind `masked` (member -> y_u), from the survivors'
    `reveal` answers; SecAggError if fewer than `threshold` shares of some secret arrived.
    `roster`: the keys of the members whose shares were delivered (the `peers` of `mask`);
    `graph`: the one the members shared on (default: complete)."""
    if not masked:
        raise SecAggError("no masked input to aggregate")
    length = next(iter(masked.values())).size
    if any(y.dtype != np.uint64 or y.shape != (length,) for y in masked.values()):
        raise SecAggError("masked inputs must be uint64 vectors of one length")
    keys = {k.member: k for k in roster}
    graph = MaskGraph.complete(keys) if graph is None else graph
    if not set(keys) <= set(graph.neighbours):
        raise SecAggError("the mask graph does not cover the roster")
    total = np.zeros(length, dtype=np.uint64)
    for y in masked.values():
        np.add(total, y, out=total)
    shares: dict[tuple[str, str], list] = {}
    for answer in revealed:
        for member, (kind, share) in answer.items():
            shares.setdefault((member, kind), []).append(share)

    def secret(member: str, kind: str) -> bytes:
        got = sorted(shares.get((member, kind), []))   # lowest indices first: Lagrange sets repeat
        if len(got) < threshold:
            raise SecAggError(f"only {len(got)} of the {threshold} shares needed to unmask {member} "
                              f"arrived: too many of its share holders dropped out")
        try:
            return shamir.combine(got[:threshold])
        except ValueError as exc:
            raise SecAggError(f"cannot rebuild the {kind} of {member}: {exc}") from None

    stream = np.empty(length, dtype=np.uint64)
    for member in masked:
        np.subtract(total, _expand_into(secret(member, "seed"), stream), out=total)
    survivor_key = cache(lambda m: _mask_key(keys[m]))   # a survivor may neighbour several dropped members
    for member in sorted(set(keys) - set(masked)):     # dropped after sharing: cancel their pair masks
        private = X25519PrivateKey.from_private_bytes(secret(member, "key"))
        for survivor in sorted(graph.neighbours[member] & set(masked)):
            # what the survivor added for the dropped member is the negation of what the dropped
            # member would have added for the survivor
            add_pair_mask(total, private, member, survivor, survivor_key(survivor), context, stream)
    return total.view(np.int64)
