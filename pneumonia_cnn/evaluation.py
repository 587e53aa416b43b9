"""Evaluation: metrics (scikit-learn) and pictures (matplotlib / seaborn)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
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

from .data import CLASS_NAMES, display_path
from .plots import (  # noqa: F401  (re-exported: evaluation's figures and report)
    evaluation_figures,
    plot_confusion_matrix,
    plot_history,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    public_metrics,
    report_text,
)

__all__ = [
    "FIGURE_FILES",
    "decision_threshold",
    "image_arrays",
    "evaluate",
    "metrics_from_scores",
    "plot_confusion_matrix",
    "plot_history",
    "plot_precision_recall",
    "plot_reliability",
    "plot_roc",
    "save_evaluation",
    "confidence_intervals",
    "threshold_for_sensitivity",
    "wilson_interval",
]

NEGATIVE, POSITIVE = CLASS_NAMES  # "NORMAL", "PNEUMONIA"

#: File names written by :func:`save_evaluation`.
FIGURE_FILES = {
    "confusion_matrix": "confusion_matrix.png",
    "roc_curve": "roc_curve.png",
    "precision_recall_curve": "precision_recall_curve.png",
    "history": "training_history.png",
    "reliability_diagram": "reliability_diagram.png",
    "error_gallery": "error_gallery.png",
}


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


def evaluate(estimator, X, y=None, *, out_dir=None, threshold: float | None = None,
             track: bool | None = None, data_name: str | None = None,
             gallery: bool = True) -> dict:
    """Evaluate a fitted classifier on a data folder, image files or arrays.

    Parameters
    ----------
    estimator : PneumoniaCNN (or any fitted classifier with predict_proba and classes_)
    X : str, path-like, sequence of paths, or array
        A data folder (labels from its class sub-folders) or images.
    y : array-like of str, default=None
        Labels, required unless X is a folder.
    out_dir : str or path-like, default=None
        If given, write the figures (confusion matrix, ROC, precision-recall, reliability,
        training history when the estimator has one, error gallery), ``metrics.json``,
        ``per_image.csv`` and ``classification_report.txt`` there.
    threshold : float, default=None
        Decision threshold; defaults to the one the estimator's ``predict`` uses.
    track : bool, default=None
        Log the metrics, plots and classification report to MLflow, in a new evaluation run
        that is a child of the model's fit run (``estimator.mlflow_run_id_``) when there is
        one. None follows the estimator's ``tracking`` parameter.
    data_name : str, default=None
        Name of the evaluated data, logged with the run (default: the folder).
    gallery : bool, default=True
        Draw the error gallery: the most confident false positives and false negatives
        (and a few correct films for contrast) with their heat maps (needs a network the
        package built).

    Returns
    -------
    dict
        See :func:`metrics_from_scores`; plus ``ci95`` (95% confidence intervals, see
        :func:`confidence_intervals`), ``data``, ``synthetic`` (True for the built-in
        synthetic demo set), ``trust_warnings`` (why the numbers may not hold: a tiny set,
        overlap with the training images, one class for every image), ``per_image`` (a
        pandas DataFrame: ``path``, ``true``, ``probability``, ``predicted``) and
        ``figures`` (name -> file) when ``out_dir`` is given.
    """
    import pandas as pd

    from .synthetic import is_synthetic

    if isinstance(X, (str, Path)) and y is None:  # a data source: its evaluation split
        X = _load_source(estimator, X)
    X_name = X if isinstance(X, (str, Path)) else getattr(X, "root", None)
    synthetic = is_synthetic(X_name)
    X, y, paths, groups = image_arrays(estimator, X, y)
    classes = [str(c) for c in estimator.classes_]
    scores = np.asarray(estimator.predict_proba(X))[:, classes.index(POSITIVE)]
    if threshold is None:
        threshold = decision_threshold(estimator)
    result = metrics_from_scores(y, scores, threshold)
    result["ci95"] = confidence_intervals(y, scores, threshold, groups=groups)
    result["data"] = data_name or (str(X_name) if X_name else "(arrays)")
    result["synthetic"] = synthetic
    predicted = np.where(scores >= threshold, POSITIVE, NEGATIVE)
    result["per_image"] = pd.DataFrame({
        "path": ([display_path(p) for p in paths] if paths is not None
                 else np.arange(len(y)).astype(str)),
        "true": np.asarray(y).astype(str), "probability": scores, "predicted": predicted})
    result["trust_warnings"] = trust_warnings(estimator, X, result)
    for message in result["trust_warnings"]:
        warnings.warn(message, UserWarning, stacklevel=2)
    extra = {}
    if gallery and hasattr(getattr(estimator, "estimator", estimator), "model_"):
        from .explain import error_gallery

        fig = error_gallery(estimator, X, result["per_image"], threshold)
        if fig is not None:
            extra["error_gallery"] = fig
    net = getattr(estimator, "estimator", estimator)
    try:
        if out_dir is not None:
            save_evaluation(result, out_dir, history=getattr(net, "history_", None),
                            extra_figures=extra, best_epoch=getattr(net, "best_epoch_", None))
        if track is None:
            track = bool(getattr(estimator, "tracking", False))
        if track:
            result["mlflow_run_id"] = _log_evaluation_run(estimator, result, X_name, X, y,
                                                          groups, extra)
    finally:
        for fig in extra.values():
            plt.close(fig)
    return result


def trust_warnings(estimator, X, result: dict) -> list:
    """Reasons not to trust an evaluation's numbers, as sentences (empty when none)."""
    out = []
    n = result["n_images"]
    if n < 100:
        lo, hi = result["ci95"]["accuracy"]
        out.append(f"only {n} images: accuracy {result['accuracy']:.3f} has a 95% interval of "
                   f"{lo:.3f}-{hi:.3f}; evaluate on more images before trusting the numbers")
    present = set(np.asarray(result["per_image"]["true"]).astype(str)) if (
        "true" in result["per_image"]) else {NEGATIVE, POSITIVE}
    for cls, undefined in ((POSITIVE, "sensitivity, precision and F1"),
                           (NEGATIVE, "specificity")):
        if cls not in present:
            out.append(f"no {cls} images: {undefined} and the ROC AUC are undefined (null), "
                       "not 0; evaluate on images of both classes")
    counts = result["per_image"]["predicted"].value_counts()
    if len(counts) == 1:
        out.append(f"the model calls every image {counts.index[0]}: check the threshold "
                   f"({result['threshold']:.3f}) and that these images are chest X-rays like "
                   "the training ones")
    overlap = training_overlap(estimator, X)
    if overlap:
        out.append(f"{overlap} of the {n} evaluation images are identical to training "
                   "images of this model: these numbers are optimistic; evaluate on "
                   "images (and patients) the model never saw")
    return out


