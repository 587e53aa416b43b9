"""Site calibration: set a fitted model's operating point on a new site's labelled images.

A network trained at one hospital ranks films well elsewhere (ROC AUC holds up better than
anything else under shift), but its probabilities and therefore its threshold move. With a
small labelled set from the new site (tens of images) :func:`calibrate`

1. optionally re-maps the probabilities (``method="sigmoid"`` / ``"isotonic"`` /
   ``"temperature"``: scikit-learn's ``CalibratedClassifierCV`` on the frozen network), and
2. sets the decision threshold for a ``target_sensitivity`` (radiology screening fixes
   sensitivity first) with an explicit promise: with probability ``confidence`` over the
   draw of the calibration films, the sensitivity on the site's *next* films is at least
   the target (:func:`threshold_with_confidence`, a training-conditional conformal bound);
   with the site's unlabelled films too (``unlabelled=``), from the site's score
   distributions (:func:`pneumonia_cnn.analysis.estimate_site_mixture` with the labelled
   films as anchors); or a fixed ``threshold`` (scikit-learn's
   ``FixedThresholdClassifier``),

without retraining the network (``FrozenEstimator``). The result is a scikit-learn
classifier, :class:`SiteCalibratedCNN`, that predicts, evaluates, saves and loads like a
``PneumoniaCNN``; its MLflow run is nested under the original fit's run.

How much a small set can promise is reported, not hidden: the confidence the set reaches,
the one-sided lower bound on sensitivity, the calibration set's sensitivity and specificity
with Wilson 95% intervals; a warning says how many PNEUMONIA films the asked promise needs,
and fewer than :data:`MIN_PER_CLASS` images of a class are refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..data import DataError, canonical_labels
from ..estimator import PneumoniaCNN
from ..metrics import (
    NEGATIVE,
    POSITIVE,
    check_probabilities,
    decision_threshold,
    sensitivity_bound,
    threshold_with_confidence,
    wilson_interval,
)
from ..utils import plugin
from ._adaptation import ADAPTATION_FILE, SiteAdaptedCNN, estimate_site_mixture
from ._evaluate import image_arrays, training_overlap
from ._wrappers import NetworkWrapper

__all__ = ["CALIBRATION_FILE", "MIN_PER_CLASS", "SiteCalibratedCNN", "calibrate"]

#: File of a saved model folder that holds the site calibration.
CALIBRATION_FILE = "site_calibration.json"
#: Fewest images of each class a calibration set may have.
MIN_PER_CLASS = 10
METHODS = (None, "sigmoid", "isotonic", "temperature")


class _ScoreAsProba(ClassifierMixin, BaseEstimator):
    """The frozen network's P(PNEUMONIA), given as a one-column X, as a classifier: lets
    scikit-learn's calibrators work in score space (and be rebuilt from saved scores)."""

    def fit(self, X, y=None):
        self.classes_ = np.array([NEGATIVE, POSITIVE])
        return self

    def predict_proba(self, X):
        s = np.clip(np.asarray(X, float)[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - s, s])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


