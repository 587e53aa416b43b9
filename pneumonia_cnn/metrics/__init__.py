"""Scores to numbers and figures: metrics, confidence intervals, threshold rules, score
distributions, plots and report text. No TensorFlow and no MLflow: everything here works on
labels and probabilities.
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_metrics`` (metrics and intervals), ``_thresholds``
# (every threshold rule), ``_scores`` (score distributions in logit space), ``_plots``
# (figures), ``_report`` (JSON and text forms of a result).

from ._metrics import (
    MIN_FOR_AUC_INTERVAL,
    NEGATIVE,
    POSITIVE,
    confidence_intervals,
    metrics_from_scores,
    wilson_interval,
)
from ._plots import (
    evaluation_figures,
    plot_confusion_matrix,
    plot_history,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    plt,
)
from ._report import public_metrics, report_text, strict_json
from ._scores import (
    ClassShape,
    check_probabilities,
    logit,
    sigmoid,
    smooth_quantile,
    smooth_share,
)
from ._thresholds import (
    RULES,
    choose_threshold,
    decision_threshold,
    sensitivity_bound,
    threshold_for_sensitivity,
    threshold_for_sensitivity_hd,
    threshold_with_confidence,
    threshold_youden,
)

__all__ = [
    "MIN_FOR_AUC_INTERVAL", "NEGATIVE", "POSITIVE", "RULES", "ClassShape",
    "check_probabilities", "choose_threshold", "confidence_intervals", "decision_threshold",
    "evaluation_figures", "logit", "metrics_from_scores", "plot_confusion_matrix",
    "plot_history", "plot_precision_recall", "plot_reliability", "plot_roc", "plt",
    "public_metrics", "report_text", "sensitivity_bound", "sigmoid", "smooth_quantile",
    "smooth_share", "strict_json", "threshold_for_sensitivity",
    "threshold_for_sensitivity_hd", "threshold_with_confidence", "threshold_youden",
    "wilson_interval",
]
