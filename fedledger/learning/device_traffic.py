"""Simulated traffic of hospital IoMT devices (infusion pumps, patient monitors, wearables
gateways, ventilators), for federated intrusion detection: normal telemetry against spoofing,
replay, flooding and injection.

No public capture of hospital device traffic can be shipped or downloaded here, so each row is
drawn from a seeded generative model: one minute of one device's traffic, summarized as the
flow features an intrusion detector on a hospital network sees (rates, sizes, timing, protocol
mix, sequence numbers, payload statistics, authentication). Each device type has its own normal
profile, and each attack shifts some features relative to that profile, by a random intensity
per row, so that weak attacks overlap normal traffic:

- spoofing: a foreign source claims a device's identity: identity mismatches and authentication
  failures, more destinations, less TLS (the spoofer lacks the device's certificate);
- replay: captured packets sent again: repeated payloads, stale (old) sequence numbers;
- flooding: packet rate up several times, small UDP packets or large TCP ones;
- injection: forged commands: command rate up, payload entropy off the device's norm in either
  direction (scripted plaintext below it, packed payloads above), more varied packet sizes.

Because the shifts are relative to each device type's norm (a flooded pump sends at a rate
that is normal for a monitor) and floods and injections move some features either way, a linear
model does not separate the classes fully and a small MLP does better. Hospitals differ
(non-IID): each has its own device mix, network (latency, loss, TLS adoption, rate scale) and
training attack mix, 1 to 3 of the 4 attacks; every attack is in the training rows of at least two
hospitals (of one where there are only two), and every hospital's test rows hold all five
classes, so per-attack detection is also measured on attacks a hospital never trained on, which
is what federating should bring.
"""

from __future__ import annotations

import math

import numpy as np

from fedledger.errors import ConfigError
from fedledger.learning.data import ClientData, check_simulator_arguments, standardize, whole

Features = dict[str, np.ndarray]   # feature name -> one value per window

DEVICE_TRAFFIC_CLASSES = ("normal", "spoofing", "replay", "flooding", "injection")
DEVICE_TRAFFIC_FEATURES = (
    "packets_per_s",              # packets per second in the window
    "bytes_per_packet_mean",
    "bytes_per_packet_std",
    "inter_arrival_ms_mean",
    "inter_arrival_ms_std",
    "distinct_destinations",      # distinct destination addresses in the window
    "tcp_share",                  # shares of packets: TCP, UDP (the rest is ICMP and other)
    "udp_share",
    "tls_share",                  # share of the payload bytes inside TLS
    "sequence_gap_mean",          # mean forward jump of application sequence numbers (1: none lost)
    "stale_sequence_ratio",       # share of messages whose sequence number was already seen or is older
    "repeated_payload_ratio",     # share of messages whose payload equals an earlier one in the window
    "commands_per_min",           # control commands (set rate, alarm limits, ...) addressed to the device
    "payload_entropy_bits",       # Shannon entropy of payload bytes, bits per byte (0 to 8)
    "auth_failures_per_min",      # failed message authentications (MAC or session token)
    "identity_mismatch_ratio",    # share of packets whose MAC/IP/certificate pairing is not the registered one
)
DEVICE_TYPES = ("infusion_pump", "patient_monitor", "wearable_gateway", "ventilator")

