"""Site calibration: set a fitted model's operating point on a new site's labelled images.

A network trained at one hospital ranks films well elsewhere (ROC AUC holds up better than
anything else under shift), but its probabilities and therefore its threshold move. With a
small labelled set from the new site (tens of images) :func:`calibrate`

1. optionally re-maps the probabilities (``method="sigmoid"`` / ``"isotonic"`` /
   ``"temperature"``: scikit-learn's ``CalibratedClassifierCV`` on the frozen network), and
2. sets the decision threshold for a ``target_sensitivity`` (radiology screening fixes
   sensitivity first) by the split-conformal rule of
   :func:`pneumonia_cnn.evaluation.threshold_for_sensitivity` (the most specific threshold
   that keeps the target on the site's *next* films, not just on the calibration set), or a
   fixed ``threshold`` (scikit-learn's ``FixedThresholdClassifier``),

without retraining the network (``FrozenEstimator``). The result is a scikit-learn
classifier, :class:`SiteCalibratedCNN`, that predicts, evaluates, saves and loads like a
``PneumoniaCNN``; its MLflow run is nested under the original fit's run.

How much a small set can promise is reported, not hidden: the calibration set's sensitivity
comes with its Wilson score 95% interval, a warning says when the interval's
lower end is below the target, and fewer than :data:`MIN_PER_CLASS` images of a class are
refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .data import DataError, canonical_labels
from .evaluation import (
    NEGATIVE,
    POSITIVE,
    decision_threshold,
    image_arrays,
    threshold_for_sensitivity,
    wilson_interval,
)

__all__ = ["CALIBRATION_FILE", "MIN_PER_CLASS", "SiteCalibratedCNN", "calibrate", "load_model"]

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


class SiteCalibratedCNN(ClassifierMixin, BaseEstimator):
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
        with Wilson 95% intervals, the target and whether it is guaranteed.
    scores_, labels_ : ndarray
        The calibration set's network scores and labels (saved, so that the calibrator is
        rebuilt exactly on load; no pixels are kept).
    """

    def __init__(self, estimator, *, target_sensitivity=0.95, threshold=None, method=None):
        self.estimator = estimator
        self.target_sensitivity = target_sensitivity
        self.threshold = threshold
        self.method = method

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Calibrate on labelled images of the new site (a data folder, or images and y)."""
        self._check_params()
        X, y, _, _ = image_arrays(self.estimator, X, y)
        counts = {c: int((y == c).sum()) for c in (NEGATIVE, POSITIVE)}
        small = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
        if small:
            raise DataError(
                f"the calibration set is too small: {counts} images; calibrating an operating "
                f"point needs at least {MIN_PER_CLASS} images of each class (better 20+ of "
                f"each): add labelled {' and '.join(small)} images of the new site")
        col = list(map(str, self.estimator.classes_)).index(POSITIVE)
        scores = np.asarray(self.estimator.predict_proba(X))[:, col]
        return self._fit_scores(scores, y)

    def _check_params(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.threshold is None:
            t = self.target_sensitivity
            if not isinstance(t, (int, float)) or not 0 < t <= 1:
                raise ValueError(f"target_sensitivity must be in (0, 1], got {t!r}")
        elif not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")

    def _fit_scores(self, scores, y, warn: bool = True):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator
        from sklearn.model_selection import FixedThresholdClassifier

        self.scores_ = np.asarray(scores, float)
        self.labels_ = canonical_labels(y)
        S = self.scores_[:, None]
        frozen = FrozenEstimator(_ScoreAsProba().fit(S, self.labels_))
        if self.method is None:
            self.calibrator_ = frozen
        else:
            self.calibrator_ = CalibratedClassifierCV(frozen, method=self.method).fit(
                S, self.labels_)
        p = self.calibrator_.predict_proba(S)[:, 1]
        y_pos = self.labels_ == POSITIVE
        if self.threshold is not None:
            t = float(self.threshold)
        else:  # the most specific threshold that keeps the target on the next films
            t = threshold_for_sensitivity(self.labels_, p, self.target_sensitivity)
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
        target = self.calibration_["target_sensitivity"]
        if warn and target is not None and sens_ci[0] < target:
            warnings.warn(
                f"with {n_pos} PNEUMONIA images the calibration set cannot promise sensitivity "
                f"{target:g}: it measured {tp}/{n_pos} = {tp / n_pos:.3f}, 95% interval "
                f"{sens_ci[0]:.3f}-{sens_ci[1]:.3f}. Use more labelled PNEUMONIA images of the "
                "site: even when every one is found, it takes 73 for the interval to reach "
                "0.95", UserWarning, stacklevel=2)
        return self

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

    def _decision_threshold(self) -> float:
        return float(self.threshold_)

    # What evaluate / the CLI read from a model, taken from the network.
    @property
    def image_size(self):
        return self.estimator.image_size

    @property
    def tracking(self):
        return getattr(self.estimator, "tracking", False)

    @property
    def tracking_uri(self):
        return getattr(self.estimator, "tracking_uri", None)

    @property
    def experiment(self):
        return getattr(self.estimator, "experiment", "pneumonia-cnn")

    @property
    def history_(self):
        return getattr(self.estimator, "history_", None)

    # -- saving -------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save as a model folder: the network's files plus ``site_calibration.json``."""
        check_is_fitted(self, "classifier_")
        path = self.estimator.save(path)
        info = {"method": self.method, "threshold": self.threshold,
                "target_sensitivity": self.target_sensitivity,
                "threshold_": self.threshold_, "calibration": self.calibration_,
                "scores": self.scores_.tolist(), "labels": self.labels_.tolist(),
                "mlflow_run_id": getattr(self, "mlflow_run_id_", None),
                "mlflow_model_id": getattr(self, "mlflow_model_id_", None)}
        (Path(path) / CALIBRATION_FILE).write_text(json.dumps(info, indent=1))
        return Path(path)

    @classmethod
    def load(cls, path) -> "SiteCalibratedCNN":
        """Load a folder written by :meth:`save` (the calibrator is rebuilt from the saved
        calibration scores: the same map and threshold)."""
        from .adaptation import ADAPTATION_FILE, SiteAdaptedCNN
        from .estimator import PneumoniaCNN

        path = Path(path)
        # an adapted model may be calibrated too: its adaptation is loaded under it
        base = (SiteAdaptedCNN.load(path) if (path / ADAPTATION_FILE).is_file()
                else PneumoniaCNN.load(path))
        try:
            info = json.loads((path / CALIBRATION_FILE).read_text())
            est = cls(base, target_sensitivity=info["target_sensitivity"],
                      threshold=info["threshold"], method=info["method"])
            est._fit_scores(np.asarray(info["scores"], float), np.asarray(info["labels"]),
                            warn=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path / CALIBRATION_FILE} is damaged ({exc}): calibrate the "
                            "model again with `pneumonia-cnn calibrate`") from exc
        if abs(est.threshold_ - float(info["threshold_"])) > 1e-9:
            raise DataError(f"{path / CALIBRATION_FILE}: the rebuilt threshold differs from "
                            "the saved one; calibrate the model again")
        est.mlflow_run_id_ = info.get("mlflow_run_id")
        est.mlflow_model_id_ = info.get("mlflow_model_id")
        return est


