"""Simulated wearable vital-sign streams, one device (one patient) per federated client, for
federated prediction of a patient's risk level from raw waveforms: stable, serious or critical.

No recordings of real patients can be shipped or downloaded here, so every window is drawn from
a seeded generative model. Each device streams windows of `window_seconds` of three channels
sampled at `sampling_rate` Hz, simulated with neurokit2:

- ECG: `nk.ecg_simulate(method="simple")` (a Daubechies-wavelet beat, repeated at the window's
  heart rate), simulated at ECG_SIMULATION_RATE Hz or more and decimated through an
  anti-aliasing filter as a device's front end does, started at a random point of the cardiac
  cycle, with a baseline wander at the window's breathing rate and sensor noise (at 10 to 20 Hz
  the filter leaves rounded beats rather than sharp R waves);
- PPG: `nk.ppg_simulate` at the same heart rate (its own beat-to-beat variability and motion
  artefacts), started at a random point of its pulse;
- respiration: `nk.rsp_simulate(method="breathmetrics")` at the window's respiratory rate
  (breaths of varying depth and length, with pauses), started at a random point of a breath.

Each channel is z-scored within its window (a wearable's sensors have arbitrary gains and
offsets), then the window is flattened channel-major into one row of 3 x L float32 values,
L = window_seconds x sampling_rate: "ecg_0".."ecg_{L-1}", "ppg_0".., "rsp_0"..; a model reads a
row back as an array of shape (3, L) (`vital_signs_shape`).

The patient's state moves from window to window along a Markov chain over the three levels
(stable, serious, critical): most patients are mostly stable, some deteriorate, a few are
critical; each patient has its own transition probabilities, its own offsets of heart rate and
breathing rate and its own sensor noise (the clients are not identically distributed). In each
window the heart rate (HR, beats/min) and respiratory rate (RR, breaths/min) are drawn from the
state's ranges (`LEVEL_HR`, `LEVEL_RR`), plus the patient's offsets, clipped to `HR_BOUNDS` and
`RR_BOUNDS`.

The label is not the hidden state but follows from the window's drawn HR and RR, through the
HR and RR bands of NEWS2 (Royal College of Physicians, National Early Warning Score 2, 2017):

    HR sub-score: <= 40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >= 131: 3
    RR sub-score: <= 8: 3,  9-11: 1,  12-20: 0, 21-24: 2, >= 25: 3

(rates are rounded to whole numbers first, as a chart records them). With S the sum of the two
sub-scores, the level (`risk_level`) is

    critical (2): a sub-score of 3, or S >= 4 (HR 111-130 together with RR 21-24);
    serious  (1): otherwise S >= 1;
    stable   (0): S = 0 (HR 51-90 and RR 12-20).

This is a study target derived from NEWS2's HR and RR bands, not a clinical score: NEWS2 also
scores SpO2, supplemental oxygen, systolic blood pressure, temperature and consciousness, which
a wearable of this kind does not measure here, and its escalation thresholds apply to the sum
over all seven. Nor are the waveforms those of real patients: they are simple models of an ECG,
a PPG and a breathing trace at given rates, without arrhythmias, ectopic beats, ST changes or
the coupling of a real pulse to its ECG beat. Over a fleet of 1000 devices of 8 windows, about
53 % of the windows are stable, 27 % serious and 20 % critical.

Each device's stream is split by time: its first windows are its training rows and its last
ceil(test_fraction x windows) its test rows, as a device is scored on what comes next.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from scipy.signal import resample_poly

from fedledger.errors import ConfigError
from fedledger.learning.data import ClientData, check_simulator_arguments, standardize, whole

VITAL_SIGNS_CLASSES = ("stable", "serious", "critical")
VITAL_SIGNS_CHANNELS = ("ecg", "ppg", "rsp")

MAX_CLIENTS = 1000
MAX_WINDOWS = 1000                 # per device
WINDOW_SECONDS = (5, 120)          # a window holds a few breaths even at the slowest rate
SAMPLING_RATE = (10, 500)          # Hz: above twice the fastest heart rate (3 Hz)
MAX_VALUES = 250_000_000           # feature values over the fleet (1 GB of float32): keeps memory bounded

HR_BOUNDS = (30.0, 180.0)          # beats/min a window's heart rate is clipped to
RR_BOUNDS = (5.0, 45.0)            # breaths/min a window's respiratory rate is clipped to
# Per hidden level (stable, serious, critical): the uniform range a window's rate is drawn from,
# before the patient's offset. Serious and critical patients are mostly tachycardic and
# tachypnoeic; a few critical patients are bradycardic and bradypnoeic instead (DEPRESSED).
LEVEL_HR = ((55.0, 86.0), (91.0, 118.0), (118.0, 165.0))
LEVEL_RR = ((12.5, 19.0), (15.0, 23.0), (23.0, 36.0))
DEPRESSED_HR, DEPRESSED_RR = (34.0, 48.0), (5.0, 9.0)
DEPRESSED_SHARE = 0.15             # patients whose critical states are slow (depressed breathing and pulse), not fast
HR_OFFSET_SD, RR_OFFSET_SD = 4.0, 1.0   # the patient's offsets (beats/min, breaths/min), normally drawn

# Patient kinds: share of the fleet, distribution of the first window's level, transition matrix
# (rows: from stable, serious, critical). Each patient draws its own rows around these
# (Dirichlet, TRANSITION_CONCENTRATION).
PATIENT_KINDS = {
    "mostly_stable": (0.50, (0.9, 0.1, 0.0), ((0.92, 0.07, 0.01), (0.45, 0.50, 0.05), (0.20, 0.50, 0.30))),
    "deteriorating": (0.36, (0.5, 0.5, 0.0), ((0.70, 0.28, 0.02), (0.08, 0.80, 0.12), (0.02, 0.28, 0.70))),
    "critical":      (0.14, (0.0, 0.3, 0.7), ((0.50, 0.40, 0.10), (0.05, 0.55, 0.40), (0.01, 0.09, 0.90))),
}
TRANSITION_CONCENTRATION = 30.0

# Sensor noise per patient (white, as a share of the clean channel's standard deviation, drawn
# uniformly), and the ECG's respiratory baseline wander (amplitude over the ECG's peak-to-peak).
NOISE = {"ecg": (0.02, 0.15), "ppg": (0.02, 0.12), "rsp": (0.02, 0.12)}
ECG_WANDER = (0.0, 0.15)
ECG_SIMULATION_RATE = 125          # Hz: the ECG is simulated at this rate at least, then decimated
PPG_FREQUENCY_MODULATION = 0.08    # neurokit2's respiratory sinus arrhythmia strength for the PPG


def load_vital_signs(num_clients: int, seed: int, test_fraction: float = 0.3, windows_per_client: int = 8,
                     window_seconds: int = 20, sampling_rate: int = 25) -> list[ClientData]:
    """num_clients wearable devices named device_0.., one patient each, with windows_per_client
    consecutive windows of its patient's stream, each a row of 3 x L float32 values (ECG, PPG
    and respiration, L = window_seconds x sampling_rate; see vital_signs_shape).

    The split is by time: the stream's first windows are the training rows, its last
    ceil(test_fraction x windows) the test rows, as a device is scored on what comes next.
    y is the risk level's index in VITAL_SIGNS_CLASSES (float32), from the window's heart and
    respiratory rates by `risk_level`. The same arguments always give the same data, and device i
    is the same patient whatever num_clients is (see `patient_stream`).

    All devices z-score with the statistics of all training rows together, as load_device_traffic
    does (each window is already z-scored per channel, so these are near 0 and 1; they are kept so
    that a bundle can rescale new windows).
    """
    _check(num_clients, seed, test_fraction, windows_per_client, window_seconds, sampling_rate)
    n_test = math.ceil(test_fraction * windows_per_client)   # as scikit-learn's split rounds the test side
    n_train = windows_per_client - n_test
    streams = [_stream(seq, windows_per_client, window_seconds, sampling_rate)
               for seq in np.random.SeedSequence(seed).spawn(num_clients)]
    rows = [s.windows.reshape(windows_per_client, -1) for s in streams]
    mean, std = standardize(np.concatenate([x[:n_train] for x in rows]))
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    names = {"feature_names": vital_signs_features(window_seconds, sampling_rate), "classes": VITAL_SIGNS_CLASSES}
    return [ClientData(f"device_{i}", scale(x[:n_train]), s.labels[:n_train].astype(np.float32),
                       scale(x[n_train:]), s.labels[n_train:].astype(np.float32), mean, std, **names)
            for i, (x, s) in enumerate(zip(rows, streams))]


def vital_signs_shape(window_seconds: int = 20, sampling_rate: int = 25) -> tuple[int, int]:
    """The shape (channels, samples) a row of load_vital_signs reads back as: (3, window_seconds x sampling_rate)."""
    return len(VITAL_SIGNS_CHANNELS), window_seconds * sampling_rate


def vital_signs_features(window_seconds: int = 20, sampling_rate: int = 25) -> tuple[str, ...]:
    """The feature names of a row: "ecg_0".."ecg_{L-1}", then "ppg_0".., then "rsp_0".."""
    length = window_seconds * sampling_rate
    return tuple(f"{channel}_{k}" for channel in VITAL_SIGNS_CHANNELS for k in range(length))


def news2_heart_rate_score(heart_rate: float) -> int:
    """NEWS2's heart-rate sub-score (0 to 3) of a rate in beats/min, rounded to a whole number."""
    hr = _rounded(heart_rate)
    return 3 if hr <= 40 else 1 if hr <= 50 else 0 if hr <= 90 else 1 if hr <= 110 else 2 if hr <= 130 else 3