def training_overlap(estimator, X) -> int:
    """How many images of ``X`` are pixel-identical to the model's training images (0 when
    the model kept no fingerprints)."""
    from .data import image_fingerprints

    net = getattr(estimator, "estimator", estimator)
    seen = set(getattr(net, "train_fingerprints_", None) or [])
    return int(sum(f in seen for f in image_fingerprints(X))) if seen else 0


def _load_source(estimator, source):
    """A labelled data source at the estimator's input size (of a source with splits, its
    ``test`` split)."""
    from .sources import load_data

    return load_data(source, getattr(estimator, "image_size", 96), role="evaluate", verbose=0)


def _at_model_size(estimator, data):
    """``data`` at the model's input size. Images decoded at another size are decoded again
    from their files (resizing the decoded pixels gives other pixels: other scores, and the
    training-overlap check would not recognise them); without files, a warning says so."""
    import os

    from .data import ImageData, load_images

    size = int(getattr(estimator, "image_size", 0) or 0)
    if not size or len(data) == 0 or tuple(data.X.shape[1:3]) == (size, size):
        return data
    if all(os.path.isfile(str(p)) for p in data.paths):
        again = load_images(list(map(str, data.paths)), size, strict=True)
        return ImageData(X=again.X, y=data.y, paths=data.paths, groups=data.groups,
                         skipped=data.skipped, root=data.root)
    warnings.warn(f"these images were decoded at {data.X.shape[1]} x {data.X.shape[2]} px and "
                  f"the model takes {size} x {size}: they are resized in memory, which gives "
                  "other pixels than decoding at the model's size (other scores, and the "
                  "check for training images cannot recognise them); load the data at "
                  f"image_size={size}", UserWarning, stacklevel=3)
    return data


