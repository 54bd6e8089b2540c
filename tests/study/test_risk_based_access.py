"""Risk-based access end to end on the embedded chain: a vital-signs study trains the risk
model, its exported bundle estimates patients' risk levels, the access contract decides each
request from the requester's role, the action and that risk, and the audit replays it all."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from eth_account import Account

from fedledger.audit import AuditReport
from fedledger.audit.access import verify_access
from fedledger.bundle import export_bundle, load_bundle
from fedledger.chain import Consortium, EmbeddedChain, LooseStudy
from fedledger.chain.access import RISK_LEVELS, AccessPolicy, AccessReason, Decision
from fedledger.config import config_from_dict
from fedledger.errors import DataError
from fedledger.governance import estimate_risk, patient_pseudonym, request_with_risk
from fedledger.learning.data import raw_features
from fedledger.learning.vital_signs import load_vital_signs
from fedledger.simulation import run_study

NURSE, READ_VITALS = 2, 0
SALT = b"the site's secret salt, kept at the site"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("risk")
    cfg = config_from_dict({
        "study": {"name": "risk", "seed": 3, "rounds": 2},
        "data": {"dataset": "vital_signs", "num_clients": 6},
        "model": {"name": "cnn", "hidden": [4, 8]},
        "training": {"optimizer": "adam", "lr": 0.003, "batch_size": 8, "local_steps": 5},
    }, base_dir=tmp)
    run_study(cfg, run_dir=tmp / "run", progress=False)
    bundle = load_bundle(export_bundle(tmp / "run").path)
    rows = np.concatenate([raw_features(c, c.x_test) for c in load_vital_signs(6, 3)])
    return tmp / "run", bundle, rows


def test_requests_are_decided_from_the_models_risk_estimate_and_audited(trained):
    run, bundle, rows = trained
    info = json.loads((run / "run.json").read_text())
    chain = EmbeddedChain.open(run / "chain")
    try:
        study = LooseStudy(chain, info["contracts"]["ledger"])
        admin, nurse = Account.create(), Account.create()
        chain.fund([admin.address, nurse.address], 10**19)
        consortium = Consortium.deploy(chain, admin)
        policy = AccessPolicy.deploy(chain, admin, consortium.address)
        assert study.round_model(2) == bundle.doc["model_digest"]
        policy.set_risk_model(admin, study.address, 2, bundle.doc["model_digest"])
        policy.set_requester(admin, nurse.address, NURSE)
        # a nurse reads the vitals of serious and critical patients, not of stable ones
        for level in (1, 2):
            policy.set_policy(admin, NURSE, READ_VITALS, level, Decision.PERMIT)
        seen = set()
        for i, row in enumerate(rows[:12]):
            patient = patient_pseudonym(SALT, f"patient {i}")
            estimate, record = request_with_risk(policy, nurse, bundle, row, patient, READ_VITALS)
            seen.add(estimate.name)
            assert record.risk_level == estimate.level and record.patient == patient
            assert record.model == bundle.doc["model_digest"]
            assert record.input_digest == hashlib.sha256(row.astype("<f8").tobytes()).hexdigest()
            assert record.decision == (Decision.PERMIT if estimate.level >= 1 else Decision.DENY)
            assert record.reason == AccessReason.BY_POLICY
        assert seen <= set(RISK_LEVELS) and len(policy.decisions()) == 12
        report = AuditReport("access")
        verify_access(report, policy, lambda address, r: study.round_model(r) if address == study.address else None)
        assert report.ok, report.findings
        assert any("risk level is the risk model's output" in u for u in report.unverified)
    finally:
        chain.close()


def test_a_bundle_of_another_target_or_a_wrong_input_is_refused(trained):
    _, bundle, rows = trained
    assert estimate_risk(bundle, rows[0]).model == bundle.doc["model_digest"]
    other = dataclasses.replace(bundle, doc={**bundle.doc, "task": {**bundle.doc["task"], "classes": ["a", "b", "c"]}})
    with pytest.raises(DataError, match="does not estimate risk levels stable, serious, critical"):
        estimate_risk(other, rows[0])
    with pytest.raises(DataError, match="must be 1500 finite numbers"):
        estimate_risk(bundle, rows[0][:10])
    with pytest.raises(DataError, match="must be 1500 finite numbers"):
        estimate_risk(bundle, np.full(1500, np.nan))


def test_a_pseudonym_hides_the_identifier_under_the_sites_salt():
    one = patient_pseudonym(SALT, "patient 1")
    assert one == patient_pseudonym(SALT, "patient 1") and len(one) == 64
    assert one != patient_pseudonym(SALT, "patient 2") != patient_pseudonym(SALT + b"!", "patient 1")
    assert "patient" not in one
    with pytest.raises(DataError, match="at least 16 bytes"):
        patient_pseudonym(b"short", "patient 1")
