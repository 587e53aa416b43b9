"""What a tracked fit logs to MLflow, as a fit hook: at its start the model parameters and the
training data; per epoch the curves; per ensemble member its fit time; at its end the model
(one pyfunc model, linked to its metrics), the validation hold-out's headline metrics and
shift-stress test, the operating point and the history plot; after Ctrl-C the kept weights.

``PneumoniaCNN(tracking=True)`` plugs :class:`FitLogger` into ``fit``; the names follow the
scheme of :mod:`pneumonia_cnn.tracking`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..analysis import stress_hold_out
from ..data import is_synthetic
from ..estimator import FitHook
from ..metrics import confidence_intervals, decision_threshold, metrics_from_scores
from ._names import (
    data_label,
    describe_changes,
    image_dataset,
    model_name,
    model_params,
)
from ._runs import MLflowLogger, TrackedRun
from ._serving import log_model

__all__ = ["FitLogger", "log_stress", "run_name"]


def run_name(estimator, data_root, n_films: int | None = None, digest: str = "") -> str:
    """``nets=1 aug=None · chest_xray/train (1738 films, 3f2a1c)``: what differs from the
    defaults, then the data, its size and the start of its pixel digest, so that fits on
    different films never share a name (``SYNTHETIC-`` first for the demo data)."""
    prefix = "SYNTHETIC-" if is_synthetic(data_root) else ""
    films = f" ({n_films} films, {digest[:6]})" if n_films is not None else ""
    return f"{prefix}{describe_changes(estimator)} · {data_label(data_root)}{films}"


class FitLogger(FitHook):
    """Fit hook: one MLflow run per fit, in ``estimator.tracking_uri`` / ``experiment``. A
    tracking failure after training is warned about and never loses the model."""

    def __init__(self):
        self.run = None

    def on_fit_begin(self, estimator, context) -> None:
        """Start the run: model parameters, ``data`` and the training dataset."""
        root = context.data_root
        synthetic = is_synthetic(root)
        dataset = image_dataset(data_label(root), context.X, context.y, root, context.groups)
        self.run = run = TrackedRun.start(
            tracking_uri=estimator.tracking_uri, experiment=estimator.experiment,
            run_name=run_name(estimator, root, len(context.y), dataset.digest),
            tags={"kind": "fit", "eval_on": "validation hold-out",
                  **({"synthetic_data": "true"} if synthetic else {})})
        try:
            run.log_params({**model_params(estimator), "data": data_label(root)})
            run.log_dataset(dataset, "training")
            run.log_environment()
        except BaseException as exc:  # Ctrl-C right after the run was created: not RUNNING
            run.end_after_error(exc)
            raise
        estimator.mlflow_run_id_ = run.run_id

    def keras_callbacks(self, estimator, context) -> list:
        return [MLflowLogger(self.run)] if self.run is not None else []

    def on_member_end(self, estimator, context, index: int, member) -> None:
        curve = member.history_.get("val_auc")
        self.run.log_metrics({"member/fit_time_s": member.fit_time_,
                              **({"member/best_val_roc_auc": max(curve)} if curve else {})},
                             step=index)

    def on_fit_end(self, estimator, context) -> None:
        """Log the model first (its id links the metrics), then the hold-out's headline
        metrics and stress test (from :class:`~pneumonia_cnn.analysis.StressOnFit`), and the
        history."""
        run = self.run
        try:
            estimator.mlflow_model_id_ = log_model(run, estimator, model_name(run.name))
            stress = context.results.get("stress")
            if context.validation is not None and stress is not None:
                Xv, yv = context.validation
                dataset = image_dataset(f"{data_label(context.data_root)} (validation "
                                        "hold-out)", Xv, yv, context.data_root)
                run.log_dataset(dataset, "validation", model_id=estimator.mlflow_model_id_)
                result, scores, sample = stress
                _log_stress_metrics(run, estimator, result, sample, dataset)
                headline = metrics_from_scores(yv, scores, decision_threshold(estimator))
                headline["ci95"] = confidence_intervals(yv, scores, headline["threshold"])
                run.log_headline(headline, model_id=estimator.mlflow_model_id_,
                                 dataset=dataset)
                run.log_dict(result.to_dict(), "stress/stress_test.json")
                run.rank_check(len(yv))
            elif context.validation is None or len(np.unique(context.validation[1])) < 2:
                run.unrank("no validation hold-out with both classes to measure it on")
            else:  # StressOnFit warned why; no hold-out metrics were logged
                run.unrank("its hold-out was not scored (the stress test failed)")
            run.log_fit(estimator)
            run.end("FINISHED")
        except KeyboardInterrupt:  # the model is trained: the caller keeps it
            raise
        except Exception as exc:
            warnings.warn(f"the fit finished but MLflow logging failed ({exc}): the final "
                          "metrics, plots and model were not logged to run "
                          f"{run.run_id}; the trained model is kept (save it with "
                          ".save(path); `pneumonia-cnn train` saves it to --model-out)",
                          stacklevel=4)

    def on_interrupt(self, estimator, context, n_epochs: int, salvaged: bool) -> None:
        """Log the kept weights as artifact ``checkpoint/`` (when there are any); a failing
        store is only warned about (the run is then ended by :meth:`on_error`)."""
        if not salvaged or self.run is None:
            return
        try:
            with tempfile.TemporaryDirectory() as tmp:
                self.run.log_artifacts(estimator.save(Path(tmp) / "checkpoint"), "checkpoint")
            estimator.checkpoint_run_id_ = self.run.run_id  # what the CLI may then say
            self.run.log_metrics({"fit_time_s": context.elapsed(), "epochs_run": n_epochs})
        except Exception as exc:
            warnings.warn(f"could not log the interrupted fit's checkpoint to MLflow run "
                          f"{self.run.run_id} ({exc}); the model is kept in memory (save it "
                          "with .save(path))", stacklevel=4)

    def on_error(self, estimator, context, exc: BaseException) -> None:
        """End the run as KILLED (Ctrl-C) or FAILED; ending a run twice is harmless."""
        if self.run is not None:
            self.run.end_after_error(exc)


def _log_stress_metrics(run, estimator, result, sample, dataset) -> None:
    if sample is not None:
        run.log_params({"stress_sample": sample})
    run.log_metrics({k: v for k, v in result.summary.items() if k.startswith("stress_")},
                    model_id=getattr(estimator, "mlflow_model_id_", None), dataset=dataset)


def log_stress(run: TrackedRun, estimator, X, y, dataset):
    """Shift-stress test of labelled held-out images (a search refit's hold-out), its
    ``stress_*`` metrics logged linked to the estimator's logged model and to ``dataset``.

    Returns
    -------
    (StressResult, ndarray)
        The result, and the clean images' P(PNEUMONIA) (for the headline metrics).
    """
    result, clean, sample = stress_hold_out(estimator, X, y)
    _log_stress_metrics(run, estimator, result, sample, dataset)
    return result, clean
