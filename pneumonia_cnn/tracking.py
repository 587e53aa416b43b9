"""MLflow tracking: where runs go, and what a fit or an evaluation logs.

Everything here works through an explicit :class:`mlflow.MlflowClient` and run id (as
skorch's MLflow logger does), so that runs land where they belong even when several fits,
processes or searches log at the same time.

One naming scheme for every run (see the README, "MLflow: what is logged"):

- a run's **headline metrics** have the same name whatever the run is -- ``roc_auc``,
  ``accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``, ``brier``,
  ``decision_threshold`` -- and the data they were measured on is the run's tag ``eval_on``
  and the dataset linked to them (a search candidate: the mean over the CV folds, with
  ``<metric>_std``; a fit: its validation hold-out; a search's refit: the search hold-out;
  an evaluation or a site calibration: its images). 95% intervals are ``<metric>_ci_low`` /
  ``<metric>_ci_high``; under shift ``stress_<metric>``;
- per-epoch curves are ``train/<metric>`` and ``val/<metric>`` (step = epoch);
- parameters are the estimator's own names (the plumbing -- ``build_fn``, ``verbose``,
  ``tracking_uri``... -- is not logged); ``data`` is the data's short name, and the data
  itself is an MLflow dataset input (digest = pixel hash, class counts in its profile);
- the tag ``kind`` says what a run is: fit, search, candidate, refit, evaluation,
  calibration.

Store: ``tracking_uri`` argument > ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db`` in the
current folder with artifacts under ``./mlruns`` -- MLflow 3's own default, so a plain
``mlflow ui`` started in the same folder shows every run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import signal
import threading
import warnings
from pathlib import Path

import keras
import numpy as np

__all__ = [
    "DEFAULT_EXPERIMENT",
    "HEADLINE_METRICS",
    "PLUMBING_PARAMS",
    "data_label",
    "close_stale_runs",
    "describe_params",
    "get_client",
    "image_dataset",
    "model_params",
    "TrackingError",
    "MLflowLogger",
    "TrackedRun",
    "resolve_tracking_uri",
    "ui_url",
]

DEFAULT_EXPERIMENT = "pneumonia-cnn"

#: Metrics every run that measures a model logs under the same names.
HEADLINE_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "f1",
                    "brier")
#: Estimator parameters that are plumbing, not modelling choices: never logged as params.
PLUMBING_PARAMS = frozenset({"build_fn", "model", "run_eagerly", "warm_start", "verbose",
                             "tracking", "tracking_uri", "experiment", "callbacks", "metrics"})
#: Short names of parameters in run names (a run name is read in a narrow table column).
_ABBREVIATIONS = {"augmentation": "aug", "intensity_norm": "norm", "n_networks": "nets",
                  "learning_rate": "lr", "label_smoothing": "ls", "image_size": "size",
                  "validation_fraction": "val", "target_sensitivity": "target",
                  "global_pooling": "gap", "convs_per_block": "convs", "dense_units": "dense",
                  "batch_norm": "bn", "kernel_size": "kernel", "random_state": "seed",
                  "lr_schedule": "sched", "class_weight": "cw", "batch_size": "batch",
                  "threshold": "thr"}
#: Keras history keys -> MLflow per-epoch metric names.
_EPOCH_NAMES = {"loss": "train/loss", "accuracy": "train/accuracy", "auc": "train/roc_auc",
                "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_auc": "val/roc_auc"}


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db``."""
    if tracking_uri:
        return str(tracking_uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    # SQLAlchemy percent-decodes the path of a sqlite URI: a folder named "a%20b" would be
    # read as "a b" (and MLflow retried the missing file for 100 s); encode it
    from urllib.parse import quote

    return "sqlite:///" + quote(str(Path.cwd() / "mlflow.db"), safe="/")


def sqlite_path(uri: str) -> str:
    """The file of a ``sqlite:///`` URI, percent-decoded as SQLAlchemy reads it."""
    from urllib.parse import unquote

    return unquote(uri[len("sqlite:///"):])


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; the message says what to do."""


def get_client(tracking_uri: str | None = None):
    """An :class:`mlflow.MlflowClient` for the resolved tracking URI (a server is checked
    first; a local sqlite store is created under a lock)."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        # MLflow retries a dead server for minutes by default; a few quick tries are enough.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        check_server(uri)
    if uri.startswith("sqlite:///"):
        _init_sqlite_store(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


_READY_STORES: set = set()


def _init_sqlite_store(uri: str) -> None:
    """Create (migrate) a local sqlite store under an inter-process file lock: two processes
    creating the same new store at once would otherwise race in MLflow's migrations."""
    import mlflow

    db_path = sqlite_path(uri)
    if db_path in _READY_STORES:
        return
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    with open(db_path + ".lock", "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # opening the store creates / migrates it
            mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # sqlalchemy / sqlite errors: one line, what to do
            raise TrackingError(
                f"cannot use the MLflow store {uri} ({_reason(exc)}): it may be damaged, "
                "unreadable or not an MLflow database. Move it aside to start a new one (e.g. "
                "mv mlflow.db mlflow.db.bad), point MLFLOW_TRACKING_URI / --tracking-uri at "
                "another store, or turn tracking off (tracking=False, --no-tracking)") from None
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(db_path)


def _reason(exc: BaseException) -> str:
    """The first line of an exception, without SQLAlchemy's background links."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, if the tracking server does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an older server without /health)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}): start it "
            "(`mlflow server`), correct MLFLOW_TRACKING_URI / tracking_uri, or train without "
            "tracking (tracking=False, --no-tracking)") from None


_READY_EXPERIMENTS: set = set()
#: Name of the runs-table view stored with every experiment (MLflow's "shared view": an
#: experiment tag ``mlflow.sharedViewState.<name>`` that the UI reads from the URL parameter
#: ``viewStateShareKey``).
SHARED_VIEW = "pneumonia-cnn"
_SHARED_VIEW_TAG = "mlflow.sharedViewState."
_SHARED_VIEW_STATE = {
    "orderByKey": "metrics.`roc_auc`", "orderByAsc": False,
    "selectedColumns": [
        "tags.`kind`", "tags.`eval_on`",
        *(f"metrics.`{m}`" for m in ("roc_auc", "sensitivity", "specificity",
                                     "stress_roc_auc", "stress_specificity", "rank",
                                     "decision_threshold")),
        *(f"params.`{p}`" for p in ("data", "augmentation", "intensity_norm", "n_networks",
                                    "filters", "image_size", "epochs"))]}


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        uri = client.tracking_uri  # a local store keeps its artifacts beside it, in mlruns/
        location = None
        if uri.startswith("sqlite:///"):
            db = Path(sqlite_path(uri))
            location = (db.parent / "mlruns").resolve().as_uri()
        try:
            exp_id = client.create_experiment(name, artifact_location=location)
        except Exception:  # created meanwhile by a concurrent process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    key = (client.tracking_uri, exp_id)
    if key not in _READY_EXPERIMENTS:
        tags = exp.tags if exp is not None else {}
        # MLflow 3's UI opens an experiment without this tag in GenAI mode (an empty traces
        # page); this tag makes it a model-training experiment that opens on its runs.
        if tags.get("mlflow.experimentKind") != "custom_model_development":
            client.set_experiment_tag(exp_id, "mlflow.experimentKind",
                                      "custom_model_development")
        # the runs table as the README describes it, opened by ...?viewStateShareKey=<name>
        if f"{_SHARED_VIEW_TAG}{SHARED_VIEW}" not in tags:
            client.set_experiment_tag(exp_id, f"{_SHARED_VIEW_TAG}{SHARED_VIEW}",
                                      json.dumps(_SHARED_VIEW_STATE))
        _READY_EXPERIMENTS.add(key)
    return exp_id


def ui_url(exp_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """The ``mlflow ui`` address that opens an experiment's runs table in model-training
    mode with the README's columns, sorted by ``roc_auc``."""
    return (f"{host}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={SHARED_VIEW}")


def library_versions() -> dict:
    """Library versions (logged as ``environment.json`` of top-level runs)."""
    import mlflow
    import scikeras
    import sklearn
    import tensorflow as tf

    from . import __version__

    return {
        "pneumonia_cnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "scikeras": scikeras.__version__,
        "scikit-learn": sklearn.__version__,
        "mlflow": mlflow.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# Names: what a run, its parameters and its data are called
# ---------------------------------------------------------------------------------------------
def model_params(estimator) -> dict:
    """The parameters a user compares: ``get_params()`` without the plumbing."""
    return {k: v for k, v in estimator.get_params().items() if k not in PLUMBING_PARAMS}


def changed_params(estimator) -> dict:
    """The model parameters that differ from the defaults of the estimator's class."""
    try:
        defaults = model_params(type(estimator)())
    except TypeError:  # a class that needs arguments
        return model_params(estimator)
    return {k: v for k, v in model_params(estimator).items()
            if _param_value(defaults.get(k, object())) != _param_value(v)}


def short_value(v) -> str:
    """A parameter value as a run name shows it: tuples as ``16-32``, dicts as ``custom``."""
    if isinstance(v, (tuple, list)):
        return "-".join(map(str, v))
    if isinstance(v, dict):
        return "custom"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


#: Order of parameters in a fit's name: modelling choices first, the seed last.
_NAME_ORDER = ("augmentation", "intensity_norm", "n_networks", "filters", "image_size",
               "threshold", "target_sensitivity", "tta", "label_smoothing", "epochs",
               "learning_rate", "dropout", "dense_units")


def describe_params(params: dict, limit: int | None = None) -> str:
    """``aug=standard filters=16-32``: parameters, abbreviated, in the order given (at most
    ``limit`` of them, then ``+N``)."""
    items = [f"{_ABBREVIATIONS.get(k, k)}={short_value(v)}" for k, v in params.items()]
    if limit is not None and len(items) > limit:
        items = [*items[:limit], f"+{len(items) - limit}"]
    return " ".join(items)


def describe_changes(estimator, limit: int = 5) -> str:
    """What sets a model apart from the defaults, most telling first (``defaults`` when
    nothing does): ``nets=1 aug=None filters=4-8 +3``."""
    changed = changed_params(estimator)
    rank = {k: i for i, k in enumerate(_NAME_ORDER)}
    order = sorted(changed, key=lambda k: (k == "random_state", rank.get(k, len(rank)), k))
    return describe_params({k: changed[k] for k in order}, limit) or "defaults"


def data_label(root) -> str:
    """The short name of a data set in run names and the ``data`` param: the last two parts
    of its folder (``chest_xray/train``), ``(arrays)`` for in-memory images."""
    if not root or str(root) == "(arrays)":
        return "(arrays)"
    return "/".join(Path(str(root)).resolve().parts[-2:])


def model_name(run_name: str) -> str:
    """A logged-model name from a run name (MLflow forbids ``/ : . % " '``)."""
    import re

    name = re.sub(r"[/:.%\"'\s·]+", "-", run_name).strip("-")
    return (name or "pneumonia-cnn")[:100]


def image_dataset(name: str, X: np.ndarray, y, source=None, groups=None):
    """An MLflow dataset entity for a set of images: digest = pixel hash
    (:func:`data_fingerprint`), source = its folder, profile = class counts, patients and
    image size. Log it with :meth:`TrackedRun.log_dataset`."""
    from mlflow.entities import Dataset

    names, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    profile = {"n_images": int(len(X)), **{f"n_{n}": int(c) for n, c in zip(names, counts)}}
    if groups is not None:
        profile["n_patients"] = int(len(np.unique(groups)))
    if len(X) and np.ndim(X) >= 3:
        profile["image_size"] = f"{np.shape(X)[1]}x{np.shape(X)[2]}"
    src = str(Path(str(source)).resolve()) if source and str(source) != "(arrays)" else "(arrays)"
    return Dataset(name=name, digest=data_fingerprint(X), source_type="local",
                   source=json.dumps({"uri": src}), profile=json.dumps(profile))


def _param_value(v) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    return str(v)


_deferring = False  # True inside deferred_interrupts() in the main thread


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them.

    A write to the tracking store cut in half by ``KeyboardInterrupt`` can leave a SQLite
    transaction open, and the database then stays locked for every later write of the same
    process -- including the ones that save an interrupted fit.  Each store write of
    :class:`TrackedRun` runs inside this block.  A second signal during the same block is
    delivered at once (press Ctrl-C twice to stop immediately).  Outside the main thread,
    where Python never runs signal handlers, and inside an outer block, this does nothing.
    """
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = {}

    def restore():
        for signum, handler in old.items():
            signal.signal(signum, handler)
        old.clear()

    def hold(signum, frame):
        if pending:  # second signal: stop now
            pending.clear()
            restore()
            signal.raise_signal(signum)
        else:
            pending.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler not in (None, signal.SIG_IGN):  # None: not installed from Python
            old[signum] = handler
            signal.signal(signum, hold)
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        restore()
        if pending:
            signal.raise_signal(pending[0])


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
        from . import __version__

        client = get_client(tracking_uri)
        all_tags = {"pneumonia_cnn.version": __version__, **_process_tags(), **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = None
        try:
            # a Ctrl-C held during the creation is delivered when this block ends: after the
            # run exists but before the caller has it, so it must be ended here, or it stays
            # RUNNING forever
            with deferred_interrupts():
                run = client.create_run(
                    _experiment_id(client, experiment), run_name=run_name, tags=all_tags,
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
                f"({_reason(exc)}): check that the file and its folder are writable, use "
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

        items = [Param(k, _param_value(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

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
        for key, value in _process_tags().items():
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
        from .plots import plot_history

        hist = estimator.history_
        final = {"fit_time_s": estimator.fit_time_, "epochs_run": len(hist.get("loss", [])),
                 "n_train_images": estimator.n_train_,
                 "decision_threshold": getattr(estimator, "threshold_", None),
                 "best_epoch": estimator.best_epoch_}
        self.log_metrics(final)
        if hist:
            import matplotlib.pyplot as plt

            fig = plot_history(hist, best_epoch=estimator.best_epoch_)
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
        """Metrics and artifacts of :func:`pneumonia_cnn.evaluation.evaluate` (and extra
        figures such as the error gallery, logged as ``evaluation/<name>.png``)."""
        import matplotlib.pyplot as plt

        from .plots import evaluation_figures, public_metrics, report_text

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


@contextlib.contextmanager
def _global_tracking_uri(uri: str):
    """Point MLflow's fluent API at ``uri`` for a moment, then put back exactly what was
    there: its global URI *and* ``$MLFLOW_TRACKING_URI``, which ``mlflow.set_tracking_uri``
    also overwrites. (Restoring with ``set_tracking_uri(get_tracking_uri())`` turned an
    environment default into a sticky global and rewrote the variable: later runs of the
    process went to the wrong store.)"""
    import mlflow

    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - older/newer MLflow without the helper
        _use_tracking_uri = None
    try:
        if _use_tracking_uri is not None:
            with _use_tracking_uri(uri):
                yield
        else:  # pragma: no cover
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(uri)
            try:
                yield
            finally:
                mlflow.set_tracking_uri(previous)
    finally:
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before


def _process_tags() -> dict:
    """Which process owns a run, so that :func:`close_stale_runs` can tell a run still being
    written from one whose process was killed (SIGKILL, power loss) and left RUNNING."""
    import socket

    return {"pneumonia_cnn.host": socket.gethostname(), "pneumonia_cnn.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def run_is_live(run) -> bool:
    """Whether a RUNNING run is being written by a live process: on this machine, its
    process exists; from another machine (or without process tags) it is taken as live.
    Runs that ended are not live."""
    import socket

    if run.info.status != "RUNNING":
        return False
    tags = run.data.tags
    pid = tags.get("pneumonia_cnn.pid", "")
    if tags.get("pneumonia_cnn.host") == socket.gethostname() and pid.isdigit():
        return _alive(int(pid))
    return True


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
            stale = not _alive(int(pid))
        else:
            age_h = (time.time() * 1000 - run.info.start_time) / 3.6e6
            stale = older_than_hours is not None and age_h > older_than_hours
        if stale:
            TrackedRun(client, run.info.run_id).end("KILLED")
            closed.append((run.info.run_id, run.info.run_name))
    return closed


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


def data_fingerprint(X: np.ndarray) -> str:
    """Content hash of the pixels of a data set, 16 hex digits."""
    from .streaming import iter_chunks

    h = hashlib.sha256()
    for chunk in iter_chunks(X):  # an ImageStream too, a chunk at a time
        h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()[:16]
