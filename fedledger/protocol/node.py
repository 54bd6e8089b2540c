"""An institution's node: its own key, its own data, local training and evaluation.

A node shares nothing with other nodes except the artifact store (where it publishes its update
and fetches global models by digest) and the chain (through the records it checks). Patient data
never leaves it: only parameters and aggregate evaluation figures do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from eth_account.signers.local import LocalAccount

from fedledger.aggregation import model_part
from fedledger.crypto import UpdateCommitment, sign_commitment, verify_proof
from fedledger.errors import DataError, StoreError
from fedledger.learning import (
    BINARY,
    ClientData,
    Task,
    TrainConfig,
    build_model,
    evaluate,
    make_task,
    set_flat_params,
    train_local,
)
from fedledger.learning.data import rescaled
from fedledger.learning.dp_sgd import train_dp_sgd
from fedledger.privacy.client_dp import privatize_update
from fedledger.protocol.evaluation import sign_evaluation
from fedledger.protocol.manifest import update_leaves
from fedledger.protocol.messages import RoundTask, SignedUpdate
from fedledger.protocol.privacy import MemberPrivacy, PrivacyPlan
from fedledger.store import ArtifactStore

SCORE_SCALE = 1_000_000   # scores are parts per million, as ConsensusStudy.vy stores them
# secure aggregation: stores a member's (params, sample count) masked or encrypted; returns the digest
Protect = Callable[[np.ndarray, int, ArtifactStore], str]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    num_features: int
    hidden: tuple[int, ...] = (32,)
    task: Task = BINARY
    shape: tuple[int, ...] = ()      # "cnn": each row's input shape
    control_variates: bool = False   # SCAFFOLD: the global vector is the model, then the server's control variate


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one (study seed, round, institution) so every node trains reproducibly."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


class InstitutionNode:
    def __init__(self, name: str, account: LocalAccount, data: ClientData, model: ModelSpec,
                 training: TrainConfig, store: ArtifactStore, seed: int, privacy: PrivacyPlan | None = None,
                 noise_seed: int | None = None) -> None:
        self.name = name
        self.account = account
        self.data = data
        self.model_spec = model
        self.training = training
        self.store = store
        self.seed = seed
        # the study's differential privacy, from this member's side (None: none)
        self.privacy = MemberPrivacy(privacy, data.num_train, training) if privacy else None
        # Where the DP noise and sampling come from. It must be secret: anyone who could redraw the
        # noise could subtract it. A deployed node draws it from the OS; a simulation passes one
        # derived from the study seed, so that it repeats (its noise hides nothing from a reader
        # of its config, which is fine for measuring).
        self._noise_seed = secrets.randbits(63) if noise_seed is None else noise_seed
        # the last signed evaluation made: (model, chain id, ledger) -> its digest. A round's
        # metrics and the next round's update both carry this institution's evaluation of the
        # same model, and signing is deterministic, so the second is the same document.
        self._last_evaluation: tuple[tuple[str, int, str], str] | None = None
        # under the consortium's standardization, the data is not usable until it is done
        self._awaiting_standardization = False
        # SCAFFOLD: this institution's control variate c_i (it starts at zero, and again after a restart)
        self._control: np.ndarray | None = None

    @property
    def address(self) -> str:
        return self.account.address

    def await_standardization(self) -> None:
        """Refuse to train, evaluate or score until `standardize` has been called."""
        self._awaiting_standardization = True

    def standardize(self, mean: np.ndarray, std: np.ndarray, label_mean: float | None = None,
                    label_std: float | None = None) -> None:
        """Standardize this institution's rows with the consortium's statistics (and, for
        regression, learn the label in the consortium's standardized units)."""
        self.data = rescaled(self.data, mean, std)
        if label_mean is not None and label_std is not None:
            self.model_spec = dataclasses.replace(self.model_spec, task=make_task(
                self.model_spec.task.kind, label_mean=label_mean, label_std=label_std))
        self._awaiting_standardization = False
        self._last_evaluation = None

    def _check_standardized(self) -> None:
        if self._awaiting_standardization:
            raise DataError(f"{self.name}'s rows are not standardized with the consortium's statistics yet")

    def _model_with(self, params: np.ndarray) -> torch.nn.Module:
        self._check_standardized()
        model = build_model(self.model_spec.name, self.model_spec.num_features,
                            hidden=self.model_spec.hidden, seed=self.seed, task=self.model_spec.task,
                            shape=self.model_spec.shape)
        set_flat_params(model, model_part(params, self.model_spec.control_variates))
        return model

    def can_take_part(self) -> bool:
        """False once this member's privacy budget would not cover another release."""
        return self.privacy is None or self.privacy.can_release()

    def train(self, task: RoundTask, protect: Protect | None = None) -> SignedUpdate | None:
        """Train from the task's global model, publish the update, sign the commitment; None
        when this member's privacy budget would not cover another release (it sits out).
        Under secure aggregation `protect` stores the masked or encrypted update instead."""
        if not self.can_take_part():
            return None
        return self.publish(task, self.local_params(task), protect)

    def local_params(self, task: RoundTask) -> np.ndarray:
        """The parameters this institution sends for `task`: the task's global model trained on
        its own data (float32). A simulated attacker overrides this, and only this."""
        return self._train_from(task, self.store.get_params(task.global_model), self.data)

    def _train_from(self, task: RoundTask, global_params: np.ndarray, data: ClientData) -> np.ndarray:
        """Local training from `global_params` on `data`, seeded by (study seed, round, name),
        under the study's differential privacy if it has some."""
        model = self._model_with(global_params)
        cfg = dataclasses.replace(self.training, prox_mu=float(task.client_config.get("prox_mu", 0.0)))
        seed = derive_seed(self.seed, task.round, self.name)
        if self.model_spec.control_variates:
            return self._train_scaffold(model, data, cfg, seed, global_params)
        if self.privacy is None:
            return train_local(model, data, cfg, seed=seed, global_params=global_params)
        plan, mechanism = self.privacy.plan, self.privacy.mechanism
        secret = derive_seed(self._noise_seed, task.round, self.name)
        if plan.mechanism == "dp-sgd":
            return train_dp_sgd(model, data, cfg, noise_multiplier=mechanism.noise_multiplier,
                                max_grad_norm=plan.max_grad_norm, sample_rate=mechanism.sample_rate, seed=secret)
        params = train_local(model, data, cfg, seed=seed, global_params=global_params)
        return privatize_update(params, global_params, clip_norm=plan.max_grad_norm,
                                noise_multiplier=mechanism.noise_multiplier, noise_shares=plan.noise_shares,
                                seed=secret)

    def _train_scaffold(self, model: torch.nn.Module, data: ClientData, cfg: TrainConfig, seed: int,
                        global_params: np.ndarray) -> np.ndarray:
        """SCAFFOLD's local step (`fedledger.aggregation.Scaffold`): train with the gradient
        corrected by c - c_i, update c_i, send the model then c + (new c_i - old c_i)."""
        x, c = np.split(global_params.astype(np.float64), 2)
        c_i = self._control if self._control is not None else np.zeros_like(x)
        y = train_local(model, data, cfg, seed=seed, correction=(c - c_i).astype(np.float32)).astype(np.float64)
        c_new = c_i - c + (x - y) / (cfg.num_steps(data.num_train) * cfg.lr)
        self._control = c_new
        return np.concatenate([y, c + c_new - c_i]).astype(np.float32)

    def publish(self, task: RoundTask, params: np.ndarray, protect: Protect | None = None) -> SignedUpdate:
        """Put `params` in the store and sign the commitment binding them to `task`'s round,
        parent model and ledger (UpdateRejected if they are not a finite float32 vector); under
        differential privacy, count the release and attach its spend record."""
        weight = self.model_spec.task.aggregation_weight(self.data.y_train)   # survival: its events
        num_samples = self.privacy.plan.committed_samples(weight) if self.privacy else weight
        digest = self.store.put_params(params) if protect is None else protect(params, num_samples, self.store)
        commitment = UpdateCommitment(chain_id=task.chain_id, ledger=task.ledger, round=task.round,
                                      parent_model=task.global_model, update=digest, num_samples=num_samples)
        spend = self.privacy.release(task.round) if self.privacy else None
        return SignedUpdate(self.address, commitment, sign_commitment(self.account, commitment), spend)

    def evaluate(self, model_digest: str) -> dict[str, float]:
        """Metrics of a global model on this institution's own test set."""
        return evaluate(self._model_with(self.store.get_params(model_digest)), self.data.x_test, self.data.y_test)

    def personalize(self, model_digest: str, steps: Sequence[int], lr: float) -> dict[str, Any]:
        """Fine-tune a global model on this institution's training rows for each number of
        `steps` (0: as it is), keep the one its validation rows score best (ties: fewer steps)
        and evaluate that on its test rows: {"steps", "validation_score", "figures"}. The
        fine-tuned model stays here; only its figures leave the site."""
        if self.data.num_validation == 0:
            raise DataError(f"{self.name} has no validation rows to choose its fine-tuning on; "
                            "set [data].validation_fraction")
        start = self.store.get_params(model_digest)
        task, best = self.model_spec.task, None
        for k in sorted(set(steps)):
            model = self._model_with(start)
            if k:
                cfg = dataclasses.replace(self.training, local_steps=k, epochs=None, lr=lr or self.training.lr,
                                          prox_mu=0.0)
                train_local(model, self.data, cfg, seed=derive_seed(self.seed, "personalize", self.name))
            score = task.score(evaluate(model, self.data.x_val, self.data.y_val))
            if best is None or score > best[0]:
                best = (score, k, model)
        assert best is not None, "steps is not empty"
        score, k, model = best
        return {"steps": k, "validation_score": score, "figures": evaluate(model, self.data.x_test, self.data.y_test)}

    def signed_evaluation(self, model_digest: str, chain_id: int, ledger: str) -> str:
        """Evaluate a global model on this institution's own test set and store the evaluation,
        signed and bound to the study at `ledger` on chain `chain_id`; its digest."""
        key = (model_digest, chain_id, ledger)
        if self._last_evaluation is not None and self._last_evaluation[0] == key and self.store.has(
                self._last_evaluation[1]):
            return self._last_evaluation[1]
        digest = self.store.put_json(sign_evaluation(self.account, chain_id, ledger, model_digest,
                                                     self.evaluate(model_digest)))
        self._last_evaluation = (key, digest)
        return digest

    def score(self, update_digest: str) -> int:
        """The validation score of an update (`Task.score`: accuracy, R^2 or C-index), in parts
        per million (what the full contract records); 0 for an update that cannot be loaded or
        does not fit the model.
        """
        if self.data.num_validation == 0:
            raise DataError(f"{self.name} has no validation data to score updates on; "
                            "set [data].validation_fraction")
        try:
            params = self.store.get_params(update_digest)
            model = self._model_with(params)
        except (StoreError, ValueError):   # missing, corrupt, or the wrong size
            return 0
        score = self.model_spec.task.score(evaluate(model, self.data.x_val, self.data.y_val))
        return round(score * SCORE_SCALE)

    def check_inclusion(self, update: SignedUpdate, proof: Sequence[str], root: str) -> bool:
        """Was my update counted? Checks the coordinator's Merkle proof against the anchored root."""
        return verify_proof(update_leaves([update.as_entry()])[0], proof, root)
