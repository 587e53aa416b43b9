"""The numbers of an evaluation: metrics of scores at a threshold (scikit-learn) and their
confidence intervals."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ..data import CLASS_NAMES

__all__ = ["NEGATIVE", "POSITIVE", "MIN_FOR_AUC_INTERVAL", "confidence_intervals",
           "metrics_from_scores", "wilson_interval"]

NEGATIVE, POSITIVE = CLASS_NAMES  # "NORMAL", "PNEUMONIA"


def metrics_from_scores(y_true, y_score, threshold: float = 0.5,
                        labels=(NEGATIVE, POSITIVE)) -> dict:
    """All metrics from true labels and P(positive) scores.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
        True class names.
    y_score : array-like of float, shape (n,)
        Probability of the positive class (``labels[1]``).
    threshold : float, default=0.5
        Scores >= threshold are predicted positive.
    labels : (str, str), default=("NORMAL", "PNEUMONIA")
        Negative and positive class.

    Returns
    -------
    dict
        ``accuracy``, ``roc_auc`` (NaN if y_true has one class), ``sensitivity`` (recall of
        the positive class), ``specificity`` (recall of the negative class), ``precision``,
        ``f1``, ``brier`` (Brier score of the probabilities: mean squared error, lower is
        better), ``n_images``, ``threshold``, ``confusion_matrix`` (rows: true
        ``labels``, columns: predicted) and ``classification_report`` (scikit-learn's, as a
        dict; its text form is under ``classification_report_text``).
    """
    neg, pos = labels
    y_true = np.asarray(y_true).astype(str)
    y_score = np.asarray(y_score, dtype=float)
    y_pred = np.where(y_score >= threshold, pos, neg)
    if len(np.unique(y_true)) < 2:
        warnings.warn("only one class in y_true: ROC AUC is undefined (NaN)", stacklevel=2)
        auc = float("nan")
    else:
        auc = float(roc_auc_score(y_true == pos, y_score))
    # undefined is NaN (null in JSON), never 0.0: a set without PNEUMONIA films has no
    # sensitivity, one without NORMAL films no specificity, no positive call no precision
    kw = {"zero_division": np.nan}
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": auc,
        "brier": float(brier_score_loss(y_true == pos, y_score)),
        "sensitivity": float(recall_score(y_true, y_pred, pos_label=pos, **kw)),
        "specificity": float(recall_score(y_true, y_pred, pos_label=neg, **kw)),
        "precision": float(precision_score(y_true, y_pred, pos_label=pos, **kw)),
        "f1": (float(f1_score(y_true, y_pred, pos_label=pos, **kw))
               if (y_true == pos).any() else float("nan")),  # no positives: undefined
        "n_images": int(len(y_true)),
        "threshold": float(threshold),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
        "classification_report": classification_report(
            y_true, y_pred, labels=list(labels), output_dict=True, zero_division=0),
        "classification_report_text": classification_report(
            y_true, y_pred, labels=list(labels), digits=3, zero_division=0),
    }



def wilson_interval(k: int, n: int, confidence: float = 0.95) -> list:
    """Wilson score interval of a proportion k/n (scipy's ``binomtest``); [nan, nan] for
    n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return [float("nan"), float("nan")]
    ci = binomtest(int(k), int(n)).proportion_ci(confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


#: Fewest images of each class for a bootstrap interval of the ROC AUC.
MIN_FOR_AUC_INTERVAL = 10


def confidence_intervals(y_true, y_score, threshold: float = 0.5, groups=None,
                         n_boot: int = 1000, random_state: int = 0) -> dict:
    """95% confidence intervals of an evaluation.

    Accuracy, sensitivity and specificity: Wilson score intervals (counts of images).
    ROC AUC: percentile bootstrap over **patients** (``groups``; images of one patient are
    resampled together, since they are not independent), ``n_boot`` resamples; NaN (null)
    with fewer than :data:`MIN_FOR_AUC_INTERVAL` images of either class.

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity``, ``specificity``, ``roc_auc`` -> [low, high].
    """
    y_pos = np.asarray(y_true).astype(str) == POSITIVE
    y_score = np.asarray(y_score, float)
    pred = y_score >= threshold
    out = {"accuracy": wilson_interval((pred == y_pos).sum(), len(y_pos)),
           "sensitivity": wilson_interval(pred[y_pos].sum(), y_pos.sum()),
           "specificity": wilson_interval((~pred[~y_pos]).sum(), (~y_pos).sum())}
    out["roc_auc"] = [float("nan"), float("nan")]
    # a bootstrap of a handful of films gives "1.000-1.000", which reads as certainty: with
    # fewer than MIN_FOR_AUC_INTERVAL of either class the interval is undefined (null)
    if min(y_pos.sum(), (~y_pos).sum()) >= MIN_FOR_AUC_INTERVAL:
        groups = np.arange(len(y_pos)) if groups is None else np.asarray(groups)
        _, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
        rng = np.random.default_rng(random_state)
        aucs = []
        for _ in range(n_boot):
            idx = np.concatenate([members[g] for g in rng.integers(len(members),
                                                                   size=len(members))])
            if y_pos[idx].all() or not y_pos[idx].any():
                continue
            aucs.append(roc_auc_score(y_pos[idx], y_score[idx]))
        if aucs:
            out["roc_auc"] = [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]
    return out
