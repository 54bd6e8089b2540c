"""Screening a round's updates: every bad update is rejected with its code, every good one kept,
whatever order they come in; random and malformed blobs never break it (hypothesis)."""

import itertools
import struct

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.aggregation import fixedpoint as fx
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.validation import Candidate, Reason, Rejection, ValidationRules, screen_updates
from fedledger.validation.screen import screen_protected

SIZE = 12


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def global_params():
    return np.linspace(-1, 1, SIZE, dtype=np.float32)


def _honest(store, global_params, count, seed=0):
    rng = np.random.default_rng(seed)
    return [Candidate(f"0xh{i}", store.put_params(global_params + rng.normal(0, 0.05, SIZE).astype(np.float32)),
                      int(rng.integers(5, 50))) for i in range(count)]


def _codes(rejected):
    return {r.institution: r.code for r in rejected}


def _raw_safetensors(tensors):
    return safetensors.numpy.save(tensors)


def test_honest_updates_all_pass_in_a_stable_order(store, global_params):
    honest = _honest(store, global_params, 5)
    accepted, rejected = screen_updates(store, global_params, honest[::-1])
    assert rejected == [] and accepted == sorted(honest, key=lambda c: c.institution)


def _bad_blobs(store, global_params):
    """institution -> (candidate, expected code): one per content problem."""
    def put(data):
        return store.put(data)

    damaged = store.put_params(global_params + 1)
    path = store.root / damaged[:2] / damaged[2:]
    path.write_bytes(b"something else entirely")
    canonical = store.put_params(global_params)  # noqa: F841  (the parent itself is stored)
    return {
        "0xmissing": (sha256_hex(b"never stored"), 10, Reason.MISSING),
        "0xmismatch": (damaged, 10, Reason.DIGEST_MISMATCH),
        "0xgarbage": (put(b"\x00\x01not safetensors"), 10, Reason.INVALID_FORMAT),
        # longer than the model's update: refused before it is read
        "0xmetadata": (put(safetensors.numpy.save({"params": global_params}, metadata={"x": "y"})), 10,
                       Reason.WRONG_LAYOUT),
        "0xname": (put(_raw_safetensors({"weights": global_params})), 10, Reason.WRONG_LAYOUT),
        "0xtwo": (put(_raw_safetensors({"params": global_params, "extra": global_params})), 10, Reason.WRONG_LAYOUT),
        "0xdtype": (put(_raw_safetensors({"params": global_params.astype(np.float64)})), 10, Reason.WRONG_LAYOUT),
        "0xshape": (put(_raw_safetensors({"params": global_params.reshape(3, 4)})), 10, Reason.WRONG_LAYOUT),
        "0xsize": (store.put_params(np.zeros(SIZE + 1, np.float32)), 10, Reason.WRONG_LAYOUT),
        "0xnan": (put(_raw_safetensors({"params": np.where(np.arange(SIZE) == 3, np.nan, global_params)
                                        .astype(np.float32)})), 10, Reason.NOT_FINITE),
        "0xinf": (put(_raw_safetensors({"params": np.full(SIZE, np.inf, np.float32)})), 10, Reason.NOT_FINITE),
        "0xhuge": (store.put_params(np.full(SIZE, 2.0**16, np.float32)), 10, Reason.OUT_OF_RANGE),
        "0xnosamples": (store.put_params(global_params), 0, Reason.OUT_OF_RANGE),
        "0xnotadigest": ("0xABC", 10, Reason.INVALID_FORMAT),
    }


def test_every_content_problem_has_its_code(store, global_params):
    bad = _bad_blobs(store, global_params)
    honest = _honest(store, global_params, 3)
    candidates = honest + [Candidate(who, digest, n) for who, (digest, n, _) in bad.items()]
    accepted, rejected = screen_updates(store, global_params, candidates)
    assert accepted == sorted(honest, key=lambda c: c.institution)
    assert _codes(rejected) == {who: code for who, (_, _, code) in bad.items()}
    assert all(r.reason and "\n" not in r.reason for r in rejected)
    assert [r.institution for r in rejected] == sorted(r.institution for r in rejected)


def test_two_different_updates_from_one_member_reject_both_but_a_resend_is_harmless(store, global_params):
    a, b, c = _honest(store, global_params, 3)
    twice = Candidate(a.institution, c.update.replace(c.update[0], "f" if c.update[0] != "f" else "e", 1), 10)
    accepted, rejected = screen_updates(store, global_params, [a, twice, b])
    assert accepted == [b] and _codes(rejected) == {a.institution: Reason.DUPLICATE}
    accepted, rejected = screen_updates(store, global_params, [a, a, b])
    assert accepted == [a, b] and rejected == []


