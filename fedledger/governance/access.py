"""A requester's side of risk-based access: estimate the patient's risk level with an exported,
FedLedger-trained model (a vital-signs study's bundle), then ask the access contract, naming
that model's digest and the digest of the input it read.

The patient is named on chain by a pseudonym: an HMAC-SHA256 of the patient's identifier under a
salt the site keeps, so the chain holds no personal data and only the site can link a pseudonym
back to its patient.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from eth_account.signers.local import LocalAccount

from fedledger.bundle import Bundle, score
from fedledger.chain.access import RISK_LEVELS, AccessPolicy, AccessRecord
from fedledger.errors import DataError

MIN_SALT_BYTES = 16


@dataclass(frozen=True)
class RiskEstimate:
    """A risk level (index in RISK_LEVELS) as `model` estimated it from the input hashing to
    `input_digest` (sha-256 of the raw features as little-endian float64)."""
    level: int
    input_digest: str
    model: str

    @property
    def name(self) -> str:
        return RISK_LEVELS[self.level]


def patient_pseudonym(salt: bytes, patient_id: str) -> str:
    """The patient's pseudonym on chain: HMAC-SHA256(salt, identifier), hex."""
    if len(salt) < MIN_SALT_BYTES:
        raise DataError(f"a pseudonym's salt must be at least {MIN_SALT_BYTES} bytes (a secret the site keeps)")
    if not patient_id:
        raise DataError("a patient identifier must not be empty")
    return hmac.new(salt, patient_id.encode(), hashlib.sha256).hexdigest()


def estimate_risk(bundle: Bundle, raw: Sequence[float], institution: str | None = None) -> RiskEstimate:
    """The risk level `bundle`'s model gives one row of raw features (the bundle's features, in
    its order), standardized as the bundle says; DataError for a model of another target."""
    classes = tuple(bundle.doc["task"]["classes"])
    if bundle.task.kind != "multiclass" or classes != RISK_LEVELS:
        raise DataError(f"{bundle.path} does not estimate risk levels {', '.join(RISK_LEVELS)} "
                        f"(its task: {bundle.task.kind}, classes {', '.join(classes) or 'none'})")
    row = np.asarray(raw, dtype=np.float64)
    if row.shape != (len(bundle.features),) or not np.isfinite(row).all():
        raise DataError(f"the input must be {len(bundle.features)} finite numbers (the bundle's features), "
                        f"got shape {row.shape}")
    level = int(score(bundle, row[None, :], institution).argmax(axis=1)[0])
    digest = hashlib.sha256(row.astype("<f8").tobytes()).hexdigest()
    return RiskEstimate(level, digest, bundle.doc["model_digest"])


def request_with_risk(policy: AccessPolicy, requester: LocalAccount, bundle: Bundle, raw: Sequence[float],
                      patient: str, action: int, emergency: bool = False,
                      institution: str | None = None) -> tuple[RiskEstimate, AccessRecord]:
    """Estimate the patient's risk from `raw` with `bundle`'s model and ask `policy` for `action`
    on `patient` (a pseudonym); the estimate and the decision as the chain recorded it."""
    estimate = estimate_risk(bundle, raw, institution)
    record = policy.request_access(requester, patient, action, estimate.level, estimate.model,
                                   estimate.input_digest, emergency)
    return estimate, record
