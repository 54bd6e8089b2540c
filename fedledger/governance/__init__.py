"""Governance on the chain beyond training (docs/governance.md): risk-based access to patients'
data, decided by the AccessPolicy contract from a FedLedger-trained model's risk estimate."""

from fedledger.governance.access import RiskEstimate, estimate_risk, patient_pseudonym, request_with_risk

__all__ = ["RiskEstimate", "estimate_risk", "patient_pseudonym", "request_with_risk"]
