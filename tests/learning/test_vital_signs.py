"""The simulated wearable vital-sign streams for federated risk-level prediction."""

import math
import warnings

import numpy as np
import pytest
from scipy.signal import find_peaks

from fedledger.errors import ConfigError
from fedledger.learning.vital_signs import (
    HR_BOUNDS,
    RR_BOUNDS,
    VITAL_SIGNS_CHANNELS,
    VITAL_SIGNS_CLASSES,
    _window,
    load_vital_signs,
    news2_heart_rate_score,
    news2_respiratory_rate_score,
    patient_stream,
    risk_level,
    vital_signs_shape,
)

SMALL = {"windows_per_client": 4, "window_seconds": 10, "sampling_rate": 25}   # rows of 3 x 250 values
FIELDS = ("x_train", "y_train", "x_test", "y_test", "feature_mean", "feature_std")


def test_names_classes_and_shapes():
    assert VITAL_SIGNS_CLASSES == ("stable", "serious", "critical")
    assert VITAL_SIGNS_CHANNELS == ("ecg", "ppg", "rsp")
    assert vital_signs_shape() == (3, 500) and vital_signs_shape(10, 25) == (3, 250)
    clients = load_vital_signs(4, seed=1, test_fraction=0.25, **SMALL)
    assert [c.name for c in clients] == [f"device_{i}" for i in range(4)]
    for c in clients:
        assert c.x_train.dtype == c.x_test.dtype == c.y_train.dtype == c.y_test.dtype == np.float32
        assert c.x_train.shape == (3, 750) and c.x_test.shape == (1, 750)
        assert c.y_train.shape == (3,) and c.y_test.shape == (1,)
        assert c.feature_mean.shape == c.feature_std.shape == (750,)
        assert c.classes == VITAL_SIGNS_CLASSES
        assert len(c.feature_names) == 750 and len(set(c.feature_names)) == 750
        assert c.feature_names[:2] == ("ecg_0", "ecg_1") and c.feature_names[249:251] == ("ecg_249", "ppg_0")
        assert c.feature_names[500] == "rsp_0" and c.feature_names[-1] == "rsp_249"
        assert np.all(np.isfinite(c.x_train)) and np.all(np.isfinite(c.x_test))
        assert set(np.unique(np.concatenate([c.y_train, c.y_test]))) <= {0.0, 1.0, 2.0}


def test_default_stream_is_eight_windows_of_twenty_seconds_at_25_hz():
    c = load_vital_signs(2, seed=0)[0]
    assert c.num_features == 3 * 20 * 25
    assert c.num_train == 5 and len(c.y_test) == math.ceil(0.3 * 8) == 3


def test_same_seed_same_bytes_other_seed_other_data():
    a, b = load_vital_signs(3, seed=5, **SMALL), load_vital_signs(3, seed=5, **SMALL)
    for x, y in zip(a, b):
        for field in FIELDS:
            assert getattr(x, field).tobytes() == getattr(y, field).tobytes()
    c = load_vital_signs(3, seed=6, **SMALL)
    assert not np.array_equal(a[0].x_train, c[0].x_train)
    first = patient_stream(5, 0, **SMALL)
    assert not np.array_equal(first.heart_rate, patient_stream(6, 0, **SMALL).heart_rate)
    # and devices are different patients
    assert not np.array_equal(first.heart_rate, patient_stream(5, 1, **SMALL).heart_rate)


def test_test_rows_are_the_streams_last_windows():
    clients = load_vital_signs(3, seed=2, test_fraction=0.3, **SMALL)   # ceil(0.3 x 4) = 2 test windows
    mean, std = clients[0].feature_mean, clients[0].feature_std
    for i, c in enumerate(clients):
        stream = patient_stream(2, i, **SMALL)
        rows = stream.windows.reshape(4, -1)
        assert stream.windows.shape == (4, 3, 250) and stream.windows.dtype == np.float32
        np.testing.assert_array_equal(c.x_train, ((rows[:2] - mean) / std).astype(np.float32))
        np.testing.assert_array_equal(c.x_test, ((rows[2:] - mean) / std).astype(np.float32))
        np.testing.assert_array_equal(c.y_train, stream.labels[:2].astype(np.float32))
        np.testing.assert_array_equal(c.y_test, stream.labels[2:].astype(np.float32))
    # a device is the same patient however large the fleet
    bigger = load_vital_signs(5, seed=2, test_fraction=0.3, **SMALL)
    np.testing.assert_array_equal(bigger[1].y_test, clients[1].y_test)