class SiteCalibratedCNN(NetworkWrapper):
    """A fitted PneumoniaCNN with a site-specific operating point (and probability map).

    Parameters
    ----------
    estimator : fitted PneumoniaCNN
        The network; never retrained (it is wrapped in ``FrozenEstimator``).
    target_sensitivity : float, default=0.95
        Choose the most specific threshold that keeps this sensitivity on new films of the
        site (split-conformal rule; ignored when ``threshold`` is given).
    threshold : float or None, default=None
        A fixed decision threshold instead (on the calibrated probability).
    method : {None, "sigmoid", "isotonic", "temperature"}, default=None
        Re-map the probabilities with scikit-learn's ``CalibratedClassifierCV``; None keeps
        the network's.
    confidence : float, default=0.9
        The promise: with this probability (over the draw of the calibration films) the
        sensitivity on the site's next films is at least ``target_sensitivity``. With
        labelled films only, the threshold is the ``j``-th lowest PNEUMONIA score with the
        largest ``j`` for which the coverage's Beta(k + 1 - j, j) distribution keeps the
        target at this confidence (a training-conditional conformal bound); too few
        PNEUMONIA films cannot, and say so. With the site's unlabelled films too
        (``fit(..., unlabelled=)``), the threshold is the lower ``1 - confidence`` bootstrap
        quantile of the semi-supervised mixture's threshold
        (:func:`pneumonia_cnn.analysis.estimate_site_mixture`).

    Attributes
    ----------
    threshold_ : float
        The decision threshold in use.
    calibrator_ : sklearn classifier
        Score-space map (``CalibratedClassifierCV`` over the frozen scores, or the identity).
    classifier_ : sklearn.model_selection.FixedThresholdClassifier
        ``calibrator_`` with ``threshold_``.
    calibration_ : dict
        What the calibration set says: counts, sensitivity and specificity at ``threshold_``
        with Wilson 95% intervals, the target, the rule used and ``promise_confidence``: the
        probability that the sensitivity on the next films is at least the target.
    scores_, labels_ : ndarray
        The calibration set's network scores and labels (saved, so that the calibrator is
        rebuilt exactly on load; no pixels are kept).
    """

    def __init__(self, estimator, *, target_sensitivity=0.95, threshold=None, method=None,
                 confidence=0.9):
        self.estimator = estimator
        self.target_sensitivity = target_sensitivity
        self.threshold = threshold
        self.method = method
        self.confidence = confidence

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y=None, *, unlabelled=None):
        """Calibrate on labelled images of the new site (a data folder, or images and y);
        ``unlabelled``: more films of the site without labels (a folder, files or an
        array), used to estimate the site's score distributions."""
        self._check_params()
        X, y, _, _ = image_arrays(self.estimator, X, y)
        overlap = training_overlap(self.estimator, X)
        if overlap:
            warnings.warn(f"{overlap} of the {len(X)} calibration images are identical to "
                          "training images of this model: their scores are optimistic, and "
                          "so is the operating point set on them; calibrate on films the "
                          "model never saw", UserWarning, stacklevel=2)
        counts = {c: int((y == c).sum()) for c in (NEGATIVE, POSITIVE)}
        small = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
        if small:
            raise DataError(
                f"the calibration set is too small: {counts} images; calibrating an operating "
                f"point needs at least {MIN_PER_CLASS} images of each class (better 20+ of "
                f"each): add labelled {' and '.join(small)} images of the new site")
        col = list(map(str, self.estimator.classes_)).index(POSITIVE)
        scores = np.asarray(self.estimator.predict_proba(X))[:, col]
        site = None
        if unlabelled is not None:
            if getattr(self.estimator, "validation_scores_", None) is None:
                raise ValueError("calibrating with unlabelled films needs the model's "
                                 "validation hold-out scores, which this model did not keep "
                                 "(saved by an older version or trained without a hold-out): "
                                 "retrain it, or calibrate on labelled films only")
            images = image_arrays(self.estimator, unlabelled, None)[0] if not isinstance(
                unlabelled, np.ndarray) else unlabelled
            overlap = training_overlap(self.estimator, images)
            if overlap:  # as adapt warns: the model's own films make the site look easy
                warnings.warn(f"{overlap} of the {len(images)} unlabelled site films are "
                              "identical to training films of this model: their scores are "
                              "optimistic, and so is the calibrated operating point; use "
                              "films the model never saw", UserWarning, stacklevel=2)
            site = np.asarray(self.estimator.predict_proba(images))[:, col]
        return self.fit_scores(scores, y, unlabelled_scores=site)

    def _check_params(self):
        if isinstance(self.estimator, SiteCalibratedCNN):
            raise ValueError(
                "this model is already site-calibrated: calibrate its network instead "
                "(calibrate(model.estimator, ...), or the model folder it was calibrated "
                "from); a calibration of a calibration would be lost when saved")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.threshold is None:
            t = self.target_sensitivity
            if not isinstance(t, (int, float)) or not 0 < t <= 1:
                raise ValueError(f"target_sensitivity must be in (0, 1], got {t!r}")
        elif not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
            raise ValueError(f"confidence must be in (0, 1), got {c!r}")

    def fit_scores(self, scores, y, warn: bool = True, unlabelled_scores=None,
                    saved_threshold=None):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator
        from sklearn.model_selection import FixedThresholdClassifier

        self.scores_ = np.asarray(scores, float)
        self.labels_ = canonical_labels(y)
        self.unlabelled_scores_ = (None if unlabelled_scores is None
                                   else np.asarray(unlabelled_scores, float))
        S = self.scores_[:, None]
        frozen = FrozenEstimator(_ScoreAsProba().fit(S, self.labels_))
        if self.method is None:
            self.calibrator_ = frozen
        else:
            self.calibrator_ = CalibratedClassifierCV(frozen, method=self.method).fit(
                S, self.labels_)
        p = self.calibrator_.predict_proba(S)[:, 1]
        y_pos = self.labels_ == POSITIVE
        rule, confidence = "fixed", None
        if self.threshold is not None:
            t = float(self.threshold)
            if not 0.0 <= t <= 1.0:  # NaN included (a damaged file)
                raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        elif saved_threshold is not None:  # on load: the bootstrap is not redone
            t, rule = float(saved_threshold), ("mixture" if self.unlabelled_scores_ is not None
                                               else "conformal")
        elif self.unlabelled_scores_ is not None:
            raw = self._mixture_threshold()
            t = float(self.calibrator_.predict_proba(np.array([[raw]]))[0, 1])
            rule, confidence = "mixture", float(self.confidence)
        else:  # the most specific threshold that keeps the target at the asked confidence
            t, confidence = threshold_with_confidence(self.labels_, p, self.target_sensitivity,
                                                      self.confidence)
            rule = "conformal"
        self.threshold_ = t
        self.classifier_ = FixedThresholdClassifier(
            FrozenEstimator(self.calibrator_), threshold=t, pos_label=POSITIVE,
            response_method="predict_proba").fit(S, self.labels_)
        self.classes_ = np.array([NEGATIVE, POSITIVE])
        pred = p >= t
        tp, n_pos = int(pred[y_pos].sum()), int(y_pos.sum())
        tn, n_neg = int((~pred[~y_pos]).sum()), int((~y_pos).sum())
        sens_ci, spec_ci = wilson_interval(tp, n_pos), wilson_interval(tn, n_neg)
        self.calibration_ = {
            "n_NORMAL": n_neg, "n_PNEUMONIA": n_pos, "method": self.method,
            "threshold": t, "target_sensitivity": None if self.threshold is not None
            else float(self.target_sensitivity),
            "sensitivity": tp / n_pos, "sensitivity_ci95": sens_ci,
            "specificity": tn / n_neg, "specificity_ci95": spec_ci,
            "base_threshold": decision_threshold(self.estimator),
            "rule": rule, "confidence": None if self.threshold is not None
            else float(self.confidence), "promise_confidence": confidence,
            "sensitivity_lower_bound": sensitivity_bound(p[y_pos], t, self.confidence)
            if rule == "conformal" else None,
            "n_unlabelled": (0 if self.unlabelled_scores_ is None
                             else int(self.unlabelled_scores_.size)),
        }
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y_pos, self.scores_))
        self.calibration_["roc_auc"] = auc
        if warn and auc < 0.5:
            warnings.warn(
                f"on these images the network ranks NORMAL films above PNEUMONIA ones (ROC "
                f"AUC {auc:.3f} < 0.5): it does not tell the classes apart at this site, and "
                "no threshold or probability re-map can fix that"
                + (f" (the {self.method} re-map inverts its scores)" if self.method else "")
                + ". Check the labels, then do not use this model here", UserWarning,
                stacklevel=2)
        every = np.r_[p, [] if self.unlabelled_scores_ is None else
                      self.calibrator_.predict_proba(self.unlabelled_scores_[:, None])[:, 1]]
        if warn and rule != "fixed" and np.all(every >= t):
            # site issue, finding 16: --target-sensitivity 1 --unlabelled gave 1.6e-28 silently
            warnings.warn(
                f"the threshold {t:.3g} calls every film of the site PNEUMONIA (specificity "
                f"0): that is the only way the asked sensitivity "
                f"{float(self.target_sensitivity):g} can be kept on these films. Lower "
                "--target-sensitivity (e.g. 0.95)", UserWarning, stacklevel=2)
        target = self.calibration_["target_sensitivity"]
        if warn and rule == "conformal" and confidence < float(self.confidence):
            needed = ("no number of" if target >= 1 else
                      f"at least {int(np.ceil(np.log(1 - float(self.confidence)) / np.log(target)))}")
            warnings.warn(
                f"with {n_pos} PNEUMONIA images the calibration can promise sensitivity >= "
                f"{target:g} on the site's next films only with confidence {confidence:.2f}, "
                f"not {float(self.confidence):g} (it measured {tp}/{n_pos} = "
                f"{tp / n_pos:.3f} here). Use {needed} labelled PNEUMONIA images, or "
                "add the site's unlabelled films (--unlabelled DIR)", UserWarning,
                stacklevel=2)
        return self

    def _mixture_threshold(self, n_bootstrap: int = 200) -> float:
        """The semi-supervised mixture's threshold (network score), lowered to its
        ``1 - confidence`` bootstrap quantile (labelled and unlabelled films resampled
        separately)."""
        v = np.asarray(self.estimator.validation_scores_, float)
        lab = np.asarray(self.estimator.validation_labels_, int)
        known = (self.labels_ == POSITIVE).astype(int)
        s_l, s_u = self.scores_, self.unlabelled_scores_
        rng = np.random.default_rng(0)
        ts = []
        for _ in range(n_bootstrap):
            il, iu = rng.integers(s_l.size, size=s_l.size), rng.integers(s_u.size, size=s_u.size)
            fit = estimate_site_mixture(np.r_[s_l[il], s_u[iu]], v, lab,
                                        target_sensitivity=self.target_sensitivity,
                                        site_labels=np.r_[known[il], np.full(s_u.size, -1)],
                                        max_iter=60)
            ts.append(fit["threshold"])
        return float(np.quantile(ts, 1 - float(self.confidence)))

    # -- prediction ---------------------------------------------------------------------------
    def _scores(self, X):
        col = list(map(str, self.estimator.classes_)).index(POSITIVE)
        return np.asarray(self.estimator.predict_proba(X))[:, col][:, None]

    def predict_proba(self, X):
        """Calibrated ``[P(NORMAL), P(PNEUMONIA)]`` (the network's when ``method`` is None)."""
        check_is_fitted(self, "classifier_")
        return self.calibrator_.predict_proba(self._scores(X))

    def predict(self, X):
        """PNEUMONIA when the calibrated probability is >= ``threshold_``."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict(self._scores(X))

    # -- saving -------------------------------------------------------------------------------
    def write_files(self, path: Path) -> None:
        """The network's files plus ``site_calibration.json`` (see ``save``)."""
        self.estimator.write_files(path)
        info = {"method": self.method, "threshold": self.threshold,
                "target_sensitivity": self.target_sensitivity, "confidence": self.confidence,
                "unlabelled_scores": (None if self.unlabelled_scores_ is None
                                      else self.unlabelled_scores_.tolist()),
                "threshold_": self.threshold_, "calibration": self.calibration_,
                "scores": self.scores_.tolist(), "labels": self.labels_.tolist(),
                "mlflow_run_id": getattr(self, "mlflow_run_id_", None),
                "mlflow_model_id": getattr(self, "mlflow_model_id_", None)}
        (Path(path) / CALIBRATION_FILE).write_text(json.dumps(info, indent=1))

    @classmethod
    def load(cls, path) -> "SiteCalibratedCNN":
        """Load a folder written by :meth:`save` (the calibrator is rebuilt from the saved
        calibration scores: the same map and threshold)."""
        path = Path(path)
        # an adapted model may be calibrated too: its adaptation is loaded under it
        base = (SiteAdaptedCNN.load(path) if (path / ADAPTATION_FILE).is_file()
                else PneumoniaCNN.load(path, network_only=True))
        try:
            info = json.loads((path / CALIBRATION_FILE).read_text())
            est = cls(base, target_sensitivity=info["target_sensitivity"],
                      threshold=info["threshold"], method=info["method"],
                      confidence=info.get("confidence", 0.5))
            unl = info.get("unlabelled_scores")
            if len(info["scores"]) != len(info["labels"]):
                raise ValueError(f"{len(info['scores'])} scores for {len(info['labels'])} "
                                 "labels")
            check_probabilities(info["scores"], "scores")
            if unl is not None:
                check_probabilities(unl, "unlabelled_scores")
            saved = float(info["threshold_"])
            if not 0.0 <= saved <= 1.0:  # NaN included
                raise ValueError(f"threshold_ {saved!r} is not in [0, 1]")
            est.fit_scores(np.asarray(info["scores"], float), np.asarray(info["labels"]),
                            warn=False, unlabelled_scores=unl,
                            # a file of an older version (no confidence) used the
                            # expected-coverage rule: its threshold is kept. Every other
                            # threshold, the mixture's included (its bootstrap is seeded),
                            # is rebuilt and compared below (site issue, finding 4)
                            saved_threshold=saved if "confidence" not in info else None)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path / CALIBRATION_FILE} is damaged ({exc}): calibrate the "
                            "model again with `pneumonia-cnn calibrate`") from exc
        if not np.isclose(est.threshold_, float(info["threshold_"]), rtol=1e-6, atol=1e-9):
            raise DataError(f"{path / CALIBRATION_FILE}: its threshold "
                            f"{float(info['threshold_']):.6g} is not the one its saved scores "
                            f"give ({est.threshold_:.6g}): the file was edited, or belongs to "
                            "another network; calibrate the model again")
        est.mlflow_run_id_ = info.get("mlflow_run_id")
        est.mlflow_model_id_ = info.get("mlflow_model_id")
        return est


