"""Metrics summaries, the final table and the per-round plot of a study; the architecture comparison."""

from fedledger.report.compare import comparison_report, plot_comparison
from fedledger.report.metrics import evaluation_problem, summarize_evaluations
from fedledger.report.plot import metrics_title, plot_metrics
from fedledger.report.table import format_table, results_table

__all__ = ["comparison_report", "evaluation_problem", "format_table", "metrics_title", "plot_comparison",
           "plot_metrics",
           "results_table", "summarize_evaluations"]
