"""Evaluating a fitted model on labelled images: metrics with intervals, reasons not to trust
them, figures and files (the numbers and figures themselves are :mod:`pneumonia_cnn.metrics`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..data import (
    ImageData,
    canonical_labels,
    display_path,
    image_fingerprints,
    is_synthetic,
    load_data,
    load_images,
    mark_outputs,
)
from ..metrics import (
    NEGATIVE,
    POSITIVE,
    confidence_intervals,
    decision_threshold,
    evaluation_figures,
    metrics_from_scores,
    plot_history,
    public_metrics,
    report_text,
)
from ..utils import plugin
from ._explain import error_gallery, explain, heat_on_border
from ._wrappers import network_of

__all__ = ["FIGURE_FILES", "evaluate", "image_arrays", "save_evaluation", "training_overlap",
           "trust_warnings"]

#: File names written by :func:`save_evaluation`.
FIGURE_FILES = {
    "confusion_matrix": "confusion_matrix.png",
    "roc_curve": "roc_curve.png",
    "precision_recall_curve": "precision_recall_curve.png",
    "history": "training_history.png",
    "reliability_diagram": "reliability_diagram.png",
    "error_gallery": "error_gallery.png",
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
    net = network_of(estimator)
    if gallery and hasattr(net, "model_"):
        fig = error_gallery(estimator, X, result["per_image"], threshold,
                            data=result["data"], synthetic=synthetic)
        if fig is not None:
            extra["error_gallery"] = fig
        result["heat_on_border"] = border_check(estimator, X, predicted)
    try:
        if out_dir is not None:
            save_evaluation(result, out_dir, history=getattr(net, "history_", None),
                            extra_figures=extra, best_epoch=getattr(net, "best_epoch_", None),
                            n_networks=len(getattr(net, "member_histories_", None) or [1]),
                            histories=getattr(net, "member_histories_", None),
                            averaged_epochs=getattr(net, "averaged_epochs_", None))
        if track is None:
            track = bool(getattr(estimator, "tracking", False))
        if track:
            try:
                result["mlflow_run_id"] = plugin("evaluation_run")(estimator, result, X_name,
                                                                   X, y, groups, extra)
            except Exception as exc:  # the evaluation stands; only its logging failed
                result["mlflow_run_id"] = None
                warnings.warn(f"the evaluation could not be logged to MLflow "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); its "
                              "results are printed" + (f" and written to {out_dir}" if out_dir
                                                       else "") + " all the same",
                              UserWarning, stacklevel=2)
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
    overlap = result["n_images_seen_in_training"] = training_overlap(estimator, X)
    if overlap:
        out.append(f"{overlap} of the {n} evaluation images are identical to training "
                   "images of this model: these numbers are optimistic; evaluate on "
                   "images (and patients) the model never saw")
    return out


#: Films called PNEUMONIA whose evidence maps :func:`border_check` measures (a seeded draw).
BORDER_FILMS = 32


def border_check(estimator, X, predicted) -> dict | None:
    """Where the model's PNEUMONIA evidence lies on up to :data:`BORDER_FILMS` films it calls
    PNEUMONIA (:func:`heat_on_border`); warns when more of it lies on the film's border than
    a map spread evenly would put there: the model may lean on laterality markers or
    collimation edges rather than the lungs (user's path issue, item 10: the gallery showed
    it, no text said so)."""
    rows = np.flatnonzero(np.asarray(predicted) == POSITIVE)
    if rows.size == 0:
        return None
    rows = np.sort(np.random.default_rng(0).choice(rows, min(BORDER_FILMS, rows.size),
                                                   replace=False))
    border = heat_on_border(explain(estimator, np.asarray(X[rows])).heatmaps)
    if border["share"] is not None and border["share"] > border["area_share"]:
        warnings.warn(
            f"on {border['n_films']} films it calls PNEUMONIA, {border['share']:.0%} of the "
            f"model's evidence lies in the film's outer {border['band']:.1%} band, which is "
            f"{border['area_share']:.0%} of the area: more than a map spread evenly would put "
            "there, though the lungs lie inside. "
            "It may lean on markers, text or collimation edges: look at the error gallery, "
            "and check it at your site before use", UserWarning, stacklevel=3)
    return border


def training_overlap(estimator, X) -> int:
    """How many images of ``X`` are pixel-identical to the model's training images (0 when
    the model kept no fingerprints)."""
    seen = set(getattr(network_of(estimator), "train_fingerprints_", None) or [])
    return int(sum(f in seen for f in image_fingerprints(X))) if seen else 0


def _load_source(estimator, source):
    """A labelled data source at the estimator's input size (of a source with splits, its
    ``test`` split)."""
    return load_data(source, _model_size(estimator) or 96, role="evaluate", verbose=0)


def _model_size(estimator) -> int:
    """The side of the films ``estimator`` takes (0 where it does not say)."""
    if hasattr(estimator, "input_size"):
        return int(estimator.input_size())
    return int(getattr(estimator, "image_size", 0) or 0)


def _at_model_size(estimator, data):
    """``data`` at the model's input size. Images decoded at another size are decoded again
    from their files (resizing the decoded pixels gives other pixels: other scores, and the
    training-overlap check would not recognise them); without files, a warning says so."""
    import os

    size = _model_size(estimator)
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
    ``.npz``, a label CSV; see :func:`pneumonia_cnn.data.load_data`), an
    :class:`ImageData`, or an image array with labels ``y``; ``paths`` and ``groups``
    (patient ids) are None for arrays.
    """
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
    return X, canonical_labels(y), paths, groups


def save_evaluation(result: dict, out_dir, history: dict | None = None,
                    extra_figures: dict | None = None, best_epoch: int | None = None,
                    n_networks: int = 1, histories: list | None = None,
                    averaged_epochs: list | None = None) -> dict:
    """Write the figures, ``metrics.json``, ``per_image.csv`` and
    ``classification_report.txt`` of an :func:`evaluate` result to ``out_dir``; adds and
    returns ``result["figures"]``. ``n_networks``, ``histories``, ``averaged_epochs``: the
    ensemble's size, every network's history and the epochs averaged, for the training
    history (see :func:`pneumonia_cnn.metrics.plot_history`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    drawn = evaluation_figures(result)
    if history:
        drawn["history"] = plot_history(history, best_epoch=best_epoch,
                                        synthetic=bool(result.get("synthetic")),
                                        n_networks=n_networks, histories=histories,
                                        averaged_epochs=averaged_epochs)
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
    mark_outputs(out, [*figures.values(), "classification_report.txt", "per_image.csv",
                       "metrics.json"])
    return figures