@pytest.mark.parametrize("protected", [False, True], ids=["plain", "masked or encrypted"])
def test_an_update_two_members_submitted_is_rejected_for_both(store, global_params, protected):
    """A member that submits a copy of another's update digest (issue 14, finding 10): which one
    copied cannot be told from the updates, so neither is aggregated, in any order."""
    a, b, c = _honest(store, global_params, 3)
    copy = Candidate("0xcopier", b.update, 40)
    for order in ([a, b, c, copy], [copy, c, b, a]):
        if protected:
            accepted, rejected = screen_protected(order, lambda _: None)
        else:
            accepted, rejected = screen_updates(store, global_params, order)
        assert accepted == [a, c]
        assert _codes(rejected) == {b.institution: Reason.COPIED, "0xcopier": Reason.COPIED}
        assert all("2 members submitted this same update" in r.reason for r in rejected)


def test_norm_bound_is_exact_at_the_boundary(store, global_params):
    step = np.zeros(SIZE, np.float32)
    step[0], step[1] = 0.75, 1.0       # norm exactly 1.25 on the grid
    at = Candidate("0xat", store.put_params(global_params + step), 10)
    above = Candidate("0xabove", store.put_params(global_params + step * np.float32(1.001)), 10)
    accepted, rejected = screen_updates(store, global_params, [at, above], ValidationRules(max_update_norm=1.25))
    assert accepted == [at] and _codes(rejected) == {"0xabove": Reason.NORM_ABOVE_BOUND}
    assert "1.25" in rejected[0].reason


def test_outliers_are_rejected_and_a_zero_factor_switches_the_rule_off(store, global_params):
    honest = _honest(store, global_params, 6)
    far = Candidate("0xfar", store.put_params(global_params + 3), 10)
    accepted, rejected = screen_updates(store, global_params, honest + [far], ValidationRules(outlier_factor=3))
    assert accepted == sorted(honest, key=lambda c: c.institution) and _codes(rejected) == {"0xfar": Reason.OUTLIER}
    accepted, rejected = screen_updates(store, global_params, honest + [far], ValidationRules())
    assert far in accepted and rejected == []


def test_too_few_updates_for_the_dp_noise_pass_none(store, global_params):
    """DP-FedAvg's noise is split among min_aggregated updates: with fewer passing, none is aggregated."""
    honest = _honest(store, global_params, 3)
    broken = Candidate("0xbroken", "ab" * 32, 10)        # not in the store: MISSING
    accepted, rejected = screen_updates(store, global_params, honest + [broken], ValidationRules(min_aggregated=3))
    assert len(accepted) == 3 and _codes(rejected) == {"0xbroken": Reason.MISSING}
    accepted, rejected = screen_updates(store, global_params, honest + [broken], ValidationRules(min_aggregated=4))
    assert accepted == [] and _codes(rejected) == {**{c.institution: Reason.TOO_FEW_FOR_NOISE for c in honest},
                                                   "0xbroken": Reason.MISSING}
    assert all("only 3 updates passed" in r.reason for r in rejected if r.code == Reason.TOO_FEW_FOR_NOISE)


def test_rules_come_from_the_config_alike_for_aggregators_and_auditors():
    from fedledger.config import config_from_dict
    dp = config_from_dict({"protocol": {"min_participants": 3}, "validation": {"max_update_norm": 2},
                           "privacy": {"mechanism": "dp-fedavg", "epsilon": 4}}).to_dict()
    assert ValidationRules.from_config(dp) == ValidationRules(2.0, 0.0, 3)
    dp["privacy"]["mechanism"] = "dp-sgd"
    assert ValidationRules.from_config(dp) == ValidationRules(2.0, 0.0, 0)
    assert ValidationRules.from_config(None) == ValidationRules()


