"""Client-level DP (DP-FedAvg with member-added noise shares): clipping the change from the
global model, and noise whose shares add up to noise_multiplier x clip_norm."""

import math

import numpy as np
import pytest

from fedledger.privacy.client_dp import clip_update, privatize_update

N = 200_000


def _vectors(n=50, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=n).astype(np.float32)
    return g, (g + scale * rng.normal(size=n)).astype(np.float32)


def test_clip_leaves_a_change_within_the_norm_unchanged():
    g, p = _vectors(scale=0.01)
    norm = float(np.linalg.norm(p.astype(np.float64) - g))
    out = clip_update(p, g, clip_norm=norm * 1.5)
    np.testing.assert_allclose(out, p, rtol=0, atol=1e-12)
    # exactly at the norm: still unchanged
    np.testing.assert_allclose(clip_update(p, g, clip_norm=norm), p, rtol=0, atol=1e-12)


def test_clip_scales_a_change_outside_the_norm_to_exactly_the_norm():
    g, p = _vectors(scale=3.0)
    change = p.astype(np.float64) - g
    assert np.linalg.norm(change) > 2.0
    out = clip_update(p, g, clip_norm=2.0)
    clipped = out - g.astype(np.float64)
    assert np.linalg.norm(clipped) == pytest.approx(2.0, rel=1e-12)
    # the direction is kept: the clipped change is a positive multiple of the change
    cos = clipped @ change / (np.linalg.norm(clipped) * np.linalg.norm(change))
    assert cos == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(clipped, change * (2.0 / np.linalg.norm(change)), rtol=1e-12, atol=1e-15)


def test_clip_of_no_change_is_the_global_model():
    g, _ = _vectors()
    np.testing.assert_array_equal(clip_update(g, g, clip_norm=1.0), g.astype(np.float64))


def test_privatize_is_deterministic_by_seed_and_float32():
    g, p = _vectors(n=1000, scale=0.5)
    kwargs = {"clip_norm": 1.0, "noise_multiplier": 0.8, "noise_shares": 3}
    a = privatize_update(p, g, seed=7, **kwargs)
    b = privatize_update(p, g, seed=7, **kwargs)
    c = privatize_update(p, g, seed=8, **kwargs)
    assert a.dtype == np.float32 and a.shape == p.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the inputs are left alone
    np.testing.assert_array_equal(g, _vectors(n=1000, scale=0.5)[0])


def test_privatize_clips_before_adding_noise():
    g, p = _vectors(n=1000, scale=1.0)
    out = privatize_update(p, g, clip_norm=0.5, noise_multiplier=1e-9, noise_shares=1, seed=0)
    np.testing.assert_allclose(out, clip_update(p, g, 0.5).astype(np.float32), rtol=1e-6, atol=1e-6)
    assert np.linalg.norm(out.astype(np.float64) - g) == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("clip_norm,noise_multiplier,shares", [(1.0, 1.0, 1), (0.5, 1.2, 4), (2.0, 0.7, 10)])
def test_noise_share_has_the_specified_std(clip_norm, noise_multiplier, shares):
    g = np.zeros(N, np.float32)
    noise = privatize_update(g, g, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                             noise_shares=shares, seed=11).astype(np.float64)
    expected = noise_multiplier * clip_norm / math.sqrt(shares)
    assert noise.std() == pytest.approx(expected, rel=0.02)
    assert abs(noise.mean()) < 5 * expected / math.sqrt(N)


def test_noise_is_added_around_the_global_model_not_zero():
    rng = np.random.default_rng(3)
    g = rng.normal(5.0, 1.0, N).astype(np.float32)
    out = privatize_update(g, g, clip_norm=0.1, noise_multiplier=1.0, noise_shares=1, seed=2)
    noise = out.astype(np.float64) - g
    assert noise.std() == pytest.approx(0.1, rel=0.02)
    assert abs(noise.mean()) < 5 * 0.1 / math.sqrt(N)


@pytest.mark.parametrize("shares", [2, 5])
def test_the_shares_of_shares_members_add_up_to_the_full_noise(shares):
    clip_norm, noise_multiplier = 0.8, 1.5
    g = np.zeros(N, np.float32)
    noises = [privatize_update(g, g, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                               noise_shares=shares, seed=100 + i).astype(np.float64) for i in range(shares)]
    total = np.sum(noises, axis=0)
    assert total.std() == pytest.approx(noise_multiplier * clip_norm, rel=0.02)
    # members' noises are independent of each other
    assert abs(np.corrcoef(noises[0], noises[1])[0, 1]) < 0.02


@pytest.mark.parametrize("kwargs", [
    {"clip_norm": 0.0, "noise_multiplier": 1.0, "noise_shares": 1},
    {"clip_norm": -1.0, "noise_multiplier": 1.0, "noise_shares": 1},
    {"clip_norm": float("nan"), "noise_multiplier": 1.0, "noise_shares": 1},
    {"clip_norm": 1.0, "noise_multiplier": 0.0, "noise_shares": 1},
    {"clip_norm": 1.0, "noise_multiplier": -0.5, "noise_shares": 1},
    {"clip_norm": 1.0, "noise_multiplier": float("nan"), "noise_shares": 1},
    {"clip_norm": 1.0, "noise_multiplier": 1.0, "noise_shares": 0},
    {"clip_norm": 1.0, "noise_multiplier": 1.0, "noise_shares": -2},
])
def test_invalid_arguments_raise(kwargs):
    g, p = _vectors()
    with pytest.raises(ValueError):
        privatize_update(p, g, seed=0, **kwargs)
