"""Shamir secret sharing of 32-byte secrets over the prime field of p = 2**521 - 1.

Written here rather than taken from pycryptodome, whose pure-Python GF(2**128) arithmetic
interpolates every secret from scratch: unmasking a round of 100 members (threshold 51) took it
about 12 s. Every secret of a round is shared among the same members, so the Lagrange
coefficients of one set of share indices serve all of them (they are cached), and the
interpolation becomes one dot product per secret.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

P = 2**521 - 1                 # a Mersenne prime: every 32-byte secret is a field element
ELEMENT_BYTES = 66             # ceil(521 / 8)
Share = tuple[int, int]        # (x, y): holder index (1-based) and the polynomial's value there


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """`holders` shares of `secret`, any `threshold` of which rebuild it (fewer reveal nothing)."""
    if not 1 <= threshold <= holders:
        raise ValueError(f"threshold must be 1 to {holders}, got {threshold}")
    coefficients = [int.from_bytes(secret, "big")] + [
        int.from_bytes(os.urandom(ELEMENT_BYTES), "big") % P for _ in range(threshold - 1)]
    shares = []
    for x in range(1, holders + 1):
        y = 0
        for c in reversed(coefficients):     # Horner, reduced once at the end: x is small, so y
            y = y * x + c                    # grows by a few bits a step, cheaper than t reductions
        shares.append((x, y % P))
    return shares


@lru_cache(maxsize=64)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    coefficients = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % P
                den = den * (xj - xi) % P
        coefficients.append(num * pow(den, -1, P) % P)
    return tuple(coefficients)


def combine(shares: Sequence[Share], size: int = 32) -> bytes:
    """The secret behind `threshold` shares with distinct indices (more are not needed)."""
    xs = tuple(x for x, _ in shares)
    if len(set(xs)) != len(xs):
        raise ValueError("two shares with the same index")
    value = sum(c * y for c, (_, y) in zip(_lagrange_at_zero(xs), shares)) % P
    if value >= 1 << (8 * size):
        raise ValueError("the shares do not belong to one secret")
    return value.to_bytes(size, "big")


def encode(share: Share) -> bytes:
    return share[0].to_bytes(2, "big") + share[1].to_bytes(ELEMENT_BYTES, "big")


def decode(data: bytes) -> Share:
    if len(data) != 2 + ELEMENT_BYTES:
        raise ValueError(f"a share is {2 + ELEMENT_BYTES} bytes, got {len(data)}")
    return int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")
