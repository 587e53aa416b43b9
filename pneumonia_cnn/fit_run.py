"""What a tracked fit logs to MLflow: at its start the model parameters and the training
data; at its end the validation hold-out's headline metrics and shift-stress test, the
operating point, the history plot and the model (one pyfunc model, linked to its metrics).

:class:`~pneumonia_cnn.estimator.PneumoniaCNN` calls :func:`start` and :func:`finish`; the
names follow the scheme of :mod:`pneumonia_cnn.tracking`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from .tracking import (
    TrackedRun,
    data_label,
    describe_changes,
    image_dataset,
    model_name,
    model_params,
)

__all__ = ["start", "finish", "log_interrupted", "log_stress", "run_name"]


def run_name(estimator, data_root) -> str:
    """``nets=1 aug=None · chest_xray/train``: what differs from the defaults, then the data
    (``SYNTHETIC-`` first for the demo data)."""
    from .synthetic import is_synthetic

    prefix = "SYNTHETIC-" if is_synthetic(data_root) else ""
    return f"{prefix}{describe_changes(estimator)} · {data_label(data_root)}"


def start(estimator, data_root, X, y, groups=None) -> TrackedRun:
    """Start the run of a fit: model parameters, ``data`` and the training dataset."""
    from .synthetic import is_synthetic

    synthetic = is_synthetic(data_root)
    run = TrackedRun.start(tracking_uri=estimator.tracking_uri, experiment=estimator.experiment,
                           run_name=run_name(estimator, data_root),
                           tags={"kind": "fit", "eval_on": "validation hold-out",
                                 **({"synthetic_data": "true"} if synthetic else {})})
    try:
        run.log_params({**model_params(estimator), "data": data_label(data_root)})
        run.log_dataset(image_dataset(data_label(data_root), X, y, data_root, groups),
                        "training")
        run.log_environment()
    except BaseException as exc:  # Ctrl-C right after the run was created: not RUNNING
        run.end_after_error(exc)
        raise
    return run


def finish(estimator, run: TrackedRun, data_root, validation=None) -> None:
    """Log a finished fit: the model first (its id links the metrics), then the validation
    hold-out's headline metrics and stress test, and the history. A tracking failure is
    warned about and never loses the model."""
    from . import serving
    from .evaluation import confidence_intervals, metrics_from_scores

    try:
        estimator.mlflow_model_id_ = serving.log_model(run, estimator,
                                                       model_name(run.name))
        if validation is not None and len(np.unique(validation[1])) == 2:
            Xv, yv = validation
            dataset = image_dataset(f"{data_label(data_root)} (validation hold-out)", Xv, yv,
                                    data_root)
            run.log_dataset(dataset, "validation", model_id=estimator.mlflow_model_id_)
            result, scores = log_stress(run, estimator, Xv, yv, dataset)
            estimator.stress_ = result.summary
            headline = metrics_from_scores(yv, scores, estimator._decision_threshold())
            headline["ci95"] = confidence_intervals(yv, scores, headline["threshold"])
            run.log_headline(headline, model_id=estimator.mlflow_model_id_, dataset=dataset)
            run.log_dict(result.to_dict(), "stress/stress_test.json")
        run.log_fit(estimator)
        run.end("FINISHED")
    except KeyboardInterrupt as exc:  # the model is trained: the caller keeps it
        run.end_after_error(exc)
        raise
    except Exception as exc:
        warnings.warn(f"the fit finished but MLflow logging failed ({exc}): the final "
                      "metrics, plots and model were not logged to run "
                      f"{run.run_id}; the trained model is kept (save it with "
                      ".save(path); `pneumonia-cnn train` saves it to --model-out)",
                      stacklevel=3)


def log_stress(run: TrackedRun, estimator, X, y, dataset):
    """Shift-stress test of labelled held-out images in one pass (clean and perturbed
    scores), its ``stress_*`` metrics logged linked to the estimator's logged model and to
    ``dataset``. Used for a fit's validation hold-out and a search refit's hold-out.

    Returns
    -------
    (StressResult, ndarray)
        The result, and the clean images' P(PNEUMONIA) (for the headline metrics).
    """
    from .robustness import PERTURBATIONS, stress_scores, summarize_stress

    y = np.asarray(y)
    rows = _stress_rows(y)
    if rows is None:
        all_scores = stress_scores(estimator, np.asarray(X), list(PERTURBATIONS))
        clean = all_scores[("clean", 0)]
    else:  # a large hold-out: the headline on all of it, the stress test on a sample
        clean = estimator.predict_proba(X)[:, 1]
        all_scores = stress_scores(estimator, np.asarray(X[rows]), list(PERTURBATIONS))
        y = y[rows]
        run.log_params({"stress_sample": len(rows)})
    result = summarize_stress(y, all_scores, estimator._decision_threshold())
    run.log_metrics({k: v for k, v in result.summary.items() if k.startswith("stress_")},
                    model_id=getattr(estimator, "mlflow_model_id_", None), dataset=dataset)
    return result, clean


#: Largest hold-out stress-tested whole; above it, a class-stratified sample of this size
#: (the stress test predicts every image 40 times).
STRESS_MAX_IMAGES = 2000


def _stress_rows(y) -> np.ndarray | None:
    """Rows of a class-stratified sample of ``STRESS_MAX_IMAGES`` (fixed seed), or None when
    the hold-out is small enough to test whole."""
    if len(y) <= STRESS_MAX_IMAGES:
        return None
    from sklearn.model_selection import train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=STRESS_MAX_IMAGES, stratify=y,
                               random_state=0)
    return np.sort(rows)


def log_interrupted(estimator, run: TrackedRun, elapsed: float, n_epochs: int,
                    salvaged: bool) -> None:
    """After Ctrl-C: log the kept weights as artifact ``checkpoint/`` (when there are any)
    and end the run as KILLED; a failing store is only warned about."""
    if salvaged:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                run.log_artifacts(estimator.save(Path(tmp) / "checkpoint"), "checkpoint")
            estimator.checkpoint_run_id_ = run.run_id  # what the CLI may then say
            run.log_metrics({"fit_time_s": elapsed, "epochs_run": n_epochs})
        except Exception as exc:
            warnings.warn(f"could not log the interrupted fit's checkpoint to MLflow run "
                          f"{run.run_id} ({exc}); the model is kept in memory (save it "
                          "with .save(path))", stacklevel=3)
    run.end_after_error(KeyboardInterrupt())