def image_arrays(estimator, X, y=None):
    """Labelled images as arrays at the estimator's input size: ``(X, y, paths, groups)``.

    ``X`` is a data source (a folder, a split root -- its ``test`` split --, a MedMNIST
    ``.npz``, a label CSV; see :func:`pneumonia_cnn.sources.load_data`), an
    :class:`ImageData`, or an image array with labels ``y``; ``paths`` and ``groups``
    (patient ids) are None for arrays.
    """
    from .data import ImageData

    paths = groups = None
    if isinstance(X, (str, Path)) and y is None:
        X = _load_source(estimator, X)
    if isinstance(X, ImageData):
        X = _at_model_size(estimator, X)
        paths, groups, y, X = X.paths, X.groups, X.y, X.X
    if y is None:
        raise ValueError("y is required unless X is a data folder")
    classes = [str(c) for c in estimator.classes_]
    if POSITIVE not in classes:
        raise ValueError(f"the estimator's classes {classes} do not include {POSITIVE}")
    from .data import canonical_labels

    return X, canonical_labels(y), paths, groups


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
    rule = getattr(estimator, "_decision_threshold", None)
    return float(rule()) if rule is not None else float(getattr(estimator, "threshold", 0.5))


def _log_evaluation_run(estimator, result: dict, source, X, y, groups,
                        extra_figures: dict | None = None) -> str:
    """One run per evaluation, nested under the model's run, named ``eval <data> · <model
    run>``; its headline metrics are linked to the model and the evaluation dataset."""
    from .tracking import DEFAULT_EXPERIMENT, TrackedRun, data_label, image_dataset

    parent = getattr(estimator, "mlflow_run_id_", None)
    model_id = getattr(estimator, "mlflow_model_id_", None)
    data = result["data"] if source is None else data_label(source)
    tracking_uri = getattr(estimator, "tracking_uri", None)
    name = f"eval {data}"
    if parent:
        try:
            from .tracking import get_client

            model_run = get_client(tracking_uri).get_run(parent).info.run_name or ""
            name += f" · {model_run.removeprefix('SYNTHETIC-')}"
        except Exception:  # the model's run lives in another store: evaluate anyway
            parent = None
    synthetic = result.get("synthetic")
    run = TrackedRun.start(tracking_uri=tracking_uri,
                           experiment=getattr(estimator, "experiment", DEFAULT_EXPERIMENT),
                           run_name=("SYNTHETIC-" if synthetic else "") + name,
                           parent_run_id=parent,
                           tags={"kind": "evaluation", "eval_on": data,
                                 **({"synthetic_data": "true"} if synthetic else {}),
                                 **({"model_run_id": parent} if parent else {})})
    try:
        run.log_params({"data": data})
        dataset = image_dataset(data, X, y, source, groups)
        if model_id:
            try:
                run.log_dataset(dataset, "evaluation", model_id=model_id)
            except Exception:  # the model lives in another store: do not link to it
                model_id = None
        if not model_id:
            run.log_dataset(dataset, "evaluation")
        run.log_evaluation(result, extra_figures=extra_figures, model_id=model_id,
                           dataset=dataset)
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    return run.run_id


def save_evaluation(result: dict, out_dir, history: dict | None = None,
                    extra_figures: dict | None = None, best_epoch: int | None = None) -> dict:
    """Write the figures, ``metrics.json``, ``per_image.csv`` and
    ``classification_report.txt`` of an :func:`evaluate` result to ``out_dir``; adds and
    returns ``result["figures"]``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    drawn = evaluation_figures(result)
    if history:
        drawn["history"] = plot_history(history, best_epoch=best_epoch,
                                        synthetic=bool(result.get("synthetic")))
    close = set(drawn)
    drawn.update(extra_figures or {})
    for name, fig in drawn.items():
        path = out / FIGURE_FILES[name]
        fig.savefig(path, dpi=110, bbox_inches="tight")
        if name in close:
            plt.close(fig)
        figures[name] = str(path)
    result["figures"] = figures
    (out / "classification_report.txt").write_text(report_text(result))
    if "per_image" in result:
        result["per_image"].to_csv(out / "per_image.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(public_metrics(result), indent=2,
                                                 allow_nan=False))
    return figures
