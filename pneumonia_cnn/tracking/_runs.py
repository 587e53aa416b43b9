"""Runs: :class:`TrackedRun` (one MLflow run through an explicit client), the per-epoch
Keras logger, and closing runs left RUNNING by dead processes."""


from __future__ import annotations

import contextlib
import functools
import os
import warnings

import keras
import numpy as np

from .. import __version__
from ..metrics import evaluation_figures, plot_history, public_metrics, report_text
from ..utils import deferred_interrupts
from ._names import HEADLINE_METRICS, library_versions, param_value
from ._store import (
    DEFAULT_EXPERIMENT,
    MIN_RANKED_IMAGES,
    RANKING,
    TrackingError,
    experiment_id,
    failure_reason,
    get_client,
    process_alive,
    process_tags,
)

__all__ = ["MLflowLogger", "TrackedRun", "close_stale_runs", "quiet_run_links"]


_EPOCH_NAMES = {"loss": "train/loss", "accuracy": "train/accuracy", "auc": "train/roc_auc",
                "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_auc": "val/roc_auc"}



def _atomic(method):
    """Run a :class:`TrackedRun` write with :func:`deferred_interrupts`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with deferred_interrupts():
            return method(*args, **kwargs)

    return wrapper


class TrackedRun:
    """One MLflow run, driven through an explicit client.

    Parameters
    ----------
    client : mlflow.MlflowClient
    run_id : str
    """

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    @classmethod
    def start(cls, *, tracking_uri=None, experiment: str = DEFAULT_EXPERIMENT,
              run_name: str | None = None, parent_run_id: str | None = None,
              tags: dict | None = None, start_time: float | None = None) -> "TrackedRun":
        """Create a run (a child of ``parent_run_id`` if given) in ``experiment``;
        ``start_time`` (seconds since the epoch) backdates it to when its work began."""
        client = get_client(tracking_uri)
        all_tags = {"pneumonia_cnn.version": __version__, **process_tags(), **(tags or {})}
        if "kind" in all_tags:  # which view ranks it (see VIEWS); narrowed when it ends
            all_tags.setdefault("ranking", RANKING.get(all_tags["kind"], "none"))
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = None
        try:
            # a Ctrl-C held during the creation is delivered when this block ends: after the
            # run exists but before the caller has it, so it must be ended here, or it stays
            # RUNNING forever
            with deferred_interrupts():
                run = client.create_run(
                    experiment_id(client, experiment), run_name=run_name, tags=all_tags,
                    start_time=int(start_time * 1000) if start_time else None)
        except BaseException as exc:
            if run is not None:
                cls(client, run.info.run_id).end_after_error(exc)
            # a server's own MlflowException says what it needs; interrupts go on as they are
            if (isinstance(exc, TrackingError) or not isinstance(exc, Exception)
                    or not client.tracking_uri.startswith("sqlite:")):
                raise
            raise TrackingError(
                f"cannot write a run to the MLflow store {client.tracking_uri} "
                f"({failure_reason(exc)}): check that the file and its folder are writable, use "
                "another store (MLFLOW_TRACKING_URI / --tracking-uri) or turn tracking off "
                "(tracking=False, --no-tracking)") from None
        return cls(client, run.info.run_id)

    @property
    def experiment_id(self) -> str:
        return self.client.get_run(self.run_id).info.experiment_id

    @property
    def name(self) -> str:
        return self.client.get_run(self.run_id).info.run_name

    # -- logging ------------------------------------------------------------------------------
    @_atomic
    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, param_value(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def unrank(self, why: str) -> None:
        """Keep this run out of every ranking view (tag ``ranking`` = ``none``), saying why
        (tag ``unranked_because``): too few images, or training images."""
        self.set_tags({"ranking": "none", "unranked_because": why})

    def rank_check(self, n_images: int, n_training_images: int = 0) -> None:
        """:meth:`unrank` a run whose metrics rest on fewer than ``MIN_RANKED_IMAGES``
        images or on any training image."""
        if n_images < MIN_RANKED_IMAGES:
            self.unrank(f"measured on {n_images} images (fewer than {MIN_RANKED_IMAGES})")
        elif n_training_images:
            self.unrank(f"{n_training_images} of its {n_images} images are training images")

    @_atomic
    def log_metrics(self, metrics: dict, step: int | None = None, *, model_id=None,
                    dataset=None) -> None:
        """Log finite metrics; ``model_id`` links them to a logged model (its Models-tab
        metrics) and ``dataset`` (an :func:`image_dataset`) to the data they measure."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        link = {"model_id": model_id,
                "dataset_name": dataset.name if dataset is not None else None,
                "dataset_digest": dataset.digest if dataset is not None else None}
        items = [Metric(k, float(v), now, step or 0, **link) for k, v in metrics.items()
                 if v is not None and np.isfinite(float(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i:i + 500])

    @_atomic
    def log_dataset(self, dataset, context: str, model_id: str | None = None) -> None:
        """Record ``dataset`` as an input of the run (MLflow's Datasets column), with its
        role (``training``, ``validation``, ``evaluation``...) as context."""
        from mlflow.entities import DatasetInput, InputTag, LoggedModelInput

        self.client.log_inputs(
            self.run_id,
            datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])],
            models=[LoggedModelInput(model_id)] if model_id else None)

    @_atomic
    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    @_atomic
    def log_figure(self, fig, name: str) -> None:
        self.client.log_figure(self.run_id, fig, name)

    @_atomic
    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    @_atomic
    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    @_atomic
    def log_artifacts(self, folder, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_environment(self) -> None:
        """Library versions as ``environment.json`` (one artifact, not seven tags)."""
        self.log_dict(library_versions(), "environment.json")

    @_atomic
    def reopen(self) -> None:
        """Continue an ended run in this process (a resumed search): RUNNING again, and
        owned by this process, so that other processes see it as live."""
        self.client.update_run(self.run_id, status="RUNNING")
        for key, value in process_tags().items():
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED", end_time: float | None = None) -> None:
        with quiet_run_links():
            self.client.set_terminated(self.run_id, status=status,
                                       end_time=int(end_time * 1000) if end_time else None)

    def end_after_error(self, exc: BaseException) -> None:
        """End the run as KILLED (``KeyboardInterrupt``) or FAILED after ``exc``; a failure
        of the store here is only warned about, so that ``exc`` is what the caller sees."""
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except Exception as store_exc:
            warnings.warn(f"could not mark MLflow run {self.run_id} as {status} "
                          f"({store_exc}); it may show as RUNNING in mlflow ui", stacklevel=2)

    # -- what a fit and an evaluation log ---------------------------------------------------------
    def log_fit(self, estimator) -> None:
        """After a fit: fit time, epochs, the operating point, the history plot."""
        hist = estimator.history_
        final = {"fit_time_s": estimator.fit_time_, "epochs_run": len(hist.get("loss", [])),
                 "n_train_images": estimator.n_train_,
                 "decision_threshold": getattr(estimator, "threshold_", None),
                 "best_epoch": estimator.best_epoch_}
        self.log_metrics(final)
        if hist:
            import matplotlib.pyplot as plt

            members = getattr(estimator, "member_histories_", None)
            fig = plot_history(hist, best_epoch=estimator.best_epoch_,
                               n_networks=len(members or [1]), histories=members,
                               averaged_epochs=getattr(estimator, "averaged_epochs_", None))
            self.log_figure(fig, "plots/training_history.png")
            plt.close(fig)

    def log_headline(self, result: dict, *, model_id=None, dataset=None) -> None:
        """The headline metrics of an evaluation result (and their 95% intervals, the number
        of images and the operating point), linked to the model and the data."""
        metrics = {k: result[k] for k in HEADLINE_METRICS if k in result}
        for k, (low, high) in result.get("ci95", {}).items():
            metrics.update({f"{k}_ci_low": low, f"{k}_ci_high": high})
        metrics["n_images"] = result.get("n_images")
        metrics["decision_threshold"] = result.get("threshold")
        self.log_metrics(metrics, model_id=model_id, dataset=dataset)

    def log_evaluation(self, result: dict, extra_figures: dict | None = None, *,
                       model_id=None, dataset=None) -> None:
        """Metrics and artifacts of :func:`pneumonia_cnn.analysis.evaluate` (and extra
        figures such as the error gallery, logged as ``evaluation/<name>.png``)."""
        import matplotlib.pyplot as plt
        self.log_headline(result, model_id=model_id, dataset=dataset)
        for name, fig in evaluation_figures(result).items():
            self.log_figure(fig, f"evaluation/{name}.png")
            plt.close(fig)
        for name, fig in (extra_figures or {}).items():
            self.log_figure(fig, f"evaluation/{name}.png")
        self.log_text(report_text(result), "evaluation/classification_report.txt")
        if "per_image" in result:
            self.log_text(result["per_image"].to_csv(index=False), "evaluation/per_image.csv")
        self.log_dict(result["classification_report"], "evaluation/classification_report.json")
        self.log_dict(public_metrics(result), "evaluation/metrics.json")


@contextlib.contextmanager
def quiet_run_links():
    """Stop MLflow from printing "View run ... at: http://..." to stdout at every run end
    against a server (twice per run: a search would print dozens); the package prints the
    run ids that matter itself."""
    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before



class MLflowLogger(keras.callbacks.Callback):
    """Keras callback: logs every epoch's metrics to a run as MLflow metric history (step =
    epoch number, from 1), named ``train/loss``, ``train/accuracy``, ``train/roc_auc``,
    ``val/...`` and ``learning_rate``.

    Parameters
    ----------
    run : TrackedRun
        The run to log to, owned by the caller.
    """

    def __init__(self, run: TrackedRun):
        super().__init__()
        self.run = run
        self.failed = None

    def on_epoch_end(self, epoch, logs=None):
        if self.failed is not None:
            return  # the store failed before: do not slow training down with more retries
        logs = dict(logs or {})
        lr = getattr(self.model.optimizer, "learning_rate", None)
        if lr is not None:
            logs["learning_rate"] = float(np.asarray(keras.ops.convert_to_numpy(lr)))
        logs = {_EPOCH_NAMES.get(k, k): v for k, v in logs.items()}
        try:
            self.run.log_metrics(logs, step=epoch + 1)
        except Exception as exc:  # tracking must never stop training
            warnings.warn(f"MLflow logging failed at epoch {epoch + 1} ({exc}); training "
                          f"goes on; the metrics of epoch {epoch + 1} onwards are not logged",
                          stacklevel=2)
            self.failed = f"epoch {epoch + 1}: {exc}"


def close_stale_runs(tracking_uri=None, experiment: str = DEFAULT_EXPERIMENT,
                     older_than_hours: float | None = None, parent_run_id: str | None = None
                     ) -> list:
    """Mark as KILLED the runs left RUNNING by a process that no longer exists.

    A run whose process was killed outright (SIGKILL, a power cut) cannot end itself. A
    RUNNING run started on this machine by a process that is gone is closed; a run from
    another machine (or without process tags) only when it started more than
    ``older_than_hours`` ago. Runs whose process is alive are left alone.

    Parameters
    ----------
    tracking_uri : str, default=None
    experiment : str, default="pneumonia-cnn"
    older_than_hours : float, default=None
    parent_run_id : str, default=None
        Only the children of this run (a resumed search closes its stale refit).

    Returns
    -------
    list of (run_id, run_name)
        The runs closed.
    """
    import socket
    import time

    if older_than_hours is not None and not older_than_hours >= 0:
        raise ValueError(f"older_than_hours must be a number of hours >= 0, got "
                         f"{older_than_hours!r}: a negative age would close the runs of live "
                         "processes on other machines")
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    filt = "attributes.status = 'RUNNING'"
    if parent_run_id:
        filt += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    here = socket.gethostname()
    closed = []
    for run in client.search_runs([exp.experiment_id], filter_string=filt, max_results=10000):
        tags = run.data.tags
        pid = tags.get("pneumonia_cnn.pid", "")
        if tags.get("pneumonia_cnn.host") == here and pid.isdigit():
            stale = not process_alive(int(pid))
        else:
            age_h = (time.time() * 1000 - run.info.start_time) / 3.6e6
            stale = older_than_hours is not None and age_h > older_than_hours
        if stale:
            TrackedRun(client, run.info.run_id).end("KILLED")
            closed.append((run.info.run_id, run.info.run_name))
    return closed


