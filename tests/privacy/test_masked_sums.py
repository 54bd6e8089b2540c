"""Pairwise-masked sums: the masks cancel over all members, and one masked vector shows nothing
of its member's numbers."""

import numpy as np
import pytest
from eth_account import Account

from fedledger.privacy.masked_sums import (
    MODULUS,
    MaskingError,
    decode,
    encode,
    masked,
    member_key,
    public_key_hex,
    unmasked_sum,
)

CONTEXT = b"1|0xabc|standardization"


def members(count):
    accounts = [Account.create() for _ in range(count)]
    keys = {a.address: member_key(bytes(a.key), CONTEXT) for a in accounts}
    return keys, {address: public_key_hex(key) for address, key in keys.items()}


def test_fixed_point_numbers_round_trip_and_large_ones_are_refused():
    values = [0.0, 1.5, -2.25, 123456789.123, -1e15, 3e-9]
    np.testing.assert_allclose(decode(encode(values)), values, rtol=0, atol=2**-32)
    with pytest.raises(MaskingError, match="value 1 .* too large to mask"):
        encode([1.0, 1e19])
    with pytest.raises(MaskingError):
        encode([float("nan")])


def test_the_masks_cancel_over_every_member_and_hide_each_one():
    keys, public = members(4)
    rng = np.random.default_rng(3)
    values = {address: list(rng.normal(0, 1000, size=6)) + [float(rng.integers(2, 500))] for address in keys}
    vectors = {address: masked(values[address], address, keys[address], public, CONTEXT) for address in keys}
    total = np.sum([values[a] for a in keys], axis=0)
    np.testing.assert_allclose(unmasked_sum(list(vectors.values())), total, rtol=0, atol=1e-6)
    for address, vector in vectors.items():
        assert all(0 <= x < MODULUS for x in vector)
        # alone, a masked vector decodes to noise spread over the whole range, not to its numbers
        assert np.min(np.abs(np.array(decode(vector)) - np.array(values[address]))) > 1e6
    # without one member's vector, or with one masked for another study, the sum is noise
    some = list(vectors.values())[:3]
    assert np.max(np.abs(np.array(unmasked_sum(some)) - total)) > 1e6
    (first, key), = list(keys.items())[:1]
    other_study = masked(values[first], first, key, public, b"another study")
    assert np.max(np.abs(np.array(unmasked_sum([other_study, *some[1:], vectors[list(keys)[3]]])) - total)) > 1e6


def test_a_members_key_is_its_accounts_for_one_study_and_bad_inputs_are_refused():
    account = Account.create()
    assert public_key_hex(member_key(bytes(account.key), CONTEXT)) == public_key_hex(member_key(bytes(account.key),
                                                                                               CONTEXT))
    assert public_key_hex(member_key(bytes(account.key), CONTEXT)) != public_key_hex(member_key(bytes(account.key),
                                                                                               b"other"))
    keys, public = members(2)
    me = next(iter(keys))
    with pytest.raises(MaskingError, match="is not an X25519 public key"):
        masked([1.0], me, keys[me], {**public, "0xpeer": "00" * 31}, CONTEXT)
    with pytest.raises(MaskingError, match="must each hold 2 integers"):
        unmasked_sum([[1, 2], [3]])
