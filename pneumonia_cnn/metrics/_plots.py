"""Figures and report text of a fit and an evaluation (matplotlib / seaborn /
scikit-learn displays).

Kept apart from :mod:`pneumonia_cnn.analysis` (metrics) and
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

from ..data import CLASS_NAMES  # noqa: E402

__all__ = ["evaluation_figures", "plot_confusion_matrix", "plot_history", "plot_precision_recall",
           "plot_reliability", "plot_roc"]

NEGATIVE, POSITIVE = CLASS_NAMES  # "NORMAL", "PNEUMONIA"


def plot_confusion_matrix(cm, labels=(NEGATIVE, POSITIVE), ci95: dict | None = None,
                          caption: str = ""):
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
    ax.set_title("Confusion matrix (% of true class)"
                 + (f"\n{caption}" if caption else f", {int(cm.sum())} images"), fontsize=9)
    if ci95:
        sens, spec = ci95.get("sensitivity"), ci95.get("specificity")
        ax.text(0.5, -0.3, f"95% CI: sensitivity {sens[0]:.3f}-{sens[1]:.3f}, specificity "
                f"{spec[0]:.3f}-{spec[1]:.3f}", transform=ax.transAxes, ha="center",
                fontsize=9)
    return fig


def _short_name(data: str) -> str:
    """The last two parts of a data folder's path (titles must fit), keeping any note."""
    from pathlib import Path

    head, sep, tail = data.partition(" (")
    parts = Path(head).parts
    return ("/".join(parts[-2:]) if len(parts) > 2 else head) + (sep + tail if sep else "")


def _caption(result: dict | None) -> str:
    """'SYNTHETIC - data: n images, threshold t' for titles."""
    if not result:
        return ""
    text = f"{_short_name(str(result.get('data', '')))}: {result['n_images']} images, " \
           f"threshold {result['threshold']:.3f}"
    return ("SYNTHETIC DATA - " if result.get("synthetic") else "") + text