def test_windows_are_z_scored_per_channel_and_the_fleet_standardizes_its_training_rows():
    stream = patient_stream(3, 0, **SMALL)
    np.testing.assert_allclose(stream.windows.mean(axis=2), 0.0, atol=1e-5)
    np.testing.assert_allclose(stream.windows.std(axis=2), 1.0, atol=1e-5)
    clients = load_vital_signs(5, seed=3, **SMALL)
    pooled = np.concatenate([c.x_train for c in clients]).astype(np.float64)
    np.testing.assert_allclose(pooled.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pooled.std(axis=0, ddof=1), 1.0, atol=1e-4)
    for c in clients:
        np.testing.assert_array_equal(c.feature_mean, clients[0].feature_mean)   # one scaling for all
        np.testing.assert_array_equal(c.feature_std, clients[0].feature_std)


@pytest.mark.parametrize("rate, score", [
    (30, 3), (40, 3), (40.4, 3), (40.5, 1), (41, 1), (50, 1), (51, 0), (90, 0), (90.4, 0), (90.5, 1), (91, 1),
    (110, 1), (111, 2), (130, 2), (131, 3), (180, 3)])
def test_news2_heart_rate_bands(rate, score):
    assert news2_heart_rate_score(rate) == score


@pytest.mark.parametrize("rate, score", [
    (5, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (20.5, 2), (21, 2), (24, 2), (25, 3), (45, 3)])
def test_news2_respiratory_rate_bands(rate, score):
    assert news2_respiratory_rate_score(rate) == score


@pytest.mark.parametrize("hr, rr, level", [
    (51, 12, 0), (90, 20, 0), (70, 16, 0),             # both sub-scores 0: stable
    (50, 16, 1), (91, 16, 1), (70, 11, 1), (70, 9, 1),  # one sub-score of 1
    (110, 11, 1), (130, 16, 1), (70, 24, 1),            # 1 + 1, a single 2
    (111, 11, 1), (45, 21, 1), (91, 21, 1),             # sums of 3
    (111, 21, 2), (130, 24, 2),                         # 2 + 2 = 4: critical
    (40, 16, 2), (131, 16, 2), (70, 8, 2), (70, 25, 2), (60, 5, 2),   # a sub-score of 3
])
def test_risk_level_from_the_news2_bands(hr, rr, level):
    assert risk_level(hr, rr) == level
    assert VITAL_SIGNS_CLASSES[level] in ("stable", "serious", "critical")


def test_labels_follow_the_window_rates_and_every_class_occurs_over_a_fleet():
    streams = [patient_stream(0, i, windows_per_client=4, window_seconds=5, sampling_rate=10) for i in range(50)]
    labels = np.concatenate([s.labels for s in streams])
    for s in streams:
        assert s.labels.tolist() == [risk_level(h, r) for h, r in zip(s.heart_rate, s.respiratory_rate)]
        assert np.all((HR_BOUNDS[0] <= s.heart_rate) & (s.heart_rate <= HR_BOUNDS[1]))
        assert np.all((RR_BOUNDS[0] <= s.respiratory_rate) & (s.respiratory_rate <= RR_BOUNDS[1]))
        assert set(s.state.tolist()) <= {0, 1, 2}
    share = np.bincount(labels, minlength=3) / len(labels)
    assert share[0] > 0.3 and share[1] > 0.1 and share[2] > 0.05, share
    # patients differ (non-IID): some stay stable throughout, others are never stable
    assert any(set(s.labels.tolist()) == {0} for s in streams)
    assert any(0 not in s.labels for s in streams)
    # and the loader labels its rows the same way
    clients = load_vital_signs(50, seed=0, windows_per_client=4, window_seconds=5, sampling_rate=10)
    loaded = np.concatenate([np.concatenate([c.y_train, c.y_test]) for c in clients])
    np.testing.assert_array_equal(loaded, labels.astype(np.float32))


def _r_to_r_rate(ecg: np.ndarray, sampling_rate: int) -> float:
    """Beats per minute from the median interval between R peaks (the tallest, sharpest waves)."""
    peaks, _ = find_peaks(ecg, prominence=2.0, distance=int(sampling_rate * 60 / 200 * 0.8))
    return 60.0 * sampling_rate / float(np.median(np.diff(peaks)))


def _dominant_rate(signal: np.ndarray, sampling_rate: int, low: float, high: float) -> float:
    """The per-minute frequency of the spectrum's largest peak between low and high per minute."""
    n = 8 * len(signal)   # zero-padded: finer frequency steps
    freqs = np.fft.rfftfreq(n, 1.0 / sampling_rate) * 60.0
    power = np.abs(np.fft.rfft(signal - signal.mean(), n))
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(power[band])])


