"""Operating points: every rule that turns scores into a decision threshold, in one place.

* :func:`threshold_for_sensitivity`: the split-conformal order statistic (``threshold=
  "conformal"``);
* :func:`threshold_for_sensitivity_hd`: the Harrell-Davis quantile (``threshold="target"``,
  the default);
* :func:`threshold_youden`: Youden's J (``threshold="auto"``);
* :func:`threshold_with_confidence` and :func:`sensitivity_bound`: the training-conditional
  conformal rule of site calibration;
* :func:`choose_threshold`: the estimator's rule by name; :func:`decision_threshold`: the
  threshold a fitted model's ``predict`` uses.
"""

from __future__ import annotations

import numpy as np

from ._metrics import POSITIVE

__all__ = ["RULES", "choose_threshold", "decision_threshold", "sensitivity_bound",
           "threshold_for_sensitivity", "threshold_for_sensitivity_hd",
           "threshold_with_confidence", "threshold_youden"]

#: The threshold rules an estimator's ``threshold`` parameter may name.
RULES = ("target", "conformal", "auto")


def threshold_for_sensitivity(y_true, y_score, target: float) -> float:
    """The most specific threshold that keeps sensitivity at ``target`` on *new* images.

    The split-conformal rule (e.g. Angelopoulos & Bates, 2021): of the ``k`` PNEUMONIA
    scores, take the ``j``-th smallest with ``j = floor((k + 1) * (1 - target))`` (at least
    1). If the new site's PNEUMONIA films are exchangeable with these, a new one scores at or
    above it with probability ``1 - j / (k + 1) >= target``. Choosing instead the highest
    threshold whose sensitivity *on the set itself* reaches the target is optimistic: with
    20 positives it may miss one of them, and more on the films that come after.
    With fewer than ``1 / (1 - target) - 1`` positives no threshold can promise the target;
    the lowest positive score is used (callers warn).
    """
    y_pos = np.asarray(y_true).astype(str) == POSITIVE
    pos = np.sort(np.asarray(y_score, float)[y_pos])
    if pos.size == 0:
        raise ValueError("threshold_for_sensitivity needs PNEUMONIA images")
    j = max(int(np.floor((pos.size + 1) * (1.0 - float(target)) + 1e-9)), 1)
    return float(np.clip(pos[j - 1], 0.0, 1.0))


def threshold_for_sensitivity_hd(y_true, y_score, target: float) -> float:
    """The threshold that keeps ``target`` of the PNEUMONIA scores above it, estimated with
    the Harrell-Davis quantile (scipy's ``mstats.hdquantiles``): a Beta-weighted average of
    all order statistics instead of one of them.

    It estimates the same quantile as :func:`threshold_for_sensitivity` (expected
    sensitivity on new films of the same distribution: ``target``), but does not rest on the
    one or two films at the tail: on the whole training split its spread over two seeds of
    the same model was 0.025 where the order statistic's was 0.072 (and 0.11 <-> 0.31 on
    the 1,738-film third). ``benchmarks/robustness.py`` compares the rules.
    """
    from scipy.stats.mstats import hdquantiles

    y_pos = np.asarray(y_true).astype(str) == POSITIVE
    pos = np.asarray(y_score, float)[y_pos]
    if pos.size < 2:
        raise ValueError("threshold_for_sensitivity_hd needs at least 2 PNEUMONIA images")
    q = float(np.asarray(hdquantiles(pos, prob=[1.0 - float(target)]))[0])
    return float(np.clip(q, 0.0, 1.0))


def decision_threshold(estimator) -> float:
    """The threshold at which ``estimator.predict`` says PNEUMONIA (its own rule if it has
    one, as PneumoniaCNN and site-calibrated models do; else ``threshold`` or 0.5)."""
    rule = getattr(estimator, "decision_threshold", None)
    return float(rule()) if rule is not None else float(getattr(estimator, "threshold", 0.5))


def sensitivity_bound(pos_scores, t: float, confidence: float) -> float:
    """One-sided lower ``confidence`` bound on the sensitivity on new films at threshold
    ``t`` = the j-th lowest of k PNEUMONIA scores: the coverage is Beta(k + 1 - j, j)."""
    from scipy.stats import beta

    k = int(np.size(pos_scores))
    j = int(np.sum(np.asarray(pos_scores) < t)) + 1
    if j > k:
        return 0.0
    return float(beta.ppf(1 - float(confidence), k + 1 - j, j))


def threshold_with_confidence(y_true, y_score, target: float, confidence: float) -> tuple:
    """The most specific threshold whose sensitivity on *new* films is at least ``target``
    with probability ``confidence`` (over the draw of the calibration films), and that
    probability.

    Of the ``k`` PNEUMONIA scores, the ``j``-th lowest leaves a share of new PNEUMONIA films
    above it that is Beta(k + 1 - j, j) distributed (split conformal prediction,
    training-conditional: Vovk 2012; Angelopoulos & Bates 2021). The largest ``j`` whose
    ``P(share < target) <= 1 - confidence`` is used; when even ``j = 1`` cannot reach the
    confidence (fewer than ``log(1 - confidence) / log(target)`` PNEUMONIA films: 45 for
    0.95 at 0.9), the lowest score is used and the confidence it does reach is returned.
    """
    from scipy.stats import beta

    y_pos = np.asarray(y_true).astype(str) == POSITIVE
    pos = np.sort(np.asarray(y_score, float)[y_pos])
    k = pos.size
    if k == 0:
        raise ValueError("threshold_with_confidence needs PNEUMONIA images")
    j = 1
    for cand in range(k, 0, -1):
        if beta.cdf(target, k + 1 - cand, cand) <= 1 - confidence:
            j = cand
            break
    reached = float(1 - beta.cdf(target, k + 1 - j, j))
    return float(np.clip(pos[j - 1], 0.0, 1.0)), reached


def threshold_youden(labels, scores) -> float:
    """The threshold that maximises sensitivity + specificity (Youden's J) on labelled
    scores (``labels`` 1 = PNEUMONIA), from scikit-learn's ``roc_curve``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def choose_threshold(rule: str, labels, scores, target_sensitivity: float) -> float:
    """The threshold of ``rule`` ("target", "conformal" or "auto", see :data:`RULES`) on a
    validation hold-out's scores, ``labels`` 1 for PNEUMONIA."""
    labels = np.asarray(labels)
    if rule == "target":
        return threshold_for_sensitivity_hd(np.where(labels == 1, POSITIVE, "NORMAL"), scores,
                                            float(target_sensitivity))
    if rule == "conformal":
        return threshold_for_sensitivity(np.where(labels == 1, POSITIVE, "NORMAL"), scores,
                                         float(target_sensitivity))
    if rule == "auto":
        return threshold_youden(labels, scores)
    raise ValueError(f"unknown threshold rule {rule!r}; use one of {RULES}")
