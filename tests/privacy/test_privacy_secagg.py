"""Secure aggregation: the aggregator recovers exactly the sum (so a sample-weighted mean that is
bit-identical to FedAvg's) with and without dropouts, on the complete graph and on the sparse
SecAgg+ graph, and nothing it holds reveals one input."""

import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate, FedAvg
from fedledger.aggregation import fixedpoint as fx
from fedledger.privacy import (
    MaskGraph,
    SecAggError,
    SecAggMember,
    secagg_plus_parameters,
    unmask_sum,
)

CONTEXT = b"study 0xabc round 1"


def _round(inputs, threshold, dropped=(), context=CONTEXT, graph=None):
    """Run every step in process; `dropped` members share their secrets, then send nothing."""
    members = {m: SecAggMember(m, context) for m in inputs}
    roster = [m.public_keys() for m in members.values()]
    _exchange_shares(members, roster, threshold, graph)
    masked = {m: members[m].mask(x) for m, x in inputs.items() if m not in dropped}
    survivors = [m for m in masked]
    revealed = [members[v].reveal(survivors, list(dropped)) for v in survivors]
    return masked, unmask_sum(masked, roster, revealed, threshold, context, graph)


def _exchange_shares(members, roster, threshold, graph=None):
    """Every member seals its shares, then the aggregator delivers each to its recipient."""
    outgoing = {m.member: m.share_secrets(roster, threshold, graph) for m in members.values()}
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
    with pytest.raises(SecAggError, match="does not open: tampered or not meant for c"):
        members["c"].receive_share("a", sealed["b"])        # b's shares delivered to c
    tampered = sealed["b"][:-1] + bytes([sealed["b"][-1] ^ 1])
    with pytest.raises(SecAggError, match="does not open"):
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


# SecAgg+ (Bell et al.): masks and shares only between neighbours of a sparse graph


def test_the_graph_is_symmetric_regular_and_the_same_for_every_party():
    ids = [f"m{i:02d}" for i in range(30)]
    graph = MaskGraph.harary(ids, 8, CONTEXT)
    assert graph == MaskGraph.harary(list(reversed(ids)), 8, CONTEXT)   # each party builds it alone
    for u, near in graph.neighbours.items():
        assert len(near) == 8 and u not in near
        assert all(u in graph.neighbours[v] for v in near)
    assert graph.holders("m05") == tuple(sorted(graph.neighbours["m05"] | {"m05"}))
    assert graph != MaskGraph.harary(ids, 8, b"study 0xabc round 2")       # a new round, new neighbours
    assert MaskGraph.harary(ids, 29, CONTEXT) == MaskGraph.complete(ids)
    with pytest.raises(SecAggError, match="even degree"):
        MaskGraph.harary(ids, 7, CONTEXT)


def test_the_parameters_stay_small_and_tolerate_what_they_claim():
    assert secagg_plus_parameters(100) == (32, 11)
    assert secagg_plus_parameters(10) == (6, 4)
    assert secagg_plus_parameters(1000)[0] < 100                 # the degree grows about like log n
    # over many rounds' graphs: 30% dropouts leave every member t live holders, 10% corrupt
    # members never make up t holders of one member, and the honest survivors stay connected
    n, (k, t) = 100, secagg_plus_parameters(100)
    rng = np.random.default_rng(0)
    ids = [f"m{i:03d}" for i in range(n)]
    for r in range(200):
        graph = MaskGraph.harary(ids, k, b"round %d" % r)
        gone = set(rng.choice(ids, 30, replace=False))
        bad = set(rng.choice(ids, 10, replace=False))
        for u in ids:
            holders = set(graph.holders(u))
            assert len(holders - gone) >= t and len(holders & bad - {u}) < t
        honest = set(ids) - gone - bad
        reached, frontier = set(), [min(honest)]
        while frontier:
            u = frontier.pop()
            reached.add(u)
            frontier += (graph.neighbours[u] & honest) - reached
        assert reached == honest


def test_the_sparse_graph_gives_exactly_the_sum_with_no_dropout_and_with_dropouts():
    inputs = _inputs(20)
    k, t = secagg_plus_parameters(20)
    graph = MaskGraph.harary(inputs, k, CONTEXT)
    assert k < 19
    masked, total = _round(inputs, t, graph=graph)
    assert np.array_equal(total, sum(inputs.values()))
    for m, y in masked.items():
        assert np.mean(y.view(np.int64) == inputs[m]) < 0.05
    gone = sorted(inputs)[:6]                                    # 30%
    _, total = _round(inputs, t, gone, graph=graph)
    assert np.array_equal(total, sum(x for m, x in inputs.items() if m not in gone))


def test_a_dropped_member_is_unmasked_as_long_as_t_of_its_holders_survive():
    inputs = _inputs(16)
    graph = MaskGraph.harary(inputs, 6, CONTEXT)
    u = "m03"
    near = sorted(graph.neighbours[u])
    _, total = _round(inputs, 3, [u, *near[:3]], graph=graph)    # 3 of its 6 neighbours left: enough
    assert np.array_equal(total, sum(x for m, x in inputs.items() if m not in [u, *near[:3]]))
    with pytest.raises(SecAggError, match=f"only 2 of the 3 shares needed to unmask {u} arrived"):
        _round(inputs, 3, [u, *near[:4]], graph=graph)


def test_on_the_sparse_graph_a_member_holds_and_reveals_only_its_neighbours_shares():
    inputs = _inputs(12)
    members = {m: SecAggMember(m, CONTEXT) for m in inputs}
    roster = [m.public_keys() for m in members.values()]
    graph = MaskGraph.harary(inputs, 4, CONTEXT)
    _exchange_shares(members, roster, 3, graph)
    v = members["m00"]
    others = sorted(set(inputs) - graph.neighbours["m00"] - {"m00"})
    with pytest.raises(SecAggError, match="not a neighbour of m00"):
        v.receive_share(others[0], b"\0" * 40)
    senders = sorted(inputs)[1:]
    assert set(v.reveal(senders, [])) == graph.neighbours["m00"]
    near = min(graph.neighbours["m00"])
    with pytest.raises(SecAggError, match=f"already revealed the other secret of {near}"):
        v.reveal([], [near])
    with pytest.raises(SecAggError, match="both secrets"):
        members["m01"].reveal([near], [near])


def test_a_graph_that_does_not_match_the_roster_is_refused():
    members = {m: SecAggMember(m, CONTEXT) for m in ("a", "b", "c")}
    roster = [m.public_keys() for m in members.values()]
    with pytest.raises(SecAggError, match="cover exactly the roster"):
        members["a"].share_secrets(roster, 2, MaskGraph.complete(["a", "b"]))
    with pytest.raises(SecAggError, match="threshold must be 1 to 3"):
        members["a"].share_secrets(roster, 4, MaskGraph.complete(["a", "b", "c"]))


def test_a_payload_sealed_to_one_member_opens_for_it_alone():
    a, b, c = (SecAggMember(m, CONTEXT) for m in ("a", "b", "c"))
    sealed = a.seal_to(b.public_keys(), b"the secret context")
    assert b.open_from(a.public_keys(), sealed) == b"the secret context"
    with pytest.raises(SecAggError, match="does not open"):
        c.open_from(a.public_keys(), sealed)
    with pytest.raises(SecAggError, match="does not open"):
        SecAggMember("b", b"another round").open_from(a.public_keys(), sealed)