def calibrate(estimator, X, y=None, *, target_sensitivity: float = 0.95,
              threshold: float | None = None, method: str | None = None,
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
        rule, see :func:`pneumonia_cnn.evaluation.threshold_for_sensitivity`).
    threshold : float, default=None
        A fixed threshold instead.
    method : {None, "sigmoid", "isotonic", "temperature"}, default=None
        Also calibrate the probabilities (scikit-learn's ``CalibratedClassifierCV``).
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
                              threshold=threshold, method=method)
    name = data_name or (str(X) if isinstance(X, (str, Path)) else getattr(X, "root", None))
    model.fit(X, y)
    model.mlflow_run_id_ = model.mlflow_model_id_ = None
    if track is None:
        track = bool(getattr(estimator, "tracking", False))
    if track:
        from .evaluation import image_arrays

        Xa, ya, _, groups = image_arrays(estimator, X, y)
        model.mlflow_run_id_ = _log_calibration_run(model, name, Xa, ya, groups)
    return model


def _log_calibration_run(model: SiteCalibratedCNN, source, X, y, groups) -> str:
    from . import serving
    from .tracking import TrackedRun, data_label, image_dataset, model_name

    parent = getattr(model.estimator, "mlflow_run_id_", None)
    data = data_label(source)
    run = TrackedRun.start(tracking_uri=model.tracking_uri, experiment=model.experiment,
                           run_name=f"calibrate {data}", parent_run_id=parent,
                           tags={"kind": "calibration", "eval_on": data,
                                 **({"model_run_id": parent} if parent else {})})
    try:
        c = model.calibration_
        run.log_params({"data": data, "method": str(model.method),
                        "target_sensitivity": str(c["target_sensitivity"])})
        model.mlflow_run_id_ = run.run_id
        model.mlflow_model_id_ = serving.log_model(run, model, model_name(f"calibrated {data}"))
        dataset = image_dataset(data, X, y, source, groups)
        run.log_dataset(dataset, "calibration", model_id=model.mlflow_model_id_)
        run.log_headline({"sensitivity": c["sensitivity"], "specificity": c["specificity"],
                          "ci95": {"sensitivity": c["sensitivity_ci95"],
                                   "specificity": c["specificity_ci95"]},
                          "n_images": c["n_NORMAL"] + c["n_PNEUMONIA"],
                          "threshold": c["threshold"]},
                         model_id=model.mlflow_model_id_, dataset=dataset)
        run.log_dict(c, "calibration/calibration.json")
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    return run.run_id


def load_model(path, tracking_uri: str | None = None):
    """Load a saved model folder or an MLflow model URI (``models:/NAME@ALIAS``,
    ``runs:/RUN_ID/NAME``...): a :class:`SiteCalibratedCNN` when it holds a site
    calibration, a :class:`~pneumonia_cnn.adaptation.SiteAdaptedCNN` when it holds a site
    adaptation, else a ``PneumoniaCNN``."""
    from .adaptation import ADAPTATION_FILE, SiteAdaptedCNN
    from .estimator import PneumoniaCNN
    from .registry import model_folder

    with model_folder(path, tracking_uri) as (folder, info):
        if (folder / CALIBRATION_FILE).is_file():
            model = SiteCalibratedCNN.load(folder)
        elif (folder / ADAPTATION_FILE).is_file():
            model = SiteAdaptedCNN.load(folder)
        else:
            model = PneumoniaCNN.load(folder)
    if info.get("model_id"):
        model.mlflow_model_id_ = info["model_id"]
    return model
