"""Figures of a fit and an evaluation (matplotlib / seaborn / scikit-learn displays).

Kept apart from :mod:`pneumonia_cnn.evaluation` (metrics) and
:mod:`pneumonia_cnn.tracking` (MLflow), which both draw them, so neither imports the other.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    PrecisionRecallDisplay,
    RocCurveDisplay,
    brier_score_loss,
)

from .data import CLASS_NAMES  # noqa: E402

__all__ = ["evaluation_figures", "plot_confusion_matrix", "plot_history", "plot_precision_recall",
           "plot_reliability", "plot_roc"]

NEGATIVE, POSITIVE = CLASS_NAMES  # "NORMAL", "PNEUMONIA"


def plot_confusion_matrix(cm, labels=(NEGATIVE, POSITIVE), ci95: dict | None = None):
    """Seaborn heat map of a confusion matrix with counts and row percentages (and, given
    ``ci95``, the 95% intervals of sensitivity and specificity under it)."""
    cm = np.asarray(cm)
    row = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, row, out=np.zeros_like(cm, dtype=float), where=row > 0) * 100
    annot = np.array([[f"{c}\n{p:.1f}%" for c, p in zip(rc, rp)] for rc, rp in zip(cm, pct)])
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    # coloured by row percentage, so that the smaller class reads as clearly as the larger
    sns.heatmap(pct, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=100, cbar=False, square=True,
                xticklabels=labels, yticklabels=labels, ax=ax, annot_kws={"size": 12})
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(f"Confusion matrix, {int(cm.sum())} images (% of true class)")
    if ci95:
        sens, spec = ci95.get("sensitivity"), ci95.get("specificity")
        ax.text(0.5, -0.3, f"95% CI: sensitivity {sens[0]:.3f}-{sens[1]:.3f}, specificity "
                f"{spec[0]:.3f}-{spec[1]:.3f}", transform=ax.transAxes, ha="center",
                fontsize=9)
    return fig


def _curve(display, title: str, y_true, y_score, pos_label):  # noqa: D401
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    display.from_predictions(y_true, y_score, pos_label=pos_label, ax=ax, name="PneumoniaCNN",
                             plot_chance_level=True)
    ax.set_title(title)
    return fig


def plot_roc(y_true, y_score, pos_label=POSITIVE, auc_ci: list | None = None):
    """ROC curve with its AUC (scikit-learn's RocCurveDisplay) and, given ``auc_ci``, the
    AUC's 95% interval in the title."""
    title = f"ROC curve, {len(y_true)} images"
    if auc_ci is not None and np.isfinite(auc_ci).all():
        title += f"\nAUC 95% CI {auc_ci[0]:.3f}-{auc_ci[1]:.3f} (bootstrap)"
    return _curve(RocCurveDisplay, title, y_true, y_score, pos_label)


def plot_precision_recall(y_true, y_score, pos_label=POSITIVE):
    """Precision-recall curve with average precision (scikit-learn's display)."""
    return _curve(PrecisionRecallDisplay, "Precision-recall curve", y_true, y_score, pos_label)


def plot_reliability(y_true, y_score, pos_label=POSITIVE, n_bins: int = 10):
    """Reliability diagram (scikit-learn's CalibrationDisplay, quantile bins) with the Brier
    score: are the probabilities what they say?"""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    y_pos = np.asarray(y_true).astype(str) == pos_label
    CalibrationDisplay.from_predictions(y_pos, y_score, n_bins=n_bins, strategy="quantile",
                                        ax=ax, name="PneumoniaCNN")
    ax.set_title(f"Reliability, {len(y_pos)} images (Brier "
                 f"{brier_score_loss(y_pos, y_score):.3f})")
    ax.set_xlabel("Mean predicted P(PNEUMONIA)")
    ax.set_ylabel("Fraction of PNEUMONIA films")
    return fig


def evaluation_figures(result: dict) -> dict:
    """The figures of an :func:`pneumonia_cnn.evaluation.evaluate` result, name -> figure:
    confusion matrix, and with both classes ROC and precision-recall curves and the
    reliability diagram. The caller closes them."""
    y_true, y_score = result["_y_true"], result["_y_score"]
    ci = result.get("ci95") or {}
    figs = {"confusion_matrix": plot_confusion_matrix(result["confusion_matrix"],
                                                      ci95=ci or None)}
    if len(np.unique(y_true)) == 2:
        figs["roc_curve"] = plot_roc(y_true, y_score, auc_ci=ci.get("roc_auc"))
        figs["precision_recall_curve"] = plot_precision_recall(y_true, y_score)
        figs["reliability_diagram"] = plot_reliability(y_true, y_score)
    return figs


def plot_history(history: dict):
    """Loss, accuracy and ROC AUC per epoch, training vs validation."""
    panels = [m for m in ("loss", "accuracy", "auc") if m in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], marker="o", ms=3, label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title({"auc": "ROC AUC"}.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