def news2_respiratory_rate_score(respiratory_rate: float) -> int:
    """NEWS2's respiration-rate sub-score (0 to 3) of a rate in breaths/min, rounded to a whole number."""
    rr = _rounded(respiratory_rate)
    return 3 if rr <= 8 else 1 if rr <= 11 else 0 if rr <= 20 else 2 if rr <= 24 else 3


def risk_level(heart_rate: float, respiratory_rate: float) -> int:
    """The class index (0 stable, 1 serious, 2 critical) of a window with these rates: critical
    when a sub-score is 3 or both add up to 4 or more, serious when they add up to 1 or more,
    stable otherwise (see the module's docstring)."""
    hr, rr = news2_heart_rate_score(heart_rate), news2_respiratory_rate_score(respiratory_rate)
    if hr == 3 or rr == 3 or hr + rr >= 4:
        return 2
    return 1 if hr + rr >= 1 else 0


def _rounded(rate: float) -> int:
    return int(math.floor(float(rate) + 0.5))   # half up: 90.5 beats/min is charted as 91


@dataclass(frozen=True)
class PatientStream:
    """One device's consecutive windows: `windows` (n, 3, L) float32, each channel z-scored within
    its window; per window the heart rate and respiratory rate it was simulated at, the patient's
    hidden state (0 to 2) and the label (risk_level of the two rates, int64)."""

    windows: np.ndarray
    heart_rate: np.ndarray
    respiratory_rate: np.ndarray
    state: np.ndarray
    labels: np.ndarray


