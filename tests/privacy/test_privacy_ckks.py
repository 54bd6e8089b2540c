"""CKKS aggregation: the aggregator adds ciphertexts under the public context and cannot decrypt;
a key holder decrypts a sum within CKKS's precision of FedAvg's. Long vectors travel as explicit
chunks of one ciphertext each, in a byte format that is checked before TenSEAL sees it."""

import ctypes

import numpy as np
import pytest
import tenseal as ts

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.privacy import ckks

S = ckks.SLOTS
LENGTHS = [1, S, S + 1, 3 * S + 5]
TOLERANCE = 1e-6          # CKKS at a 2^40 scale: about 1e-9 relative, far inside this for |x| < 100


@pytest.fixture(scope="module")
def keys():
    return ckks.CkksKeys.generate()


@pytest.fixture(scope="module")
def public(keys):
    return keys.public_context()


def _captured(capfd) -> str:
    """Everything written to fd 1 and 2, TenSEAL's C++ output included (flushed from stdio's buffer)."""
    ctypes.CDLL(None).fflush(None)
    out, err = capfd.readouterr()
    return out + err


def test_the_sum_of_encrypted_updates_is_fedavg_within_ckks_precision(keys, public):
    rng = np.random.default_rng(0)
    g = rng.normal(0, 1, 5000).astype(np.float32)
    updates = [ClientUpdate(f"h{i}", (g + rng.normal(0, 0.1, g.size)).astype(np.float32), int(rng.integers(5, 90)))
               for i in range(5)]
    ciphertexts = [ckks.encrypt(public, ckks.weighted_input(u.params, u.num_samples)) for u in updates]
    total = ckks.add(public, ciphertexts)
    mean = ckks.weighted_mean(keys.decrypt(total))
    expected = FedAvg().aggregate(g, updates, {})[0]
    assert np.abs(mean - expected).max() < 1e-5


