"""The RDP accountant: agrees with Opacus's own RDPAccountant, composes as RDP does, rounds as
the chain records, and calibrates the smallest noise multiplier that meets a budget."""

import itertools
import math
import warnings

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from fedledger.errors import ConfigError
from fedledger.privacy import accountant
from fedledger.privacy.accountant import (
    ORDERS,
    Mechanism,
    calibrate_noise,
    delta_units,
    epsilon,
    epsilon_micro,
)

DELTA = 1e-5


def _opacus_epsilon(history, delta, alphas=None):
    """Opacus's RDPAccountant over a history of (noise multiplier, sample rate, steps)."""
    acc = RDPAccountant()
    acc.history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in history]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
        return acc.get_epsilon(delta, alphas=alphas)


# (noise multiplier, sample rate, steps, delta); the first is Abadi et al.'s MNIST-like setting
SETTINGS = [
    (1.1, 0.01, 10_000, 1e-5),
    (1.0, 1.0, 1, 1e-5),
    (5.0, 1.0, 50, 1e-5),
    (0.8, 0.05, 500, 1e-6),
    (2.0, 0.002, 3_000, 1e-5),
    (0.5, 0.1, 10, 1e-3),
]


@pytest.mark.parametrize("noise,rate,steps,delta", SETTINGS)
def test_epsilon_agrees_with_opacus_rdp_accountant_and_is_never_larger(noise, rate, steps, delta):
    history = [Mechanism.of(noise, rate, steps)]
    ours, theirs = epsilon(history, delta), _opacus_epsilon(history, delta)
    assert math.isfinite(ours) and ours > 0
    assert ours <= theirs
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_mixed_history_agrees_with_opacus():
    history = [Mechanism.of(1.1, 0.01, 1_000), Mechanism.of(3.0, 1.0, 5), Mechanism.of(1.1, 0.01, 500),
               Mechanism.of(0.9, 0.05, 200)]
    ours, theirs = epsilon(history, DELTA), _opacus_epsilon(history, DELTA)
    assert ours <= theirs
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("noise", [20.0, 50.0])
def test_extended_orders_tighten_full_participation_with_large_noise(noise):
    # Opacus's default orders stop at 63: here the optimum lies beyond, so searching further is
    # strictly tighter, and it is exactly what Opacus gives when handed our orders.
    history = [Mechanism.of(noise, 1.0, 1)]
    ours = epsilon(history, DELTA)
    assert ours < _opacus_epsilon(history, DELTA)
    assert ours == pytest.approx(_opacus_epsilon(history, DELTA, alphas=list(ORDERS)), rel=1e-12)


def test_epsilon_of_empty_history_is_zero_and_delta_must_be_a_probability():
    assert epsilon([], DELTA) == 0.0
    for delta in (0.0, 1.0, -1e-5, 2.0):
        with pytest.raises(ValueError):
            epsilon([Mechanism.of(1.0, 0.1, 10)], delta)


def test_identical_mechanisms_grouped_equal_them_listed():
    a, b = Mechanism.of(1.1, 0.01, 700), Mechanism.of(2.5, 1.0, 3)
    listed = epsilon([a, b, a, a, b], DELTA)
    assert listed == epsilon([a, a, a, b, b], DELTA) == epsilon([b, a, b, a, a], DELTA)
    assert listed == epsilon([Mechanism(a.noise_micro, a.rate_ppb, 3 * a.steps),
                              Mechanism(b.noise_micro, b.rate_ppb, 2 * b.steps)], DELTA)
    # and equals composing every listed mechanism's RDP one by one
    rdp = sum(compute_rdp(q=m.sample_rate, noise_multiplier=m.noise_multiplier, steps=m.steps, orders=ORDERS)
              for m in [a, b, a, a, b])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
        expected, _ = get_privacy_spent(orders=ORDERS, rdp=rdp, delta=DELTA)
    assert listed == pytest.approx(expected, rel=1e-12)


def test_epsilon_grows_with_releases_and_falls_with_noise():
    m = Mechanism.of(1.0, 0.02, 200)
    by_releases = [epsilon([m] * r, DELTA) for r in range(1, 6)]
    assert all(x < y for x, y in itertools.pairwise(by_releases))
    by_noise = [epsilon([Mechanism.of(noise, 0.02, 200)], DELTA) for noise in (0.6, 0.8, 1.0, 1.5, 3.0, 10.0)]
    assert all(x > y for x, y in itertools.pairwise(by_noise))
    # and with the sampling rate, and with a smaller delta
    by_rate = [epsilon([Mechanism.of(1.0, q, 200)], DELTA) for q in (0.001, 0.01, 0.1, 1.0)]
    assert all(x < y for x, y in itertools.pairwise(by_rate))
    assert epsilon([m], 1e-8) > epsilon([m], 1e-5)


