"""A curious aggregator reads a training record out of one member's plain update, exactly; under
secure aggregation it holds only the sum, and the same attack on it recovers no member's record."""

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.learning import ClientData, TrainConfig, build_model, get_flat_params, train_local
from fedledger.privacy import SecAggMember, unmask_sum
from fedledger.privacy.leakage import reconstruct_logreg_record

from .test_privacy_secagg import _exchange_shares

FEATURES = 13


def _one_record_member(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (1, FEATURES)).astype(np.float32)
    y = np.array([float(seed % 2)], np.float32)
    return ClientData(f"h{seed}", x, y, x.copy(), y.copy())


def _train(global_model_seed, data):
    model = build_model("logreg", FEATURES, seed=global_model_seed)
    g = get_flat_params(model)
    return g, train_local(model, data, TrainConfig(lr=0.1, batch_size=1, local_steps=10), seed=1, global_params=g)


def test_a_plain_update_gives_its_training_record_away():
    data = _one_record_member(3)
    g, update = _train(0, data)
    np.testing.assert_allclose(reconstruct_logreg_record(g, update), data.x_train[0], rtol=1e-4, atol=1e-5)


def test_under_secure_aggregation_the_same_attack_recovers_no_record():
    members = [_one_record_member(s) for s in (3, 4, 5)]
    trained = [_train(0, d) for d in members]
    g = trained[0][0]
    # each member sends its fixed-point parameters masked; the aggregator unmasks only the sum
    group = {d.name: SecAggMember(d.name, b"leakage round") for d in members}
    roster = [m.public_keys() for m in group.values()]
    _exchange_shares(group, roster, 2)
    masked = {d.name: group[d.name].mask(fx.to_fixed(p)) for d, (_, p) in zip(members, trained)}
    for d, (_, p) in zip(members, trained):     # what the aggregator holds of each member is noise
        guess = reconstruct_logreg_record(g, fx.to_float32(masked[d.name].view(np.int64)))
        assert not np.allclose(guess, d.x_train[0], rtol=0.1, atol=0.1)
    total = unmask_sum(masked, roster, [m.reveal(list(masked), []) for m in group.values()], 2, b"leakage round")
    mean = fx.to_float32(fx.divide_rounded(total, len(members)))
    guess = reconstruct_logreg_record(g, mean)
    for d in members:
        assert np.linalg.norm(guess - d.x_train[0]) > 0.3 * np.linalg.norm(d.x_train[0])
