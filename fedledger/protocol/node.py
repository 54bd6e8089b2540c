"""An institution's node: its own key, its own data, local training and evaluation.

A node shares nothing with other nodes except the artifact store (where it publishes its update
and fetches global models by digest) and the chain (through the records it checks). Patient data
never leaves it: only parameters and aggregate evaluation figures do.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from eth_account.signers.local import LocalAccount

from fedledger.crypto import UpdateCommitment, sign_commitment, verify_proof
from fedledger.errors import DataError, StoreError
from fedledger.learning import (
    ClientData,
    TrainConfig,
    build_model,
    evaluate,
    set_flat_params,
    train_local,
)
from fedledger.protocol.manifest import update_leaves
from fedledger.protocol.messages import RoundTask, SignedUpdate
from fedledger.store import ArtifactStore

SCORE_SCALE = 1_000_000   # scores are parts per million, as ConsensusStudy.vy stores them


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    num_features: int
    hidden: tuple[int, ...] = (32,)


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one (study seed, round, institution) so every node trains reproducibly."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


class InstitutionNode:
    def __init__(self, name: str, account: LocalAccount, data: ClientData, model: ModelSpec,
                 training: TrainConfig, store: ArtifactStore, seed: int) -> None:
        self.name = name
        self.account = account
        self.data = data
        self.model_spec = model
        self.training = training
        self.store = store
        self.seed = seed

    @property
    def address(self) -> str:
        return self.account.address

    def _model_with(self, params: np.ndarray) -> torch.nn.Module:
        model = build_model(self.model_spec.name, self.model_spec.num_features,
                            hidden=self.model_spec.hidden, seed=self.seed)
        set_flat_params(model, params)
        return model

    def train(self, task: RoundTask) -> SignedUpdate:
        """Train from the task's global model, publish the update, sign the commitment."""
        return self.publish(task, self.local_params(task))

    def local_params(self, task: RoundTask) -> np.ndarray:
        """The parameters this institution sends for `task`: the task's global model trained on
        its own data (float32). A simulated attacker overrides this, and only this."""
        return self._train_from(task, self.store.get_params(task.global_model), self.data)

    def _train_from(self, task: RoundTask, global_params: np.ndarray, data: ClientData) -> np.ndarray:
        """Local training from `global_params` on `data`, seeded by (study seed, round, name)."""
        model = self._model_with(global_params)
        cfg = dataclasses.replace(self.training, prox_mu=float(task.client_config.get("prox_mu", 0.0)))
        return train_local(model, data, cfg, seed=derive_seed(self.seed, task.round, self.name),
                           global_params=global_params)

    def publish(self, task: RoundTask, params: np.ndarray) -> SignedUpdate:
        """Put `params` in the store and sign the commitment binding them to `task`'s round,
        parent model and ledger (UpdateRejected if they are not a finite float32 vector)."""
        digest = self.store.put_params(params)
        commitment = UpdateCommitment(chain_id=task.chain_id, ledger=task.ledger, round=task.round,
                                      parent_model=task.global_model, update=digest,
                                      num_samples=self.data.num_train)
        return SignedUpdate(self.address, commitment, sign_commitment(self.account, commitment))

    def evaluate(self, model_digest: str) -> dict[str, float]:
        """Metrics of a global model on this institution's own test set."""
        return evaluate(self._model_with(self.store.get_params(model_digest)), self.data.x_test, self.data.y_test)

    def score(self, update_digest: str) -> int:
        """Validation accuracy of an update, in parts per million (what the fully coupled
        contract records); 0 for an update that cannot be loaded or does not fit the model.
        """
        if self.data.num_validation == 0:
            raise DataError(f"{self.name} has no validation data to score updates on; "
                            "set [data].validation_fraction")
        try:
            params = self.store.get_params(update_digest)
            model = self._model_with(params)
        except (StoreError, ValueError):   # missing, corrupt, or the wrong size
            return 0
        accuracy = evaluate(model, self.data.x_val, self.data.y_val)["accuracy"]
        return round(accuracy * SCORE_SCALE)

    def check_inclusion(self, update: SignedUpdate, proof: Sequence[str], root: str) -> bool:
        """Was my update counted? Checks the coordinator's Merkle proof against the anchored root."""
        return verify_proof(update_leaves([update.as_entry()])[0], proof, root)