def test_inflated_sample_claims_are_cut_until_the_sums_fit(store, global_params):
    honest = _honest(store, global_params, 3)
    greedy = [Candidate(f"0xg{i}", store.put_params(global_params + np.float32(i / 64)), fx.MAX_TOTAL_SAMPLES // 2 + i)
              for i in range(3)]
    accepted, rejected = screen_updates(store, global_params, honest + greedy)
    assert _codes(rejected) == {"0xg2": Reason.OUT_OF_RANGE, "0xg1": Reason.OUT_OF_RANGE}
    assert sum(c.num_samples for c in accepted) <= fx.MAX_TOTAL_SAMPLES
    FedAvg().aggregate(global_params, [ClientUpdate(c.institution, store.get_params(c.update), c.num_samples)
                                       for c in accepted], {})


def test_screening_does_not_depend_on_the_order(store, global_params):
    bad = _bad_blobs(store, global_params)
    candidates = _honest(store, global_params, 3) + [Candidate(w, d, n) for w, (d, n, _) in list(bad.items())[:4]]
    rules = ValidationRules(max_update_norm=0.5, outlier_factor=2.5)
    first = screen_updates(store, global_params, candidates, rules)
    for perm in itertools.islice(itertools.permutations(candidates), 0, 5040, 97):
        assert screen_updates(store, global_params, list(perm), rules) == first


# --- property-based: random and malformed blobs ------------------------------------------------

def _safetensors_like():
    """Bytes that look more or less like safetensors: a length prefix, a JSON-ish header, data."""
    header = st.one_of(
        st.just(b'{"params":{"dtype":"F32","shape":[12],"data_offsets":[0,48]}}'),
        st.just(b'{"params":{"dtype":"F32","shape":[13],"data_offsets":[0,48]}}'),
        st.just(b'{"params":{"dtype":"BF16","shape":[12],"data_offsets":[0,24]}}'),
        st.just(b'{"params":{"dtype":"F32","shape":[12],"data_offsets":[0,4800000000]}}'),
        st.binary(max_size=80))
    return st.builds(lambda h, pad, data, lie: struct.pack("<Q", max(0, len(h) + lie)) + h + b" " * pad + data,
                     header, st.integers(0, 9), st.binary(max_size=64), st.sampled_from([0, 0, 1, -1, 10**6]))


_blob = st.one_of(
    st.binary(max_size=120),
    _safetensors_like(),
    st.builds(lambda v: _raw_safetensors({"params": np.array(v, np.float32)}),
              st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=14)),
    st.builds(lambda v: _raw_safetensors({"params": np.array(v, np.float32)}),
              st.lists(st.floats(-1e6, 1e6, width=32), min_size=SIZE, max_size=SIZE)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.tuples(_blob, st.integers(-5, 2**24)), max_size=6),
       unstored=st.lists(st.binary(min_size=1, max_size=8), max_size=2), honest_count=st.integers(1, 4),
       norm=st.sampled_from([0.0, 1.0, 1e3]))
def test_random_blobs_never_break_screening_and_never_displace_honest_updates(store, global_params, blobs, unstored,
                                                                              honest_count, norm):
    honest = _honest(store, global_params, honest_count, seed=honest_count)
    hostile = [Candidate(f"0xx{i}", store.put(data), n) for i, (data, n) in enumerate(blobs)]
    hostile += [Candidate(f"0xu{i}", sha256_hex(b"u" + data), 10) for i, data in enumerate(unstored)]
    rules = ValidationRules(max_update_norm=norm)
    accepted, rejected = screen_updates(store, global_params, honest + hostile, rules)
    assert set(honest) <= set(accepted)
    assert {c.institution for c in accepted} | {r.institution for r in rejected} == \
        {c.institution for c in honest + hostile}
    for c in accepted:     # whatever passed is something the aggregation takes as it is
        params = store.get_params(c.update)
        assert params.size == SIZE and np.isfinite(params).all() and np.abs(params).max() <= fx.MAX_ABS
        assert 0 < c.num_samples
    for r in rejected:
        assert r.code not in (Reason.ACCEPTED,) and r.reason
    updates = [ClientUpdate(c.institution, store.get_params(c.update), c.num_samples) for c in accepted]
    FedAvg().aggregate(global_params, updates, {})     # raises if screening let anything bad through


def test_a_hostile_blob_is_refused_at_the_door_with_a_short_reason(store, global_params):
    """Issue 14, finding 6: anything longer than the model's update is refused before it is read
    (WRONG_LAYOUT), so a model-sized one is all the parser sees, and no reason runs past 300
    characters whatever the blob holds."""
    entry = '"t{:07d}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    header = ("{" + ",".join(entry.format(i) for i in range(200_000)) + "}").encode()
    header += b" " * (-len(header) % 8)
    many = store.put(struct.pack("<Q", len(header)) + header)
    exact = len(safetensors.numpy.save({"params": global_params}))
    hostile_header = store.put(struct.pack("<Q", exact - 8) + b" " * (exact - 8))
    accepted, rejected = screen_updates(store, global_params, [Candidate("0xmany", many, 10),
                                                                Candidate("0xheader", hostile_header, 10)])
    assert accepted == []
    assert _codes(rejected) == {"0xmany": Reason.WRONG_LAYOUT, "0xheader": Reason.INVALID_FORMAT}
    reasons = {r.institution: r.reason for r in rejected}
    assert reasons["0xmany"].endswith(f"is {8 + len(header):,} bytes, more than the {exact} expected here")
    assert "invalid JSON in header" in reasons["0xheader"]    # a header of at most 136 bytes: parsed cheaply
    assert all(len(r.reason) <= 300 for r in rejected)


def test_reasons_are_cut_to_300_characters():
    long = Rejection("0xa", Reason.OUTLIER, "x" * 10_000)
    assert len(long.reason) == 300 and long.reason.endswith("...")
    assert Rejection("0xa", Reason.OUTLIER, "short").reason == "short"
