"""Bundles: a run's model with its task, features and scaling, to score new records with
(`fedledger export`, `fedledger predict`)."""

from fedledger.bundle.export import Exported, export_bundle
from fedledger.bundle.predict import Bundle, load_bundle, predict_csv, score

__all__ = ["Bundle", "Exported", "export_bundle", "load_bundle", "predict_csv", "score"]
