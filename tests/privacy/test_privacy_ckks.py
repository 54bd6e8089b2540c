"""CKKS aggregation: the aggregator adds ciphertexts under the public context and cannot decrypt;
a key holder decrypts a sum within CKKS's precision of FedAvg's."""

import numpy as np
import pytest
import tenseal as ts

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.privacy import ckks


@pytest.fixture(scope="module")
def keys():
    return ckks.CkksKeys.generate()


def test_the_sum_of_encrypted_updates_is_fedavg_within_ckks_precision(keys):
    rng = np.random.default_rng(0)
    g = rng.normal(0, 1, 5000).astype(np.float32)
    updates = [ClientUpdate(f"h{i}", (g + rng.normal(0, 0.1, g.size)).astype(np.float32), int(rng.integers(5, 90)))
               for i in range(5)]
    public = keys.public_context()
    ciphertexts = [ckks.encrypt(public, ckks.weighted_input(u.params, u.num_samples)) for u in updates]
    total = ckks.add(public, ciphertexts)
    mean = ckks.weighted_mean(keys.decrypt(total))
    expected = FedAvg().aggregate(g, updates, {})[0]
    assert np.abs(mean - expected).max() < 1e-5


def test_the_aggregator_with_the_public_context_cannot_decrypt(keys):
    public = keys.public_context()
    ciphertext = ckks.add(public, [ckks.encrypt(public, np.arange(4.0))])
    vector = ts.ckks_vector_from(ts.context_from(public), ciphertext)
    with pytest.raises(ValueError, match="secret_key"):
        vector.decrypt()
    assert ciphertext != ckks.encrypt(public, np.arange(4.0))    # fresh randomness every encryption


def test_key_material_moves_in_explicit_steps(keys):
    public = keys.public_context()
    assert ckks.context_digest(public) == ckks.context_digest(public) and len(ckks.context_digest(public)) == 64
    other = ckks.CkksKeys.load(keys.secret_context())             # a second key holder
    ciphertext = ckks.encrypt(public, np.array([1.5, -2.0]))
    np.testing.assert_allclose(other.decrypt(ciphertext), [1.5, -2.0], atol=1e-6)
    with pytest.raises(ckks.CkksError, match="must not hold the secret key"):
        ckks.encrypt(keys.secret_context(), np.ones(2))           # never encrypt with the secret context
    with pytest.raises(ckks.CkksError, match="expected a secret context"):
        ckks.CkksKeys.load(public)
    with pytest.raises(ckks.CkksError, match="not a CKKS context"):
        ckks.add(b"garbage", [ciphertext])
    with pytest.raises(ckks.CkksError, match="no ciphertexts"):
        ckks.add(public, [])
    stranger = ckks.CkksKeys.generate()
    with pytest.raises(ckks.CkksError):
        ckks.add(stranger.public_context(), [ciphertext, b"\0" * 10])
