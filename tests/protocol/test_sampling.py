"""Client sampling: who is drawn for a round, and how a drawn-out member's update is screened."""

import math

import numpy as np
import pytest
from eth_account import Account

from fedledger.config import config_from_dict
from fedledger.protocol import RoundTask
from fedledger.protocol.plain import PlainUpdates
from fedledger.protocol.sampling import ClientDraw, draw_problem, stall_probability
from fedledger.store import ArtifactStore
from fedledger.validation import Candidate, Reason, ValidationRules


def names_of(count: int, first_key: int = 1) -> dict[str, str]:
    """`count` members' names by (made-up) address."""
    return {f"0x{first_key + i:040X}": f"device_{i}" for i in range(count)}


def test_a_draw_depends_on_seed_round_and_name_not_on_keys():
    names = names_of(50)
    draw = ClientDraw(0.3, 42, names)
    again = ClientDraw(0.3, 42, names_of(50, first_key=1000))   # other keys, the same names
    by_name = lambda d, r: sorted(d.names[a] for a in d.members(r, list(d.names)))  # noqa: E731
    assert all(by_name(draw, r) == by_name(again, r) for r in range(1, 6))
    assert by_name(draw, 1) != by_name(draw, 2)                       # each round draws anew
    assert by_name(draw, 1) != by_name(ClientDraw(0.3, 43, names), 1)   # and each seed
    # the draw reads the name, whatever case the address is written in
    address = next(iter(names))
    assert all(draw.drawn(r, address.lower()) == draw.drawn(r, address) for r in range(1, 20))


def test_the_share_drawn_follows_the_fraction_and_one_draws_everyone():
    names = names_of(2000)
    for fraction in (0.1, 0.5):
        drawn = len(ClientDraw(fraction, 7, names).members(3, names))
        sd = math.sqrt(2000 * fraction * (1 - fraction))
        assert abs(drawn - 2000 * fraction) < 5 * sd
    assert ClientDraw(1.0, 7, {}).members(1, list(names)) == list(names)
    # a member the consortium has no name for is never drawn while members are sampled
    assert not ClientDraw(0.999, 7, names).drawn(1, Account.create().address)
    assert sum(ClientDraw(0.999, 7, names).drawn(1, a) for a in names) > 1900


def test_stall_probability_is_the_binomial_tail_over_the_rounds():
    # 4 members, fraction 0.5, 1 needed: a round draws nobody with probability 1/16
    assert stall_probability(0.5, 4, 1, 1) == pytest.approx(1 / 16)
    assert stall_probability(0.5, 4, 1, 3) == pytest.approx(1 - (15 / 16) ** 3)
    assert stall_probability(1.0, 4, 4, 10) == 0.0
    semi = lambda fraction, rounds: config_from_dict({"study": {"architecture": "semi", "rounds": rounds},  # noqa: E731
                                                      "protocol": {"sample_fraction": fraction}})
    assert draw_problem(semi(0.3, 100), 120) is None
    problem = draw_problem(semi(0.5, 3), 4)
    assert problem and "sample_fraction = 0.5" in problem and "from 4 members" in problem and "0.18" in problem
    # a loose round that draws no one ends empty: nothing to refuse
    assert draw_problem(config_from_dict({"protocol": {"sample_fraction": 0.5}}), 4) is None


def test_rounds_larger_than_a_contract_can_name_are_refused():
    loose = lambda fraction, rounds: config_from_dict({"study": {"rounds": rounds},  # noqa: E731
                                                       "protocol": {"sample_fraction": fraction}})
    # 1000 devices drawn at 0.1: about 100 a round, above 128 once in some 800 rounds
    assert draw_problem(loose(0.08, 60), 1000) is None
    problem = draw_problem(loose(0.1, 60), 1000)
    assert problem and "more than the 128 updates one anchored round can name" in problem
    assert "lower sample_fraction" in draw_problem(loose(1.0, 1), 129)
    assert draw_problem(loose(1.0, 1), 128) is None
    semi = config_from_dict({"study": {"architecture": "semi"}})
    assert "contract holds at most 128 members, this one has 129" in draw_problem(semi, 129)


def test_an_update_from_a_member_not_drawn_is_rejected_as_such(tmp_path):
    store = ArtifactStore(tmp_path)
    names = names_of(12)
    draw = ClientDraw(0.5, 3, names)
    parent = store.put_params(np.zeros(4, np.float32))
    task = RoundTask(round=2, global_model=parent, chain_id=1, ledger="0x" + "11" * 20, client_config={})
    candidates = [Candidate(a, store.put_params(np.full(4, i, np.float32)), 10) for i, a in enumerate(names)]
    accepted, rejected = PlainUpdates(None, 1, draw).screen(store, task, candidates, ValidationRules())
    drawn = set(draw.members(2, names))
    assert 0 < len(drawn) < len(names)
    assert {c.institution for c in accepted} == drawn
    assert {r.institution for r in rejected} == set(names) - drawn
    assert all(r.code == Reason.NOT_DRAWN and "not drawn for round 2" in r.reason for r in rejected)
    # without sampling, everyone's update is screened on its merits
    accepted, rejected = PlainUpdates(None, 1).screen(store, task, candidates, ValidationRules())
    assert len(accepted) == len(names) and not rejected