# Normal profile per device type, in DEVICE_TYPES order. rate: median packets/s; size: bytes per
# packet; size_cv: spread of packet sizes over their mean; iat_cv: jitter over the mean
# inter-arrival time; dsts: mean destinations; tcp/udp/tls: mean shares; stale, repeat,
# mismatch: mean ratios; cmd, auth: mean per minute; entropy: mean and sd, bits per byte.
_PROFILES = {
    "rate":     np.array([2.0, 30.0, 12.0, 6.0]),
    "size":     np.array([120.0, 700.0, 260.0, 360.0]),
    "size_cv":  np.array([0.15, 0.35, 0.6, 0.1]),
    "iat_cv":   np.array([0.3, 0.15, 0.9, 0.1]),
    "dsts":     np.array([1.5, 3.0, 8.0, 2.0]),
    "tcp":      np.array([0.92, 0.35, 0.85, 0.97]),
    "udp":      np.array([0.06, 0.62, 0.12, 0.02]),
    "tls":      np.array([0.55, 0.3, 0.92, 0.15]),
    "stale":    np.array([0.01, 0.02, 0.015, 0.005]),
    "repeat":   np.array([0.40, 0.06, 0.08, 0.25]),
    "cmd":      np.array([0.8, 0.1, 0.3, 1.5]),
    "entropy":  np.array([4.4, 6.3, 7.5, 5.6]),
    "entropy_sd": np.array([0.3, 0.3, 0.2, 0.25]),
    "auth":     np.array([0.05, 0.03, 0.6, 0.05]),
    "mismatch": np.array([0.005, 0.005, 0.04, 0.005]),
}
TRAIN_NORMAL_SHARE = (0.5, 0.7)   # a hospital's share of normal training rows is drawn from this range
TEST_NORMAL_SHARE = 0.5           # about half of each test set is normal, the rest split evenly over the attacks
MIN_TEST_PER_CLASS = 4            # per hospital and class in the test set
MIN_TRAIN_PER_ATTACK = 3          # per hospital and attack it trains on
MIN_TRAIN_ROWS = 40               # per hospital: its 30% or more attack rows then hold 3 x MIN_TRAIN_PER_ATTACK
MAX_ROWS = 1_000_000              # per hospital: keeps memory bounded
MAX_CLIENTS = 1000
MAX_SEEN_ATTACKS = 3              # every hospital trains without at least one attack
COVERAGE = 2                      # hospitals that train on each attack (where there are more than 2)
INTENSITY = (0.3, 1.0)            # an attack's strength per row, drawn uniformly: weak ones overlap normal traffic
DEVICE_MIX_ALPHA = 2.0            # Dirichlet concentration of each hospital's device mix


def load_device_traffic(num_clients: int, seed: int, test_fraction: float = 0.3,
                        rows_per_client: int = 600) -> list[ClientData]:
    """num_clients hospitals named hospital_0.., each with rows_per_client windows of device
    traffic: ceil(test_fraction x rows) test rows holding every class, the rest training rows of
    normal traffic and the 1 to 3 attacks the hospital has met. y is the class index in
    DEVICE_TRAFFIC_CLASSES (float32); the same arguments always give the same data.

    All hospitals z-score with the statistics of all training rows together, as
    load_breast_cancer does: each hospital's own statistics would centre it on its own device and
    attack mix, and the consortium-wide means and variances are what a federated
    standardization step computes from each site's count, sum and sum of squares.
    """
    _check(num_clients, seed, test_fraction, rows_per_client)
    n_test = math.ceil(test_fraction * rows_per_client)   # as scikit-learn's split rounds the test side
    n_train = rows_per_client - n_test
    root = np.random.SeedSequence(seed)
    plan_seq, *site_seqs = root.spawn(num_clients + 1)
    seen = _seen_attacks(num_clients, np.random.default_rng(plan_seq))
    raw = []
    for i, seq in enumerate(site_seqs):
        rng = np.random.default_rng(seq)
        site = _Site(rng)
        train_y = _train_labels(n_train, seen[i], rng)
        test_y = _test_labels(n_test)
        raw.append((site.windows(train_y, rng), train_y, site.windows(test_y, rng), test_y))
    mean, std = standardize(np.concatenate([x for x, _, _, _ in raw]))
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    names = {"feature_names": DEVICE_TRAFFIC_FEATURES, "classes": DEVICE_TRAFFIC_CLASSES}
    return [ClientData(f"hospital_{i}", scale(x_tr), y_tr.astype(np.float32), scale(x_te), y_te.astype(np.float32),
                       mean, std, **names)
            for i, (x_tr, y_tr, x_te, y_te) in enumerate(raw)]


