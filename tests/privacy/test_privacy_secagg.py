"""Secure aggregation: the aggregator recovers exactly the sum (so a sample-weighted mean that is
bit-identical to FedAvg's) with and without dropouts, and nothing it holds reveals one input."""

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.aggregation import fixedpoint as fx
from fedledger.privacy import SecAggError, SecAggMember, unmask_sum

CONTEXT = b"study 0xabc round 1"


def _round(inputs, threshold, dropped=(), context=CONTEXT):
    """Run every step in process; `dropped` members share their secrets, then send nothing."""
    members = {m: SecAggMember(m, context) for m in inputs}
    roster = [m.public_keys() for m in members.values()]
    _exchange_shares(members, roster, threshold)
    masked = {m: members[m].mask(x) for m, x in inputs.items() if m not in dropped}
    survivors = [m for m in masked]
    revealed = [members[v].reveal(survivors, list(dropped)) for v in survivors]
    return masked, unmask_sum(masked, roster, revealed, threshold, context)


def _exchange_shares(members, roster, threshold):
    """Every member seals its shares, then the aggregator delivers each to its recipient."""
    outgoing = {m.member: m.share_secrets(roster, threshold) for m in members.values()}
    for sender, sealed in outgoing.items():
        for recipient, ciphertext in sealed.items():
            members[recipient].receive_share(sender, ciphertext)


def _inputs(count, size=50, seed=0):
    rng = np.random.default_rng(seed)
    return {f"m{i:02d}": rng.integers(-2**40, 2**40, size, dtype=np.int64) for i in range(count)}


@pytest.mark.parametrize("count,threshold,dropped", [(2, 2, 0), (5, 3, 0), (5, 3, 2), (10, 6, 3), (12, 7, 0)])
def test_the_aggregator_gets_exactly_the_sum_of_the_senders(count, threshold, dropped):
    inputs = _inputs(count)
    gone = sorted(inputs)[1:1 + dropped]
    masked, total = _round(inputs, threshold, gone)
    expected = sum(x for m, x in inputs.items() if m not in gone)
    assert total.dtype == np.int64 and np.array_equal(total, expected)
    for m, y in masked.items():     # each masked input on its own looks nothing like the input
        assert np.mean(y.view(np.int64) == inputs[m]) < 0.05


def test_a_weighted_mean_under_secure_aggregation_is_fedavg_bit_for_bit():
    rng = np.random.default_rng(3)
    g = rng.normal(0, 1, 40).astype(np.float32)
    updates = [ClientUpdate(f"h{i}", (g + rng.normal(0, 0.1, 40)).astype(np.float32), int(rng.integers(5, 90)))
               for i in range(6)]
    # each member sends [w * q, w]: the aggregator learns only the sums
    inputs = {u.client: np.append(fx.to_fixed(u.params) * u.num_samples, u.num_samples) for u in updates}
    _, total = _round(inputs, threshold=4, dropped=["h2"])
    mean = fx.to_float32(fx.divide_rounded(total[:-1], int(total[-1])))
    survivors = [u for u in updates if u.client != "h2"]
    assert mean.tobytes() == FedAvg().aggregate(g, survivors, {})[0].tobytes()


def test_too_many_dropouts_cannot_be_unmasked():
    inputs = _inputs(5)
    with pytest.raises(SecAggError, match="only 2 of the 3 shares"):
        _round(inputs, threshold=3, dropped=sorted(inputs)[:3])


def test_a_member_never_reveals_both_secrets_of_another():
    inputs = _inputs(3)
    members = {m: SecAggMember(m, CONTEXT) for m in inputs}
    roster = [m.public_keys() for m in members.values()]
    _exchange_shares(members, roster, 2)
    v = members["m00"]
    with pytest.raises(SecAggError, match="both secrets"):
        v.reveal(["m01"], ["m01"])
    v.reveal(["m01"], [])
    with pytest.raises(SecAggError, match="already revealed the other secret of m01"):
        v.reveal([], ["m01"])     # a curious aggregator asking again, the other way round


def test_shares_are_sealed_to_their_recipient():
    members = {m: SecAggMember(m, CONTEXT) for m in ("a", "b", "c")}
    roster = [m.public_keys() for m in members.values()]
    sealed = members["a"].share_secrets(roster, 2)
    for m in members.values():
        m.share_secrets(roster, 2)
    with pytest.raises(SecAggError, match="do not decrypt"):
        members["c"].receive_share("a", sealed["b"])        # b's shares delivered to c
    tampered = sealed["b"][:-1] + bytes([sealed["b"][-1] ^ 1])
    with pytest.raises(SecAggError, match="do not decrypt"):
        members["b"].receive_share("a", tampered)


def test_masks_are_bound_to_the_round():
    inputs = _inputs(3)
    members = {m: SecAggMember(m, CONTEXT, random_bytes=lambda n, m=m: (m * 32).encode()[:n]) for m in inputs}
    again = {m: SecAggMember(m, b"study 0xabc round 2", random_bytes=lambda n, m=m: (m * 32).encode()[:n])
             for m in inputs}
    for group in (members, again):
        roster = [m.public_keys() for m in group.values()]
        for sender in group.values():
            sender.share_secrets(roster, 2)
    x = inputs["m00"]
    assert not np.array_equal(members["m00"].mask(x), again["m00"].mask(x))


def test_bad_inputs_are_refused_with_a_reason():
    m = SecAggMember("a", CONTEXT)
    roster = [m.public_keys(), SecAggMember("b", CONTEXT).public_keys()]
    with pytest.raises(SecAggError, match="threshold must be 1 to 2"):
        m.share_secrets(roster, 3)
    with pytest.raises(SecAggError, match="each member once"):
        m.share_secrets(roster + roster[:1], 2)
    m.share_secrets(roster, 2)
    with pytest.raises(SecAggError, match="1-D int64"):
        m.mask(np.zeros(3, np.float32))
    with pytest.raises(SecAggError, match="not on the roster"):
        m.receive_share("z", b"\0" * 40)
    with pytest.raises(SecAggError, match="no masked input"):
        unmask_sum({}, roster, [], 2, CONTEXT)


def test_a_member_that_drops_before_sharing_is_left_out_of_the_masks():
    inputs = _inputs(5)
    members = {m: SecAggMember(m, CONTEXT) for m in inputs}
    roster = [m.public_keys() for m in members.values()]
    silent = "m04"                                   # advertised its keys, then never sent its shares
    outgoing = {n: m.share_secrets(roster, 3) for n, m in members.items() if n != silent}
    for sender, sealed in outgoing.items():
        for recipient, ciphertext in sealed.items():
            if recipient != silent:
                members[recipient].receive_share(sender, ciphertext)
    peers = sorted(outgoing)
    masked = {n: members[n].mask(inputs[n], peers) for n in peers}
    revealed = [members[n].reveal(peers, []) for n in peers]
    total = unmask_sum(masked, [k for k in roster if k.member in peers], revealed, 3, CONTEXT)
    assert np.array_equal(total, sum(inputs[n] for n in peers))
