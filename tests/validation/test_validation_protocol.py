"""Hostile members throw random and malformed commitments at a real round on the embedded chain,
in every architecture: the round still finalizes, no hostile update is aggregated, every honest
update is, and each rejection is on chain with its code (hypothesis)."""

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.aggregation import make_strategy
from fedledger.chain import EmbeddedChain
from fedledger.crypto import UpdateCommitment, sign_commitment
from fedledger.config import config_from_dict
from fedledger.learning import (
    TrainConfig,
    build_model,
    get_flat_params,
    hold_out_validation,
    load_fed_heart_disease,
)
from fedledger.protocol import InstitutionNode, ModelSpec, SignedUpdate, aggregate_round, round_outcome
from fedledger.protocol.setup import set_up_chain
from fedledger.simulation.study import schedule
from fedledger.store import ArtifactStore, encode_params, sha256_hex
from fedledger.validation import Reason

from .test_validation_screen import _blob

CLIENTS = [hold_out_validation(c, 0.2, seed=1) for c in load_fed_heart_disease()]
SPEC = ModelSpec("logreg", CLIENTS[0].num_features)
SIZE = get_flat_params(build_model("logreg", SPEC.num_features, seed=1)).size


class HostileNode(InstitutionNode):
    """A roster member that commits whatever it is given instead of a trained update (it
    aggregates, scores and votes honestly, on a copy of another member's data)."""

    def __init__(self, name, store, blob, num_samples, round_offset=0):
        data = CLIENTS[0]
        super().__init__(name, Account.create(), data, SPEC, TrainConfig(local_steps=2), store, seed=1)
        self.blob, self.num_samples, self.round_offset = blob, num_samples, round_offset

    def train(self, task, protect=None):
        digest = self.store.put(self.blob) if self.blob is not None else sha256_hex(b"never published")
        commitment = UpdateCommitment(chain_id=task.chain_id, ledger=task.ledger, round=task.round + self.round_offset,
                                      parent_model=task.global_model, update=digest, num_samples=self.num_samples)
        return SignedUpdate(self.address, commitment, sign_commitment(self.account, commitment))


def _round(tmp_path, architecture, hostile_specs):
    store = ArtifactStore(tmp_path / "store")
    honest = [InstitutionNode(c.name, Account.create(), c, SPEC, TrainConfig(local_steps=5), store, seed=1)
              for c in CLIENTS]
    hostile = [HostileNode(f"hostile{i}", store, *spec) for i, spec in enumerate(hostile_specs)]
    nodes = honest + hostile
    initial = store.put_params(get_flat_params(build_model("logreg", SPEC.num_features, seed=1)))
    backend = EmbeddedChain.create(None)
    coordinator_key = Account.create()
    cfg = config_from_dict({"study": {"architecture": architecture, "rounds": 1},
                            "data": {"validation_fraction": 0.2},
                            "protocol": {"commit_window": 3, "result_window": 3, "exclusion_margin": 1.0}})
    try:
        config_digest = store.put_json(cfg.to_dict())
        chain = set_up_chain(backend, Account.create(), coordinator_key, [(n.name, n.account) for n in nodes],
                             config_digest, initial, cfg)
        scheduler = schedule(cfg, chain.study, store, make_strategy("fedavg"), nodes, coordinator_key,
                             config_digest, initial, backend)
        scheduler.run_until(lambda: chain.study.round_count() >= 1, 1)
        result = round_outcome(architecture, chain.study, store, 1)
        on_chain = {(r.member, r.reason) for r in chain.study.rejections(1)}
        return result, honest, hostile, on_chain, store, initial
    finally:
        backend.close()


hostile_spec = st.tuples(st.one_of(st.none(), _blob), st.integers(0, 2**40), st.sampled_from([0, 0, 0, -1, 1]))


@pytest.mark.parametrize("architecture", ["loose", "semi", "full"])
def test_hostile_commitments_never_break_a_round(tmp_path_factory, architecture):
    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(specs=st.lists(hostile_spec, min_size=1, max_size=2))
    def check(specs):
        if architecture != "loose":   # the contract binds the round itself; offsets only exist off chain
            specs = [(b, n, 0) for b, n, _ in specs]
        tmp = tmp_path_factory.mktemp(architecture)
        result, honest, hostile, on_chain, store, initial = _round(tmp, architecture, specs)
        honest_addresses = {n.address for n in honest}
        assert set(result.accepted) == honest_addresses
        assert {r.institution for r in result.rejected} == {n.address for n in hostile} - \
            _refused_at_commit(architecture, hostile)
        assert all(r.code != Reason.ACCEPTED for r in result.rejected)
        assert on_chain == {(r.institution, r.code) for r in result.rejected}     # each one recorded with its code
        # the model is exactly the aggregate of the honest updates
        manifest = store.get_json(result.manifest)
        entries = [e for e in manifest["updates"] if e["institution"] in honest_addresses]
        params, _ = aggregate_round(store, make_strategy("fedavg"), initial, entries, None)
        assert sha256_hex(encode_params(params)) == result.model
    check()


def _refused_at_commit(architecture, hostile):
    """Hostile members the contract itself refused at commit time (no samples, or a digest an
    earlier member committed: a copy), in the order they commit: never candidates."""
    if architecture == "loose":
        return set()
    refused, committed = set(), set()
    for n in hostile:
        digest = sha256_hex(n.blob) if n.blob is not None else sha256_hex(b"never published")
        if n.num_samples == 0 or digest in committed:
            refused.add(n.address)
        else:
            committed.add(digest)
    return refused
