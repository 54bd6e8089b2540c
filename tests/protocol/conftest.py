import dataclasses
import logging

import pytest
from eth_account import Account

from fedledger.aggregation import make_strategy
from fedledger.chain import EmbeddedChain
from fedledger.config import config_from_dict
from fedledger.learning import TrainConfig, build_model, get_flat_params, load_fed_heart_disease
from fedledger.protocol import Coordinator, InstitutionNode, MemberContext, ModelSpec, round_task
from fedledger.protocol.privacy import PrivacyPlan
from fedledger.protocol.setup import set_up_chain, update_scheme
from fedledger.simulation.noticeboard import MemoryNotices
from fedledger.simulation.scheduler import Scheduler
from fedledger.store import ArtifactStore


@dataclasses.dataclass
class LooseRound:
    """A loose study on the embedded chain: its coordinator role, and institution nodes that
    train but whose posts the test makes itself (any document, as a hostile member could)."""
    coordinator: Coordinator
    nodes: list
    initial: str
    chain: object
    admin: object
    notices: MemoryNotices

    @property
    def store(self):
        return self.coordinator.ctx.store

    def task(self, round=1):
        study = self.chain.study
        return round_task(study, self.coordinator.ctx.strategy, round, study.latest_model())

    def post(self, address, doc, round=1):
        """What member `address` posts as its update of `round`."""
        self.notices.of(address).post(round, "update", doc)

    def offer(self, update, round=1):
        """An institution's signed update, posted as it would post it (with its signed evaluation
        of the parent model)."""
        node = next(n for n in self.nodes if n.address == update.institution)
        study = self.chain.study
        metrics = node.signed_evaluation(update.commitment.parent_model, study.chain_id, study.address)
        self.post(update.institution, {**update.to_dict(), "metrics": metrics}, round)

    def anchor(self, round=1):
        """Step the coordinator (time passing when it waits) until it anchors `round`; the record."""
        scheduler = Scheduler([("coordinator", [self.coordinator])], self.chain.backend)
        scheduler.run_until(lambda: self.chain.study.round_count() >= round, round)
        return self.chain.study.get_round(round)


@pytest.fixture
def loose_round(tmp_path):
    """Factory: a LooseRound for the config sections given (started, round 1 open)."""
    made = []

    def make(**sections):
        cfg = config_from_dict({"study": {"rounds": 2}, "training": {"local_steps": 5},
                                "protocol": {"commit_window": 3}, **sections})
        plan = PrivacyPlan.from_config(cfg.to_dict())
        clients = load_fed_heart_disease()
        store = ArtifactStore(tmp_path / f"store{len(made)}")
        spec = ModelSpec("logreg", clients[0].num_features)
        nodes = [InstitutionNode(c.name, Account.create(), c, spec, TrainConfig(local_steps=5), store, 1, plan)
                 for c in clients]
        initial = store.put_params(get_flat_params(build_model("logreg", spec.num_features, seed=1)))
        admin, key = Account.create(), Account.create()
        backend = EmbeddedChain.create(None)
        config_digest = store.put_json(cfg.to_dict())
        chain = set_up_chain(backend, admin, key, [(n.name, n.account) for n in nodes], config_digest, initial, cfg)
        notices = MemoryNotices()
        ctx = MemberContext(cfg, key, chain.study, store, make_strategy("fedavg"), [n.address for n in nodes],
                            notices.of(key.address), logging.getLogger("test"))
        coordinator = Coordinator(ctx, update_scheme(cfg, chain.study, {n.address: n.name for n in nodes}), config_digest,
                                  initial)
        coordinator.step()                     # starts the study
        made.append(backend)
        return LooseRound(coordinator, nodes, initial, chain, admin, notices)

    yield make
    for backend in made:
        backend.close()