@pytest.mark.parametrize("length", LENGTHS)
def test_a_vector_of_any_length_round_trips(keys, public, length):
    values = np.random.default_rng(length).normal(0, 10, length)
    ciphertext = ckks.encrypt(public, values)
    _, size, chunks = ckks._unpack(ciphertext)
    assert size == length and len(chunks) == -(-length // S)
    decrypted = keys.decrypt(ciphertext)
    assert decrypted.shape == (length,)
    np.testing.assert_allclose(decrypted, values, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("length", [S + 1, 3 * S + 5])
def test_the_sum_of_several_members_is_the_float_sum(keys, public, length):
    rng = np.random.default_rng(length)
    members = [rng.normal(0, 10, length) for _ in range(4)]
    total = ckks.add(public, [ckks.encrypt(public, m) for m in members])
    np.testing.assert_allclose(keys.decrypt(total), np.sum(members, axis=0), rtol=0, atol=4 * TOLERANCE)


def test_long_vectors_print_no_tenseal_warning(keys, public, capfd):
    values = np.ones(3 * S + 5)
    _captured(capfd)
    ts.ckks_vector(ts.context_from(public), values)       # control: TenSEAL's own long vector warns
    assert "does not fit in a single ciphertext" in _captured(capfd)
    keys.decrypt(ckks.add(public, [ckks.encrypt(public, values), ckks.encrypt(public, values)]))
    printed = _captured(capfd)
    assert "does not fit" not in printed and "disabled" not in printed


def test_the_aggregator_with_the_public_context_cannot_decrypt(keys, public):
    ciphertext = ckks.add(public, [ckks.encrypt(public, np.arange(4.0))])
    _, _, [chunk] = ckks._unpack(ciphertext)
    vector = ts.ckks_vector_from(ts.context_from(public), chunk)
    with pytest.raises(ValueError, match="secret_key"):
        vector.decrypt()
    assert ciphertext != ckks.encrypt(public, np.arange(4.0))    # fresh randomness every encryption


def test_key_material_moves_in_explicit_steps(keys, public):
    assert ckks.context_digest(public) == ckks.context_digest(keys.public_context())
    assert len(ckks.context_digest(public)) == 64
    other = ckks.CkksKeys.load(keys.secret_context())             # a second key holder
    assert other.public_context() == public                       # the same digest from every key holder
    ciphertext = ckks.encrypt(public, np.array([1.5, -2.0]))
    np.testing.assert_allclose(other.decrypt(ciphertext), [1.5, -2.0], atol=TOLERANCE)
    with pytest.raises(ckks.CkksError, match="must not hold the secret key"):
        ckks.encrypt(keys.secret_context(), np.ones(2))           # never encrypt with the secret context
    with pytest.raises(ckks.CkksError, match="expected a secret context"):
        ckks.CkksKeys.load(public)
    with pytest.raises(ckks.CkksError, match="not a CKKS context"):
        ckks.add(b"garbage", [ciphertext])
    with pytest.raises(ckks.CkksError, match="no ciphertexts"):
        ckks.add(public, [])
    with pytest.raises(ckks.CkksError, match="non-empty 1-D"):
        ckks.encrypt(public, np.array([]))


def _rewrite_header(ciphertext: bytes, **fields) -> bytes:
    magic, version, digest, size, count = ckks._HEADER.unpack_from(ciphertext)
    header = {"magic": magic, "version": version, "digest": digest, "size": size, "count": count} | fields
    return ckks._HEADER.pack(*header.values()) + ciphertext[ckks._HEADER.size:]


@pytest.fixture(scope="module")
def two_chunks(public):
    return ckks.encrypt(public, np.arange(S + 1.0))


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda c: c[:10], "truncated"),
    (lambda c: c[:ckks._HEADER.size + 4], "truncated"),
    (lambda c: c[:-1], "header announces"),
    (lambda c: c + b"\0", "header announces"),
    (lambda c: b"PICKLE" + c[6:], "wrong magic"),
    (lambda c: _rewrite_header(c, version=2), "format version 2"),
    (lambda c: _rewrite_header(c, count=3), "3 chunks for"),
    (lambda c: _rewrite_header(c, size=0), "2 chunks for 0 values"),
    (lambda c: _rewrite_header(c, size=S + 2), "holds 1 values, its header says 2"),
    (lambda c: _rewrite_header(c, digest=bytes(32)), "another context"),
    (lambda c: c[:-50] + bytes(50), "is not a CKKS vector"),
])
def test_malformed_ciphertexts_are_refused_with_a_clear_error(keys, public, two_chunks, corrupt, message):
    bad = corrupt(two_chunks)
    with pytest.raises(ckks.CkksError, match=message):
        keys.decrypt(bad)
    with pytest.raises(ckks.CkksError, match=message):
        ckks.add(public, [two_chunks, bad])


def test_a_huge_chunk_count_is_refused_before_anything_is_allocated(keys):
    header = ckks._HEADER.pack(ckks._MAGIC, 1, bytes(32), (2**32 - 1) * S, 2**32 - 1)
    with pytest.raises(ckks.CkksError, match="truncated"):
        keys.decrypt(header)


def test_ciphertexts_of_different_lengths_or_keys_are_not_added(keys, public, two_chunks):
    with pytest.raises(ckks.CkksError, match=r"ciphertext 1 holds 4 values in 1 chunks, ciphertext 0 holds 4097 in 2"):
        ckks.add(public, [two_chunks, ckks.encrypt(public, np.ones(4))])
    stranger = ckks.CkksKeys.generate()
    foreign = ckks.encrypt(stranger.public_context(), np.arange(S + 1.0))
    with pytest.raises(ckks.CkksError, match="another context"):
        ckks.add(public, [two_chunks, foreign])
    with pytest.raises(ckks.CkksError, match="another context"):
        keys.decrypt(foreign)
    with pytest.raises(ckks.CkksError, match="another context"):
        ckks.add(stranger.public_context(), [two_chunks])