def calibrate(estimator, X, y=None, *, target_sensitivity: float = 0.95,
              threshold: float | None = None, method: str | None = None,
              confidence: float = 0.9, unlabelled=None,
              track: bool | None = None, data_name: str | None = None) -> SiteCalibratedCNN:
    """Set a fitted model's operating point on a new site's labelled images.

    Parameters
    ----------
    estimator : fitted PneumoniaCNN
    X : str, path-like, ImageData or array
        The site's labelled images (a data folder with NORMAL/ and PNEUMONIA/, or images with
        ``y``); at least :data:`MIN_PER_CLASS` of each class.
    y : array-like, default=None
    target_sensitivity : float, default=0.95
        The threshold keeps this sensitivity on the site's next films (split-conformal
        rule, see :func:`pneumonia_cnn.metrics.threshold_for_sensitivity`).
    threshold : float, default=None
        A fixed threshold instead.
    method : {None, "sigmoid", "isotonic", "temperature"}, default=None
        Also calibrate the probabilities (scikit-learn's ``CalibratedClassifierCV``).
    confidence : float, default=0.9
        Probability that the promised sensitivity holds on the site's next films (see
        :class:`SiteCalibratedCNN`).
    unlabelled : str, path-like, ImageData or array, default=None
        More films of the site, without labels: the threshold then comes from the site's
        score distributions (labelled films anchor them), not from the labelled PNEUMONIA
        films' lowest scores alone.
    track : bool, default=None
        Log a calibration run nested under the model's fit run (None: the model's
        ``tracking`` setting).
    data_name : str, default=None
        Name of the calibration data for the run.

    Returns
    -------
    SiteCalibratedCNN
    """
    model = SiteCalibratedCNN(estimator, target_sensitivity=target_sensitivity,
                              threshold=threshold, method=method, confidence=confidence)
    name = data_name or (str(X) if isinstance(X, (str, Path)) else getattr(X, "root", None))
    model.fit(X, y, unlabelled=unlabelled)
    model.mlflow_run_id_ = model.mlflow_model_id_ = None
    if track is None:
        track = bool(getattr(estimator, "tracking", False))
    if track:
        Xa, ya, _, groups = image_arrays(estimator, X, y)
        model.mlflow_run_id_ = plugin("calibration_run")(model, name, Xa, ya, groups)
    return model
