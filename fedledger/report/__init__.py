"""Metrics summaries, the final table and the per-round plot of a study."""

from fedledger.report.metrics import summarize_evaluations
from fedledger.report.plot import plot_metrics
from fedledger.report.table import format_table, results_table

__all__ = ["format_table", "plot_metrics", "results_table", "summarize_evaluations"]