@pytest.mark.parametrize("noise,steps", [(1.0, 1), (5.0, 20), (20.0, 1), (50.0, 1), (50.0, 1000)])
def test_full_participation_raises_no_warning(noise, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eps = epsilon([Mechanism.of(noise, 1.0, steps)] * 3, DELTA)
        micro = epsilon_micro([Mechanism.of(noise, 1.0, steps)] * 3, DELTA)
    assert math.isfinite(eps) and eps > 0
    assert micro == math.ceil(eps * 1_000_000)


def test_epsilon_micro_is_an_int_rounded_up():
    history = [Mechanism.of(1.1, 0.01, 10_000)]
    eps, micro = epsilon(history, DELTA), epsilon_micro(history, DELTA)
    assert type(micro) is int
    assert micro == math.ceil(eps * 1_000_000)
    assert eps <= micro / 1_000_000 < eps + 1e-6
    assert epsilon_micro([], DELTA) == 0


def test_epsilon_micro_rounds_up_not_to_nearest(monkeypatch):
    monkeypatch.setattr(accountant, "epsilon", lambda history, delta: 1.0000001)
    assert epsilon_micro([], DELTA) == 1_000_001          # nearest would be 1_000_000: understates
    monkeypatch.setattr(accountant, "epsilon", lambda history, delta: 2.0)
    assert epsilon_micro([], DELTA) == 2_000_000          # exact values are not bumped


def test_delta_units():
    assert delta_units(1e-5) == 10**13
    assert delta_units(1e-18) == 1
    assert type(delta_units(1e-6)) is int


@pytest.mark.parametrize("noise_micro,rate_ppb,steps", [
    (0, 10_000_000, 10), (-1, 10_000_000, 10),                      # no noise
    (1_000_000, 0, 10), (1_000_000, -5, 10),                        # no sampling
    (1_000_000, 1_000_000_001, 10),                                 # rate above 1
    (1_000_000, 10_000_000, 0), (1_000_000, 10_000_000, -3),       # no steps
])
def test_mechanism_rejects_what_is_no_dp_mechanism(noise_micro, rate_ppb, steps):
    with pytest.raises(ValueError):
        Mechanism(noise_micro, rate_ppb, steps)


def test_mechanism_accepts_the_boundaries():
    m = Mechanism(1, 1_000_000_000, 1)
    assert m.sample_rate == 1.0 and m.noise_multiplier == 1e-6


def test_mechanism_of_rounds_to_the_chain_units():
    m = Mechanism.of(1.1, 0.01, 10)
    assert (m.noise_micro, m.rate_ppb, m.steps) == (1_100_000, 10_000_000, 10)
    assert (m.noise_multiplier, m.sample_rate) == (1.1, 0.01)
    m = Mechanism.of(0.12345678, 1 / 3, 5)
    assert (m.noise_micro, m.rate_ppb) == (123_457, 333_333_333)
    assert Mechanism.of(0.12345678, 1 / 3, 5) == m        # same values, same record
    assert m.noise_multiplier == 0.123457 and m.sample_rate == 0.333333333
    # values that round to nothing on chain are no mechanism
    with pytest.raises(ValueError):
        Mechanism.of(4e-7, 0.5, 1)
    with pytest.raises(ValueError):
        Mechanism.of(1.0, 4e-10, 1)
    with pytest.raises(ValueError):
        Mechanism.of(1.0, 1.0000000006, 1)


@pytest.fixture(scope="module")
def calibrated():
    target, rate, steps, releases = 3.0, 0.01, 1_000, 5
    return target, rate, steps, releases, calibrate_noise(target, DELTA, rate, steps, releases)


def test_calibrated_noise_meets_the_target_and_is_minimal(calibrated):
    target, rate, steps, releases, noise = calibrated
    micro = round(noise * 1_000_000)
    assert noise == micro / 1_000_000                       # a value the chain records exactly
    history = [Mechanism(micro, round(rate * 1e9), steps)] * releases
    assert epsilon(history, DELTA) <= target
    less = [Mechanism(micro - 1, round(rate * 1e9), steps)] * releases
    assert epsilon(less, DELTA) > target


def test_calibration_is_deterministic(calibrated):
    target, rate, steps, releases, noise = calibrated
    assert calibrate_noise(target, DELTA, rate, steps, releases) == noise


@pytest.mark.parametrize("target,releases", [(1.0, 20), (8.0, 3)])
def test_calibration_for_client_level_dp(target, releases):
    # full participation, one step a round: the DP-FedAvg case
    noise = calibrate_noise(target, DELTA, 1.0, 1, releases)
    micro = round(noise * 1_000_000)
    assert epsilon([Mechanism(micro, 1_000_000_000, 1)] * releases, DELTA) <= target
    assert epsilon([Mechanism(micro - 1, 1_000_000_000, 1)] * releases, DELTA) > target
    # a looser budget needs less noise
    assert calibrate_noise(2 * target, DELTA, 1.0, 1, releases) < noise


def test_calibration_raises_for_an_unreachable_target():
    with pytest.raises(ConfigError):
        calibrate_noise(1e-3, DELTA, 1.0, 100, 100)


@pytest.mark.parametrize("target", [0.0, -1.0, float("nan")])
def test_calibration_raises_for_a_non_positive_target(target):
    with pytest.raises(ConfigError):
        calibrate_noise(target, DELTA, 0.01, 100, 1)
