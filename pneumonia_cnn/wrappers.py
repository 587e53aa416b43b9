"""What post-fit wrappers of a fitted network share (site calibration, site adaptation): the
network's attributes that evaluation and the CLI read, and the MLflow run nested under the
network's fit."""

from __future__ import annotations

from pathlib import Path

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .folders import atomic_model_folder

__all__ = ["NetworkWrapper", "log_site_run"]


class NetworkWrapper(ClassifierMixin, BaseEstimator):
    """Base of the classifiers that wrap a fitted network (``estimator``) and set their own
    operating point (``threshold_``). Evaluation, explanations, serving and the CLI read
    the network's size, tracking settings and history through these properties."""

    def _decision_threshold(self) -> float:
        return float(self.threshold_)

    def save(self, path) -> Path:
        """Save as a model folder: the network's files plus the wrapper's own
        (``write_files``), written whole or not at all
        (:func:`pneumonia_cnn.folders.atomic_model_folder`)."""
        check_is_fitted(self, "threshold_")
        with atomic_model_folder(path) as folder:
            self.write_files(folder)
        return Path(path)

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

    @property
    def validation_scores_(self):
        return getattr(self.estimator, "validation_scores_", None)

    @property
    def validation_labels_(self):
        return getattr(self.estimator, "validation_labels_", None)

    @property
    def train_fingerprints_(self):
        return getattr(self.estimator, "train_fingerprints_", [])


def log_site_run(model, *, kind: str, verb: str, source, X, y, groups, params: dict,
                 summary: dict, log_results) -> str:
    """One run of a site step (``kind`` "calibration" / "adaptation") named ``<verb> <data>``,
    nested under the network's fit run: parameters, the wrapped model logged as a pyfunc
    model, the site's dataset, ``log_results(run, model_id, dataset)``, and ``summary`` as
    ``<kind>/<kind>.json``. Sets ``model.mlflow_run_id_`` / ``mlflow_model_id_``."""
    from . import serving
    from .tracking import TrackedRun, data_label, image_dataset, model_name

    parent = getattr(model.estimator, "mlflow_run_id_", None)
    data = data_label(source)
    run = TrackedRun.start(tracking_uri=model.tracking_uri, experiment=model.experiment,
                           run_name=f"{verb} {data}", parent_run_id=parent,
                           tags={"kind": kind, "eval_on": data,
                                 **({"model_run_id": parent} if parent else {})})
    try:
        run.log_params({"data": data, **params})
        model.mlflow_run_id_ = run.run_id
        model.mlflow_model_id_ = serving.log_model(run, model, model_name(f"{verb}d {data}"))
        dataset = image_dataset(data, X, y, source, groups)
        run.log_dataset(dataset, kind, model_id=model.mlflow_model_id_)
        log_results(run, model.mlflow_model_id_, dataset)
        run.log_dict(summary, f"{kind}/{kind}.json")
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    return run.run_id