def _check(num_clients: int, seed: int, test_fraction: float, rows_per_client: int) -> None:
    check_simulator_arguments(num_clients, MAX_CLIENTS, seed, test_fraction)
    if not whole(rows_per_client) or not 0 < rows_per_client <= MAX_ROWS:
        raise ConfigError(f"rows_per_client must be a whole number from 1 to {MAX_ROWS:,}, got {rows_per_client!r}")
    n_test = math.ceil(test_fraction * rows_per_client)
    n_train = rows_per_client - n_test
    if n_test < len(DEVICE_TRAFFIC_CLASSES) * MIN_TEST_PER_CLASS or n_train < MIN_TRAIN_ROWS:
        raise ConfigError(f"rows_per_client={rows_per_client} with test_fraction={test_fraction} gives {n_train} "
                          f"training and {n_test} test rows per hospital; each hospital needs at least "
                          f"{MIN_TRAIN_ROWS} training rows and {len(DEVICE_TRAFFIC_CLASSES) * MIN_TEST_PER_CLASS} "
                          f"test rows ({MIN_TEST_PER_CLASS} of each class)")


def _seen_attacks(num_clients: int, rng: np.random.Generator) -> list[list[int]]:
    """Each hospital's training attacks (class indices 1..4): 1 to MAX_SEEN_ATTACKS of them.

    Each attack is first given to COVERAGE hospitals (one with 2 hospitals), always those that
    hold the fewest so far, in a random order, so that every attack is in the training rows of
    more than one hospital and no hospital gets more than MAX_SEEN_ATTACKS; each hospital then
    meets random others up to its own drawn number.
    """
    attacks = list(range(1, len(DEVICE_TRAFFIC_CLASSES)))
    seen: list[set[int]] = [set() for _ in range(num_clients)]
    order = [int(h) for h in rng.permutation(num_clients)]
    copies = COVERAGE if num_clients > 2 else 1
    for attack in rng.permutation(attacks):
        for h in sorted(order, key=lambda h: len(seen[h]))[:copies]:   # stable: ties keep the random order
            seen[h].add(int(attack))
    for mine in seen:
        wanted = int(rng.integers(1, MAX_SEEN_ATTACKS + 1))
        for attack in rng.permutation(attacks):
            if len(mine) >= wanted:
                break
            mine.add(int(attack))
    return [sorted(mine) for mine in seen]


def _train_labels(n: int, seen: list[int], rng: np.random.Generator) -> np.ndarray:
    """Shuffled class indices of a hospital's training rows: a drawn share of normal rows, the
    rest over its seen attacks in Dirichlet(2) proportions, at least MIN_TRAIN_PER_ATTACK each."""
    n_normal = int(round(rng.uniform(*TRAIN_NORMAL_SHARE) * n))
    spare = n - n_normal - MIN_TRAIN_PER_ATTACK * len(seen)   # >= 0: n >= MIN_TRAIN_ROWS
    counts = MIN_TRAIN_PER_ATTACK + rng.multinomial(spare, rng.dirichlet(np.full(len(seen), 2.0)))
    labels = np.concatenate([np.zeros(n_normal, np.int64), np.repeat(np.array(seen, np.int64), counts)])
    return rng.permutation(labels)