@pytest.mark.parametrize("sampling_rate, tolerance", [(100, 0.03), (25, 0.07)])
def test_ecg_beats_at_the_drawn_heart_rate_and_breathing_at_the_drawn_rate(sampling_rate, tolerance):
    rates = []
    for index in range(6):
        stream = patient_stream(4, index, windows_per_client=3, window_seconds=10, sampling_rate=sampling_rate)
        for window, hr, rr in zip(stream.windows, stream.heart_rate, stream.respiratory_rate):
            assert _r_to_r_rate(window[0], sampling_rate) == pytest.approx(hr, rel=tolerance)
            rates.append((_dominant_rate(window[2], sampling_rate, 3.0, 60.0), rr))
    # breaths vary in length, and 10 s hold few of them: the respiration's rate is only roughly the drawn one
    found, drawn = np.array(rates).T
    assert np.median(np.abs(found / drawn - 1)) < 0.15
    assert np.corrcoef(found, drawn)[0, 1] > 0.8


@pytest.mark.parametrize("sampling_rate, window_seconds", [(10, 5), (500, 5), (25, 120)])
def test_extreme_rates_give_clean_windows_silently(sampling_rate, window_seconds, capsys):
    noise = {channel: 0.15 for channel in VITAL_SIGNS_CHANNELS}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k, (hr, rr) in enumerate([(HR_BOUNDS[0], RR_BOUNDS[0]), (HR_BOUNDS[1], RR_BOUNDS[1]),
                                      (HR_BOUNDS[1], RR_BOUNDS[0]), (HR_BOUNDS[0], RR_BOUNDS[1])]):
            window = _window(hr, rr, window_seconds, sampling_rate, noise, 0.15, np.random.SeedSequence(k))
            assert window.shape == (3, window_seconds * sampling_rate) and window.dtype == np.float32
            assert np.all(np.isfinite(window))
            np.testing.assert_allclose(window.std(axis=1), 1.0, atol=1e-4)
            # no flat stretch: a simulator that ran out of signal would pad one
            tail = window[:, -max(3, sampling_rate // 2):]
            assert np.all(tail.std(axis=1) > 1e-3)
    assert capsys.readouterr().out == ""   # neurokit2 prints when asked for implausible beat intervals


@pytest.mark.parametrize("kwargs, named", [
    ({"num_clients": 1}, "num_clients"), ({"num_clients": 1001}, "num_clients"), ({"num_clients": 2.0}, "num_clients"),
    ({"num_clients": True}, "num_clients"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"test_fraction": 0.0}, "test_fraction"), ({"test_fraction": 1.0}, "test_fraction"),
    ({"test_fraction": "0.3"}, "test_fraction"), ({"test_fraction": 0.9, "windows_per_client": 4}, "test_fraction"),
    ({"windows_per_client": 1}, "windows_per_client"), ({"windows_per_client": 1001}, "windows_per_client"),
    ({"window_seconds": 4}, "window_seconds"), ({"window_seconds": 121}, "window_seconds"),
    ({"window_seconds": 10.0}, "window_seconds"), ({"sampling_rate": 9}, "sampling_rate"),
    ({"sampling_rate": 501}, "sampling_rate"),
    ({"num_clients": 1000, "windows_per_client": 1000, "window_seconds": 120, "sampling_rate": 500}, "num_clients"),
])
def test_bad_inputs_are_refused(kwargs, named):
    args = {"num_clients": 2, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=named):
        load_vital_signs(**args)


def test_bad_stream_index_is_refused():
    with pytest.raises(ConfigError, match="index"):
        patient_stream(0, -1)
    with pytest.raises(ConfigError, match="sampling_rate"):
        patient_stream(0, 0, sampling_rate=5)
