"""Simulated attacks: some institutions send poisoned or free-ridden updates ([attack] in the config).

An attacker is an ordinary institution node (its own key, its own data, honest evaluation and
honest scores) whose `local_params` is replaced, so it publishes, signs and commits exactly as an
honest node does and only what it sends differs. With g the round's global model and p the
attacker's honestly trained model, from round [attack].start_round on it sends:

- label_flip: p trained on its own data with every label flipped (y -> 1 - y);
- sign_flip:  g - scale * (p - g), the update reversed (and stretched);
- scale:      g + scale * (p - g), the update stretched (model replacement: scale = members);
- noise:      g + N(0, noise_std^2) per parameter, without training;
- free_rider: the same, meant with a small noise_std to pass for an update (0: g itself);
- sybil:      every Sybil member sends the same g - scale * (p - g), p trained by the first of
  them asked in the round (they collude through a shared `SybilGroup`); each signs its own
  commitment over the common digest.

Nothing is clipped or sanitised: parameters beyond the fixed-point bound (|x| > 2**15) are
published and left to the aggregators' validation to reject; a non-finite vector (say, from a
huge scale) cannot even be stored, so publishing it raises UpdateRejected.

All randomness comes from (study seed, round, institution) through `derive_seed`, and the
attackers themselves from the study seed alone (`choose_attackers`), so a study is reproducible
and every kind of attack can be compared on the same members.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from eth_account.signers.local import LocalAccount

from fedledger.config import ATTACKS, AttackSection, Config, attacker_count
from fedledger.learning import ClientData, TrainConfig
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.node import InstitutionNode, ModelSpec, derive_seed
from fedledger.protocol.privacy import PrivacyPlan
from fedledger.store import ArtifactStore

ATTACK_KINDS = tuple(k for k in ATTACKS if k != "none")

__all__ = ["ATTACK_KINDS", "AttackingNode", "SybilGroup", "add_noise", "attacker_count", "build_nodes",
           "choose_attackers", "flip_labels", "scale_update"]


def choose_attackers(names: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The institutions that attack, in roster order: attacker_count(fraction, len(names)) of
    them, drawn from `seed` alone (not from the kind of attack).

    The draw is one seeded permutation of the roster whose first members attack, so a larger
    fraction under the same seed keeps the attackers of a smaller one and adds to them.
    """
    count = attacker_count(fraction, len(names))
    order = np.random.default_rng(derive_seed(seed, "attackers")).permutation(len(names))
    chosen = set(order[:count].tolist())
    return [name for index, name in enumerate(names) if index in chosen]


def scale_update(global_params: np.ndarray, local: np.ndarray, factor: float) -> np.ndarray:
    """global + factor * (local - global) in float32 (a negative factor flips the update)."""
    g = np.asarray(global_params, dtype=np.float32)
    return g + np.float32(factor) * (np.asarray(local, dtype=np.float32) - g)


def add_noise(global_params: np.ndarray, std: float, seed: int) -> np.ndarray:
    """global + N(0, std^2) per parameter in float32; with std 0 the global model itself (a copy:
    adding zeros would turn -0.0 into 0.0 and change the bytes)."""
    g = np.asarray(global_params, dtype=np.float32)
    if std == 0.0:
        return g.copy()
    return g + np.random.default_rng(seed).normal(0.0, std, size=g.shape).astype(np.float32)


def flip_labels(data: ClientData) -> ClientData:
    """The same institution with its training labels flipped (0.0 <-> 1.0); test and validation
    rows are untouched, so its evaluations and scores stay honest."""
    return dataclasses.replace(data, y_train=(np.float32(1.0) - data.y_train).astype(np.float32))


class SybilGroup:
    """What colluding Sybil members share: the one set of parameters all of them send in a round.

    The first member asked in a round computes it; the others receive a copy of the same values.
    """

    def __init__(self) -> None:
        self._key: tuple[int, str, str] | None = None
        self._params: np.ndarray | None = None

    def shared(self, task: RoundTask, compute: Callable[[], np.ndarray]) -> np.ndarray:
        key = (task.round, task.global_model, task.ledger)
        if self._key != key or self._params is None:
            self._params, self._key = compute(), key
        return self._params.copy()


class AttackingNode(InstitutionNode):
    """An institution that sends what [attack] says instead of its honest update (see the module
    docstring); before `attack.start_round` it behaves honestly."""

    def __init__(self, name: str, account: LocalAccount, data: ClientData, model: ModelSpec,
                 training: TrainConfig, store: ArtifactStore, seed: int, attack: AttackSection,
                 sybils: SybilGroup | None = None, privacy: PrivacyPlan | None = None,
                 noise_seed: int | None = None) -> None:
        super().__init__(name, account, data, model, training, store, seed, privacy, noise_seed)
        if attack.kind not in ATTACK_KINDS:
            raise ValueError(f"attack kind {attack.kind!r} is not one of {', '.join(ATTACK_KINDS)}")
        if attack.kind == "sybil" and sybils is None:
            raise ValueError("a Sybil attacker needs the SybilGroup it colludes with")
        self.attack = attack
        self.sybils = sybils

    def local_params(self, task: RoundTask) -> np.ndarray:
        a = self.attack
        if task.round < a.start_round:
            return super().local_params(task)
        g = self.store.get_params(task.global_model)
        if a.kind == "label_flip":
            return self._train_from(task, g, flip_labels(self.data))
        if a.kind in ("noise", "free_rider"):
            return add_noise(g, a.noise_std, derive_seed(self.seed, "attack", a.kind, task.round, self.name))
        if a.kind == "sybil":
            assert self.sybils is not None
            return self.sybils.shared(task, lambda: scale_update(g, self._train_from(task, g, self.data), -a.scale))
        trained = self._train_from(task, g, self.data)
        return scale_update(g, trained, -a.scale if a.kind == "sign_flip" else a.scale)


def build_nodes(cfg: Config, clients: Sequence[ClientData], spec: ModelSpec, training: TrainConfig,
                store: ArtifactStore, accounts: Sequence[LocalAccount]) -> tuple[list[InstitutionNode], list[str]]:
    """The study's institution nodes, one per client with the account at the same position, and
    the names of those that attack (AttackingNode; none when [attack].kind is "none").

    ConfigError if [attack].fraction would leave no honest institution.
    """
    if len(accounts) != len(clients):
        raise ValueError(f"{len(clients)} institutions but {len(accounts)} accounts")
    attack = cfg.attack
    attackers = ([] if attack.kind == "none"
                 else choose_attackers([c.name for c in clients], attack.fraction, cfg.study.seed))
    sybils = SybilGroup() if attack.kind == "sybil" else None
    privacy = PrivacyPlan.from_config(cfg.to_dict())
    # simulated DP noise repeats with the study seed (a deployed node's is secret: InstitutionNode)
    noise_seed = derive_seed(cfg.study.seed, "dp noise")
    nodes: list[InstitutionNode] = []
    for client, account in zip(clients, accounts):
        if client.name in attackers:
            nodes.append(AttackingNode(client.name, account, client, spec, training, store, cfg.study.seed,
                                       attack, sybils, privacy, noise_seed))
        else:
            nodes.append(InstitutionNode(client.name, account, client, spec, training, store, cfg.study.seed,
                                         privacy, noise_seed))
    return nodes, attackers
