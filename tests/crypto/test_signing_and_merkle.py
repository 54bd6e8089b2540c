import dataclasses
import os

import pytest
from eth_account import Account

from fedledger.crypto import (
    UpdateCommitment,
    merkle_leaf,
    merkle_proof,
    merkle_root,
    recover_signer,
    sign_commitment,
    verify_proof,
)


def _commitment(**over):
    base = dict(chain_id=1337, ledger="0x" + "11" * 20, round=3, parent_model="aa" * 32, update="bb" * 32,
                num_samples=120)
    base.update(over)
    return UpdateCommitment(**base)


def test_signature_recovers_the_signer_and_binds_every_field():
    account = Account.create()
    c = _commitment()
    sig = sign_commitment(account, c)
    assert recover_signer(c, sig) == account.address
    for change in [dict(round=4), dict(chain_id=1), dict(ledger="0x" + "22" * 20), dict(parent_model="cc" * 32),
                   dict(update="dd" * 32), dict(num_samples=121)]:
        assert recover_signer(dataclasses.replace(c, **change), sig) != account.address


@pytest.mark.parametrize("garbage", ["", "0x", "0x1234", "zz" * 65, "0x" + "00" * 65])
def test_malformed_signature_has_no_signer(garbage):
    assert recover_signer(_commitment(), garbage) is None


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_every_leaf_proves_inclusion_and_nothing_else_does(n):
    leaves = [merkle_leaf(Account.create().address, os.urandom(32).hex(), i + 1) for i in range(n)]
    root = merkle_root(leaves)
    assert merkle_root(list(reversed(leaves))) == root  # order of arrival does not matter
    for leaf in leaves:
        assert verify_proof(leaf, merkle_proof(leaves, leaf), root)
    outsider = merkle_leaf(Account.create().address, os.urandom(32).hex(), 1)
    assert not verify_proof(outsider, merkle_proof(leaves, leaves[0]), root)
    with pytest.raises(ValueError):
        merkle_proof(leaves, outsider)


def test_leaf_depends_on_sample_count():
    addr = Account.create().address
    assert merkle_leaf(addr, "aa" * 32, 10) != merkle_leaf(addr, "aa" * 32, 11)