def _curve(display, title: str, y_true, y_score, pos_label, label: str, point=None,
           point_label: str = ""):
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    disp = display.from_predictions(y_true, y_score, pos_label=pos_label, ax=ax,
                                    name="PneumoniaCNN", plot_chance_level=True)
    disp.line_.set_label(label)  # 3 decimals: a rounded "AUC = 0.99" reads as perfect
    if point is not None:
        ax.plot(*point, "o", ms=8, mfc="none", mec="red", mew=2, label=point_label)
    ax.legend(loc="lower right" if display is RocCurveDisplay else "lower left", fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def plot_roc(y_true, y_score, pos_label=POSITIVE, auc_ci: list | None = None,
             threshold: float | None = None, caption: str = ""):
    """ROC curve (scikit-learn's RocCurveDisplay) with its AUC to 3 decimals and its 95%
    interval, and the operating point of ``threshold`` marked with its sensitivity and
    specificity."""
    from sklearn.metrics import roc_auc_score

    y_pos = np.asarray(y_true).astype(str) == pos_label
    y_score = np.asarray(y_score, float)
    auc = roc_auc_score(y_pos, y_score)
    label = f"PneumoniaCNN (AUC = {auc:.3f}"
    if auc_ci is not None and np.isfinite(auc_ci).all():
        label += f", 95% CI {auc_ci[0]:.3f}-{auc_ci[1]:.3f}"
    point, point_label = None, ""
    if threshold is not None:
        pred = y_score >= threshold
        sens, spec = pred[y_pos].mean(), (~pred[~y_pos]).mean()
        point = (1 - spec, sens)
        point_label = f"threshold {threshold:.3f}: sens {sens:.3f}, spec {spec:.3f}"
    return _curve(RocCurveDisplay, "ROC curve" + (f"\n{caption}" if caption else ""),
                  y_true, y_score, pos_label, label + ")", point, point_label)


def plot_precision_recall(y_true, y_score, pos_label=POSITIVE, threshold: float | None = None,
                          caption: str = ""):
    """Precision-recall curve (scikit-learn's display) with average precision to 3 decimals
    and the operating point of ``threshold``."""
    from sklearn.metrics import average_precision_score

    y_pos = np.asarray(y_true).astype(str) == pos_label
    y_score = np.asarray(y_score, float)
    ap = average_precision_score(y_pos, y_score)
    point, point_label = None, ""
    if threshold is not None:
        pred = y_score >= threshold
        recall = pred[y_pos].mean()
        precision = y_pos[pred].mean() if pred.any() else 1.0
        point = (recall, precision)
        point_label = f"threshold {threshold:.3f}: recall {recall:.3f}, precision {precision:.3f}"
    return _curve(PrecisionRecallDisplay,
                  "Precision-recall curve" + (f"\n{caption}" if caption else ""),
                  y_true, y_score, pos_label, f"PneumoniaCNN (AP = {ap:.3f})", point,
                  point_label)


def plot_reliability(y_true, y_score, pos_label=POSITIVE, n_bins: int = 10, caption: str = ""):
    """Reliability diagram (scikit-learn's CalibrationDisplay, quantile bins) with the Brier
    score: are the probabilities what they say?"""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    y_pos = np.asarray(y_true).astype(str) == pos_label
    CalibrationDisplay.from_predictions(y_pos, y_score, n_bins=n_bins, strategy="quantile",
                                        ax=ax, name="PneumoniaCNN")
    ax.set_title(f"Reliability (Brier score {brier_score_loss(y_pos, y_score):.3f})"
                 + (f"\n{caption}" if caption else f", {len(y_pos)} images"), fontsize=9)
    ax.set_xlabel("Mean predicted P(PNEUMONIA)")
    ax.set_ylabel("Fraction of PNEUMONIA films")
    return fig


def evaluation_figures(result: dict) -> dict:
    """The figures of an :func:`pneumonia_cnn.analysis.evaluate` result, name -> figure:
    confusion matrix, and with both classes ROC and precision-recall curves (operating point
    marked) and the reliability diagram. Titles say which data, how many images and which
    threshold. The caller closes them."""
    table = result["per_image"]
    y_true, y_score = table["true"].to_numpy(), table["probability"].to_numpy()
    ci = result.get("ci95") or {}
    caption = _caption(result)
    t = result["threshold"]
    figs = {"confusion_matrix": plot_confusion_matrix(result["confusion_matrix"],
                                                      ci95=ci or None, caption=caption)}
    if len(np.unique(y_true)) == 2:
        figs["roc_curve"] = plot_roc(y_true, y_score, auc_ci=ci.get("roc_auc"), threshold=t,
                                     caption=caption)
        figs["precision_recall_curve"] = plot_precision_recall(y_true, y_score, threshold=t,
                                                               caption=caption)
        figs["reliability_diagram"] = plot_reliability(y_true, y_score, caption=caption)
    return figs


def plot_history(history: dict, best_epoch: int | None = None, synthetic: bool = False,
                 n_networks: int = 1, histories: list | None = None,
                 averaged_epochs: list | None = None):
    """Loss (log scale), accuracy and ROC AUC per epoch, training vs the internal
    validation hold-out, with the weights that were kept marked: the best epoch, or the
    span of epochs averaged (``averaged_epochs``). Every epoch is shown, the first
    included. For an ensemble, ``histories`` (one per network) are all drawn, each network
    in its own shade; ``history`` alone draws one network.

    Parameters
    ----------
    history : dict
        Per-epoch ``loss``, ``accuracy``, ``auc`` and their ``val_`` counterparts.
    best_epoch : int, default=None
        The kept epoch (None: the best validation ROC AUC, where there is one).
    synthetic : bool, default=False
        Say SYNTHETIC DATA in every title.
    n_networks : int, default=1
        The ensemble's size (for the title).
    histories : list of dict, default=None
        Every network's history (``member_histories_``).
    averaged_epochs : list of int, default=None
        The epochs whose weights were averaged (``averaged_epochs_``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    histories = list(histories) if histories else [history]
    panels = [m for m in ("loss", "accuracy", "auc") if m in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    if best_epoch is None and history.get("val_auc") and not averaged_epochs:
        best_epoch = int(np.argmax(history["val_auc"])) + 1
    for ax, metric in zip(axes[0], panels):
        for i, h in enumerate(histories):
            if metric not in h:
                continue
            epochs = np.arange(1, len(h[metric]) + 1)
            ax.plot(epochs, h[metric], marker="o", ms=3, color="C0",
                    alpha=1.0 if i == 0 else 0.45, label=("train" if i == 0 else None))
            if f"val_{metric}" in h:
                ax.plot(epochs, h[f"val_{metric}"], marker="o", ms=3, color="C1",
                        alpha=1.0 if i == 0 else 0.45,
                        label=("validation (internal hold-out)" if i == 0 else None))
        if averaged_epochs:
            ax.axvspan(averaged_epochs[0] - 0.5, averaged_epochs[-1] + 0.5, color="grey",
                       alpha=0.15, label=f"kept: average of epochs {averaged_epochs[0]}-"
                                         f"{averaged_epochs[-1]}")
        elif best_epoch and len(histories) == 1:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1,
                       label=f"kept: epoch {best_epoch}")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(("SYNTHETIC DATA - " if synthetic else "")
                     + {"auc": "ROC AUC", "loss": "loss (log scale)"}.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if n_networks > 1:
        shown = ("all of them, network 1 darkest" if len(histories) > 1 else "network 1 only")
        fig.suptitle(f"The ensemble's {n_networks} networks ({shown}); their probabilities "
                     "are averaged for predictions", fontsize=9)
    fig.tight_layout()
    return fig