def patient_stream(seed: int, index: int, windows_per_client: int = 8, window_seconds: int = 20,
                   sampling_rate: int = 25) -> PatientStream:
    """The stream of device `index` of the fleet load_vital_signs(..., seed, ...) makes, before the
    fleet-wide standardization: its rows are `windows` flattened."""
    _check(2, seed, 0.5, windows_per_client, window_seconds, sampling_rate)
    if not whole(index) or not 0 <= index < MAX_CLIENTS:
        raise ConfigError(f"index must be a whole number from 0 to {MAX_CLIENTS - 1}, got {index!r}")
    seq = np.random.SeedSequence(seed).spawn(index + 1)[index]
    return _stream(seq, windows_per_client, window_seconds, sampling_rate)


def _check(num_clients: int, seed: int, test_fraction: float, windows_per_client: int, window_seconds: int,
           sampling_rate: int) -> None:
    check_simulator_arguments(num_clients, MAX_CLIENTS, seed, test_fraction)
    if not whole(windows_per_client) or not 2 <= windows_per_client <= MAX_WINDOWS:
        raise ConfigError(f"windows_per_client must be a whole number from 2 to {MAX_WINDOWS}, "
                          f"got {windows_per_client!r}")
    if not whole(window_seconds) or not WINDOW_SECONDS[0] <= window_seconds <= WINDOW_SECONDS[1]:
        raise ConfigError(f"window_seconds must be a whole number from {WINDOW_SECONDS[0]} to {WINDOW_SECONDS[1]}, "
                          f"got {window_seconds!r}")
    if not whole(sampling_rate) or not SAMPLING_RATE[0] <= sampling_rate <= SAMPLING_RATE[1]:
        raise ConfigError(f"sampling_rate must be a whole number of Hz from {SAMPLING_RATE[0]} to "
                          f"{SAMPLING_RATE[1]}, got {sampling_rate!r}")
    n_test = math.ceil(test_fraction * windows_per_client)
    if windows_per_client - n_test < 1:
        raise ConfigError(f"test_fraction={test_fraction} leaves no training window of {windows_per_client} "
                          f"windows_per_client (it takes {n_test} as test windows); each device needs at least "
                          f"one of each")
    values = num_clients * windows_per_client * len(VITAL_SIGNS_CHANNELS) * window_seconds * sampling_rate
    if values > MAX_VALUES:
        raise ConfigError(f"num_clients={num_clients} x windows_per_client={windows_per_client} windows of "
                          f"window_seconds={window_seconds} at sampling_rate={sampling_rate} Hz make {values:,} "
                          f"values, more than the {MAX_VALUES:,} this simulator holds in memory")