def _test_labels(n: int) -> np.ndarray:
    """Class indices of a hospital's test rows: every attack equally often (n/8, at least
    MIN_TEST_PER_CLASS), normal traffic the rest. Fixed counts: every hospital's test set holds
    every class; the rows' order does not matter to an evaluation."""
    attacks = len(DEVICE_TRAFFIC_CLASSES) - 1
    per_attack = max(MIN_TEST_PER_CLASS, int(n * (1 - TEST_NORMAL_SHARE)) // attacks)
    return np.concatenate([np.zeros(n - attacks * per_attack, np.int64),
                           np.repeat(np.arange(1, attacks + 1), per_attack)])


class _Site:
    """One hospital's network and devices: its device mix and what its network does to every
    device's traffic (a scale of packet rates, latency, loss, TLS adoption, authentication noise)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.device_mix = rng.dirichlet(np.full(len(DEVICE_TYPES), DEVICE_MIX_ALPHA))
        self.rate = float(np.exp(rng.normal(0.0, 0.2)))
        self.latency = float(np.exp(rng.normal(0.0, 0.15)))
        self.loss = float(np.exp(rng.normal(0.0, 0.5)))
        self.tls_shift = float(rng.normal(0.0, 0.08))
        self.auth = float(np.exp(rng.normal(0.0, 0.3)))

    def windows(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Raw features (float64, (n, len(DEVICE_TRAFFIC_FEATURES))) of one window per label:
        normal traffic of a device drawn from the site's mix, then each attack's shift."""
        n = len(labels)
        device = rng.choice(len(DEVICE_TYPES), size=n, p=self.device_mix)
        f = self._normal(device, rng)
        for k, attack in enumerate((_spoofing, _replay, _flooding, _injection), start=1):
            rows = labels == k
            if rows.any():
                normal = {name: col[rows] for name, col in f.items()}
                for name, values in attack(normal, rng.uniform(*INTENSITY, rows.sum()), rng).items():
                    f[name][rows] = values
        return np.column_stack([f[name] for name in DEVICE_TRAFFIC_FEATURES])

    def _normal(self, device: np.ndarray, rng: np.random.Generator) -> Features:
        p = {key: values[device] for key, values in _PROFILES.items()}
        n = len(device)
        lognormal = lambda sd: np.exp(rng.normal(0.0, sd, n))  # noqa: E731
        rate = p["rate"] * self.rate * lognormal(0.35)
        size = p["size"] * lognormal(0.1)
        iat = 1000.0 / rate * self.latency * lognormal(0.1)
        tcp = _beta(rng, p["tcp"], 40.0)
        udp = np.minimum(_beta(rng, p["udp"], 40.0), 1.0 - tcp)
        return {
            "packets_per_s": rate,
            "bytes_per_packet_mean": size,
            "bytes_per_packet_std": size * p["size_cv"] * lognormal(0.25),
            "inter_arrival_ms_mean": iat,
            "inter_arrival_ms_std": iat * p["iat_cv"] * lognormal(0.3),
            "distinct_destinations": 1.0 + rng.poisson(p["dsts"] - 1.0),
            "tcp_share": tcp,
            "udp_share": udp,
            "tls_share": _beta(rng, np.clip(p["tls"] + self.tls_shift, 0.02, 0.98), 30.0),
            "sequence_gap_mean": 1.0 + rng.exponential(0.02 * self.loss, n),
            "stale_sequence_ratio": _beta(rng, p["stale"], 20.0),
            "repeated_payload_ratio": _beta(rng, p["repeat"], 15.0),
            "commands_per_min": rng.gamma(4.0, p["cmd"] / 4.0),
            "payload_entropy_bits": np.clip(rng.normal(p["entropy"], p["entropy_sd"]), 0.0, 8.0),
            "auth_failures_per_min": rng.gamma(0.8, p["auth"] * self.auth / 0.8),
            "identity_mismatch_ratio": _beta(rng, p["mismatch"], 50.0),
        }


def _beta(rng: np.random.Generator, mean: np.ndarray, concentration: float) -> np.ndarray:
    """Shares around `mean`: Beta(c x mean, c x (1 - mean))."""
    return rng.beta(concentration * mean, concentration * (1.0 - mean))


# Each attack takes the normal features `f` of the windows it hits and its strength s in each
# (drawn from INTENSITY: weak attacks look almost normal), and returns the columns it changes.

def _spoofing(f: Features, s: np.ndarray, rng: np.random.Generator) -> Features:
    """A foreign source claims the device's identity: its MAC/IP/certificate pairing and message
    authentication fail, it talks to more destinations, and without the device's certificate
    less of its traffic is TLS (so payload entropy drops with it)."""
    n = len(s)
    tls_lost = 0.6 * s * rng.uniform(0.0, 1.0, n)
    return {
        "identity_mismatch_ratio": np.minimum(1.0, f["identity_mismatch_ratio"] + s * rng.uniform(0.03, 0.4, n)),
        "auth_failures_per_min": f["auth_failures_per_min"] + s * rng.gamma(2.0, 0.8, n),
        "distinct_destinations": f["distinct_destinations"] + rng.poisson(2.0 * s),
        "stale_sequence_ratio": np.minimum(1.0, f["stale_sequence_ratio"] + 0.03 * s * rng.uniform(0.0, 1.0, n)),
        "tls_share": f["tls_share"] * (1.0 - tls_lost),
        "payload_entropy_bits": np.clip(f["payload_entropy_bits"] - 1.5 * tls_lost, 0.0, 8.0),
    }


def _replay(f: Features, s: np.ndarray, rng: np.random.Generator) -> Features:
    """Captured messages sent again: repeated payloads, sequence numbers already seen (and the
    jumps back and forth between them), a little more traffic, expired session tokens."""
    n = len(s)
    faster = 1.0 + 0.5 * s * rng.uniform(0.0, 1.0, n)
    repeat = f["repeated_payload_ratio"]
    return {
        "repeated_payload_ratio": repeat + (1.0 - repeat) * s * rng.uniform(0.2, 0.8, n),
        "stale_sequence_ratio": np.minimum(1.0, f["stale_sequence_ratio"] + s * rng.uniform(0.1, 0.5, n)),
        "sequence_gap_mean": f["sequence_gap_mean"] + s * rng.exponential(1.0, n),
        "packets_per_s": f["packets_per_s"] * faster,
        "inter_arrival_ms_mean": f["inter_arrival_ms_mean"] / faster,
        "auth_failures_per_min": f["auth_failures_per_min"] + 0.3 * s * rng.gamma(1.0, 1.0, n),
    }


def _flooding(f: Features, s: np.ndarray, rng: np.random.Generator) -> Features:
    """The packet rate goes up by a multiple of the device's own rate (a flooded pump may send
    no more than a quiet monitor). Half the floods are volumetric UDP (small packets, UDP up),
    half application-layer over TCP (large packets, TCP up): packet size and protocol shares
    move either way, which a linear model cannot follow."""
    n = len(s)
    faster = 1.0 + s * rng.uniform(1.5, 8.0, n)
    volumetric = rng.uniform(0.0, 1.0, n) < 0.5
    towards = 0.7 * s * rng.uniform(0.5, 1.0, n)               # how far size and protocol move
    udp, tcp, repeat = f["udp_share"], f["tcp_share"], f["repeated_payload_ratio"]
    new_udp = np.where(volumetric, udp + (1.0 - udp) * towards, udp * (1.0 - towards))
    new_tcp = np.where(volumetric, np.minimum(tcp, 1.0 - new_udp), tcp + np.clip(1.0 - tcp - new_udp, 0.0, None) * towards)
    return {
        "packets_per_s": f["packets_per_s"] * faster,
        "inter_arrival_ms_mean": f["inter_arrival_ms_mean"] / faster,
        "inter_arrival_ms_std": f["inter_arrival_ms_std"] / faster * rng.uniform(0.3, 1.0, n),
        "bytes_per_packet_mean": (f["bytes_per_packet_mean"] * (1.0 - towards)
                                  + np.where(volumetric, 80.0, 1200.0) * towards),
        "bytes_per_packet_std": f["bytes_per_packet_std"] * (1.0 - towards),   # flood packets are alike
        "udp_share": new_udp,
        "tcp_share": new_tcp,
        "repeated_payload_ratio": repeat + (1.0 - repeat) * 0.3 * s * rng.uniform(0.0, 1.0, n),
    }


def _injection(f: Features, s: np.ndarray, rng: np.random.Generator) -> Features:
    """Forged commands: more of them, payload entropy off the device's norm in either direction
    (scripted plaintext below it, packed payloads above it), more varied packet sizes, fewer
    repeated payloads, a few failing authentication."""
    n = len(s)
    direction = rng.choice([-1.0, 1.0], n)
    return {
        "commands_per_min": f["commands_per_min"] * (1.0 + s * rng.uniform(1.0, 5.0, n)) + s * rng.uniform(0.5, 3.0, n),
        "payload_entropy_bits": np.clip(f["payload_entropy_bits"] + direction * s * rng.uniform(1.5, 3.5, n), 0.0, 8.0),
        "bytes_per_packet_std": f["bytes_per_packet_std"] * (1.0 + s * rng.uniform(0.5, 2.0, n)),
        "repeated_payload_ratio": f["repeated_payload_ratio"] * (1.0 - 0.7 * s),
        "auth_failures_per_min": f["auth_failures_per_min"] + 0.2 * s * rng.gamma(1.0, 1.0, n),
    }
