"""Shamir sharing over GF(2**521 - 1): any threshold of shares rebuilds the secret, in any order."""

import itertools
import os

import pytest

from fedledger.privacy import shamir


@pytest.mark.parametrize("threshold,holders", [(1, 1), (1, 3), (2, 3), (3, 5), (51, 100)])
def test_any_threshold_subset_rebuilds_the_secret(threshold, holders):
    secret = os.urandom(32)
    shares = shamir.split(secret, threshold, holders)
    assert len(shares) == holders and [x for x, _ in shares] == list(range(1, holders + 1))
    subsets = itertools.islice(itertools.combinations(shares, threshold), 20)
    for subset in subsets:
        assert shamir.combine(list(subset)) == secret
        assert shamir.combine(list(reversed(subset))) == secret
    assert shamir.combine(shares) == secret


def test_too_few_shares_give_something_else_and_are_noticed():
    secret = os.urandom(32)
    shares = shamir.split(secret, 3, 5)
    with pytest.raises(ValueError, match="do not belong to one secret"):
        shamir.combine(shares[:2])       # a degree-2 polynomial through two points: a random field element


def test_shares_of_different_secrets_do_not_combine():
    a, b = shamir.split(os.urandom(32), 2, 3), shamir.split(os.urandom(32), 2, 3)
    with pytest.raises(ValueError, match="do not belong to one secret"):
        shamir.combine([a[0], b[1]])


def test_encoding_round_trips_and_refuses_bad_input():
    share = shamir.split(b"\xff" * 32, 2, 3)[2]
    assert shamir.decode(shamir.encode(share)) == share
    with pytest.raises(ValueError, match="a share is 68 bytes"):
        shamir.decode(b"\0" * 10)
    with pytest.raises(ValueError, match="same index"):
        shamir.combine([share, share])
    with pytest.raises(ValueError, match="threshold must be 1 to 3"):
        shamir.split(b"\0" * 32, 4, 3)
