"""Metrics, evaluation reports and plots, cross-validation and active learning."""

from __future__ import annotations

from prism_science.evaluation.active import (
    suggest_bouts,
    suggest_frames,
    uncertainty,
)
from prism_science.evaluation.metrics import (
    average_precision,
    bout_f1,
    macro_accuracy,
    mean_average_precision,
    precision_recall_f1,
)
from prism_science.evaluation.report import (
    NO_BEHAVIOR,
    CrossValidationResult,
    EvaluationReport,
    cross_validate,
    evaluate_predictions,
    plot_ethogram,
    plot_precision_recall,
    single_label,
    write_report,
)

__all__ = [
    "NO_BEHAVIOR",
    "CrossValidationResult",
    "EvaluationReport",
    "average_precision",
    "bout_f1",
    "cross_validate",
    "evaluate_predictions",
    "macro_accuracy",
    "mean_average_precision",
    "plot_ethogram",
    "plot_precision_recall",
    "single_label",
    "precision_recall_f1",
    "suggest_bouts",
    "suggest_frames",
    "uncertainty",
    "write_report",
]