class _Patient:
    """One patient's hidden course and traits: its kind's transition matrix, drawn afresh around
    the kind's, its rate offsets, whether its critical states depress breathing, its sensor noise."""

    def __init__(self, rng: np.random.Generator) -> None:
        kinds = list(PATIENT_KINDS.values())
        _, start, transitions = kinds[rng.choice(len(kinds), p=[k[0] for k in kinds])]
        self.start = np.asarray(start)
        self.transitions = np.array([rng.dirichlet(TRANSITION_CONCENTRATION * np.asarray(row) + 0.05)
                                     for row in transitions])
        self.hr_offset = float(rng.normal(0.0, HR_OFFSET_SD))
        self.rr_offset = float(rng.normal(0.0, RR_OFFSET_SD))
        self.depressed = bool(rng.uniform() < DEPRESSED_SHARE)
        self.noise = {channel: float(rng.uniform(*NOISE[channel])) for channel in VITAL_SIGNS_CHANNELS}
        self.wander = float(rng.uniform(*ECG_WANDER))

    def course(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The hidden level (0 to 2) of n consecutive windows."""
        states = np.empty(n, np.int64)
        states[0] = rng.choice(3, p=self.start)
        for t in range(1, n):
            states[t] = rng.choice(3, p=self.transitions[states[t - 1]])
        return states

    def rates(self, states: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Each window's heart rate and respiratory rate (per minute) from its level."""
        n = len(states)
        hr_range = np.array([DEPRESSED_HR if s == 2 and self.depressed else LEVEL_HR[s] for s in states])
        rr_range = np.array([DEPRESSED_RR if s == 2 and self.depressed else LEVEL_RR[s] for s in states])
        hr = rng.uniform(hr_range[:, 0], hr_range[:, 1], n) + self.hr_offset
        rr = rng.uniform(rr_range[:, 0], rr_range[:, 1], n) + self.rr_offset
        return np.clip(hr, *HR_BOUNDS), np.clip(rr, *RR_BOUNDS)


def _stream(seq: np.random.SeedSequence, n: int, window_seconds: int, sampling_rate: int) -> PatientStream:
    """A patient's n windows, every draw from generators spawned off `seq` (one per window for
    the waveforms, so a window does not depend on how the neurokit2 calls before it used theirs)."""
    patient_seq, course_seq, *window_seqs = seq.spawn(n + 2)
    rng = np.random.default_rng(course_seq)
    patient = _Patient(np.random.default_rng(patient_seq))
    states = patient.course(n, rng)
    hr, rr = patient.rates(states, rng)
    windows = np.stack([_window(h, r, window_seconds, sampling_rate, patient.noise, patient.wander, s)
                        for h, r, s in zip(hr, rr, window_seqs)])
    labels = np.array([risk_level(h, r) for h, r in zip(hr, rr)], np.int64)
    return PatientStream(windows, hr, rr, states, labels)


def _neurokit() -> ModuleType:
    """neurokit2, imported on first use (it takes seconds and only this loader needs it),
    without the DeprecationWarning its import of scipy.misc raises under recent SciPy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import neurokit2
    return neurokit2


def _window(heart_rate: float, respiratory_rate: float, window_seconds: int, sampling_rate: int,
            noise: dict[str, float], wander: float, seq: np.random.SeedSequence) -> np.ndarray:
    """One window (3, L) float32 at these rates, each channel z-scored.

    Each neurokit2 call gets a numpy Generator of its own: given an int seed, neurokit2 makes a
    legacy RandomState and spawns children from it, which costs about a millisecond a call;
    Generators spawn in microseconds.
    """
    nk = _neurokit()
    ecg_seq, ppg_seq, rsp_seq, own_seq = seq.spawn(4)
    own = np.random.default_rng(own_seq)
    fs, length = sampling_rate, window_seconds * sampling_rate
    beat, breath = 60.0 / heart_rate, 60.0 / respiratory_rate
    t = np.arange(length) / fs

    # ECG: "simple" tiles int(duration x rate / 60) beats over `length` samples, so a duration of
    # whole beats keeps the rate exact. It is simulated at ECG_SIMULATION_RATE Hz or more and then
    # decimated with an anti-aliasing filter, as a device's front end does: tiled straight at a
    # low rate its narrow R waves would be sampled at random phases (heights up and down). Two
    # beats more than the window give room for a random start clear of the filter's edges.
    factor = max(1, math.ceil(ECG_SIMULATION_RATE / fs))
    beats = math.ceil(window_seconds / beat) + 2
    sim_length = int(round(beats * beat * fs * factor))
    ecg = nk.ecg_simulate(duration=beats * beat * (1 + 1e-9), length=sim_length, sampling_rate=fs * factor,
                          heart_rate=heart_rate, method="simple", noise=0,
                          random_state=np.random.default_rng(ecg_seq))
    ecg = resample_poly(np.asarray(ecg), 1, factor) if factor > 1 else np.asarray(ecg)
    margin = int(beat * fs / 2)
    ecg = _crop(ecg, length, own.integers(margin, max(margin, len(ecg) - length - margin) + 1))
    ecg = ecg + wander * np.ptp(ecg) * np.sin(2 * np.pi * t / breath + own.uniform(0, 2 * np.pi))

    # PPG: landmarks of whole pulses only, so the signal ends flat after the last one; simulate a
    # few pulses more than the window and start at a random point of the first. neurokit2 prints
    # (not warns) when its beat-to-beat modulation would make an interval under 0.3 s: keep clear.
    shortest = beat * (1 - PPG_FREQUENCY_MODULATION / 2)
    ibi_randomness = float(np.clip(0.95 - 0.3 / shortest, 0.0, 0.1))
    ppg_seconds = int(math.ceil(window_seconds + 3 * beat + 1))
    with warnings.catch_warnings():   # pulses closer than a sample at low rates: neurokit2 averages them
        warnings.filterwarnings("ignore", message="Duplicate x values")
        ppg = nk.ppg_simulate(duration=ppg_seconds, sampling_rate=fs, heart_rate=heart_rate,
                              frequency_modulation=PPG_FREQUENCY_MODULATION, ibi_randomness=ibi_randomness,
                              drift=0, motion_amplitude=0.1, powerline_amplitude=0, burst_number=0,
                              random_state=np.random.default_rng(ppg_seq))
    ppg = _crop(np.asarray(ppg), length, own.integers(0, int(beat * fs) + 1))

    # Respiration: breathmetrics builds whole breaths from the start, half as many again as the
    # duration holds; a breath and a half more than the window leaves room to start at a random
    # point of a breath, and two breaths at least keep it from averaging an empty list of intervals.
    rsp_seconds = int(math.ceil(max(window_seconds + 1.5 * breath, 2 * breath)))
    rsp = nk.rsp_simulate(duration=rsp_seconds, sampling_rate=fs, respiratory_rate=respiratory_rate,
                          method="breathmetrics", noise=0, random_state=np.random.default_rng(rsp_seq))
    rsp = _crop(np.asarray(rsp), length, own.integers(0, int(breath * fs) + 1))

    channels = []
    for name, signal in zip(VITAL_SIGNS_CHANNELS, (ecg, ppg, rsp)):
        signal = signal + own.normal(0.0, noise[name] * signal.std(), length)
        channels.append((signal - signal.mean()) / max(float(signal.std()), 1e-12))
    return np.stack(channels).astype(np.float32)


def _crop(signal: np.ndarray, length: int, start: int) -> np.ndarray:
    """`length` samples of `signal` from `start` (from 0 if the signal is too short; padded with
    its last value if it is still too short, which the durations above avoid)."""
    if len(signal) < start + length:
        start = max(0, len(signal) - length)
    piece = signal[start:start + length]
    return np.pad(piece, (0, length - len(piece)), mode="edge") if len(piece) < length else piece
