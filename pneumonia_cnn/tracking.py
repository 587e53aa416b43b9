"""MLflow tracking: where runs go, and what a fit or an evaluation logs.

Everything here works through an explicit :class:`mlflow.MlflowClient` and run id (as
skorch's MLflow logger does), so that runs land where they belong even when several fits,
processes or searches log at the same time.

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
import tempfile
import threading
import warnings
from pathlib import Path

import keras
import numpy as np

__all__ = [
    "DEFAULT_EXPERIMENT",
    "TrackingError",
    "MLflowLogger",
    "TrackedRun",
    "resolve_tracking_uri",
]

DEFAULT_EXPERIMENT = "pneumonia-cnn"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db``."""
    if tracking_uri:
        return str(tracking_uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; the message says what to do."""


def _client(tracking_uri: str | None):
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

    db_path = uri[len("sqlite:///"):]
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
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(db_path)


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


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = client.tracking_uri  # local stores: artifacts under ./mlruns
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path.cwd() / "mlruns").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def version_tags() -> dict:
    """Library versions, as run tags."""
    import mlflow
    import scikeras
    import sklearn
    import tensorflow as tf

    from . import __version__

    return {
        "pneumonia_cnn.version": __version__,
        "tensorflow.version": tf.__version__,
        "keras.version": keras.__version__,
        "scikeras.version": scikeras.__version__,
        "sklearn.version": sklearn.__version__,
        "mlflow.version": mlflow.__version__,
        "python.version": platform.python_version(),
    }


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
    @_atomic
    def start(cls, *, tracking_uri=None, experiment: str = DEFAULT_EXPERIMENT,
              run_name: str | None = None, parent_run_id: str | None = None,
              tags: dict | None = None) -> "TrackedRun":
        """Create a run (a child of ``parent_run_id`` if given) in ``experiment``."""
        client = _client(tracking_uri)
        all_tags = {**version_tags(), **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(_experiment_id(client, experiment), run_name=run_name,
                                tags=all_tags)
        return cls(client, run.info.run_id)

    # -- logging ------------------------------------------------------------------------------
    @_atomic
    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    @_atomic
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if v is not None and np.isfinite(float(v))]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

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

    @_atomic
    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

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
    def log_data(self, data_info: dict) -> None:
        """Data set description: folder, counts per class, image size, content hash."""
        self.log_params({f"data.{k}": v for k, v in data_info.items()})

    def log_fit(self, estimator) -> None:
        """After a fit: fit time, best epoch and its validation metrics, history plot."""
        from .plots import plot_history

        hist = estimator.history_
        final = {"fit_time_s": estimator.fit_time_, "epochs_run": len(hist.get("loss", [])),
                 "n_train_images": estimator.n_train_,
                 "threshold": getattr(estimator, "threshold_", None)}
        if estimator.best_epoch_:
            i = estimator.best_epoch_ - 1
            final["best_epoch"] = estimator.best_epoch_
            final.update({f"best_{k}": v[i] for k, v in hist.items() if k.startswith("val_")})
        self.log_metrics(final)
        if hist:
            import matplotlib.pyplot as plt

            fig = plot_history(hist, best_epoch=estimator.best_epoch_)
            self.log_figure(fig, "plots/training_history.png")
            plt.close(fig)

    @_atomic
    def log_model(self, estimator, input_example: np.ndarray | None = None) -> None:
        """Log the fitted model twice over: our folder format under ``model/`` (load with
        ``PneumoniaCNN.load``), and an MLflow pyfunc model ``pyfunc_model`` with signature
        and input example (load with ``mlflow.pyfunc.load_model``)."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = estimator.save(Path(tmp) / "model")
            self.log_artifacts(folder, "model")
            try:
                _log_pyfunc(self, folder, estimator, input_example)
            except Exception as exc:  # the folder above is logged already
                warnings.warn(f"could not log the MLflow pyfunc model: {exc}", stacklevel=2)

    def log_evaluation(self, result: dict, prefix: str = "test_",
                       extra_figures: dict | None = None) -> None:
        """Metrics and artifacts of :func:`pneumonia_cnn.evaluation.evaluate` (and extra
        figures such as the error gallery, logged as ``evaluation/<name>.png``)."""
        import matplotlib.pyplot as plt

        from .plots import evaluation_figures, public_metrics, report_text

        keys = ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1", "brier")
        self.log_metrics({prefix + k: result[k] for k in keys if k in result})
        for k, (low, high) in result.get("ci95", {}).items():
            self.log_metrics({f"{prefix}{k}_ci_low": low, f"{prefix}{k}_ci_high": high})
        self.log_metrics({prefix + "n_images": result["n_images"]})
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


def _log_pyfunc(run: TrackedRun, folder, estimator, input_example):
    import mlflow
    from mlflow.models import infer_signature

    from . import __version__

    class PneumoniaPyfunc(mlflow.pyfunc.PythonModel):
        """Input: images (n, h, w, 1) uint8; output: P(PNEUMONIA)."""

        def load_context(self, context):
            from pneumonia_cnn import PneumoniaCNN

            self.model = PneumoniaCNN.load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            proba = self.model.predict_proba(np.asarray(model_input))
            return proba[:, list(self.model.classes_).index("PNEUMONIA")]

    if input_example is None:
        size = estimator.image_size
        input_example = np.zeros((1, size, size, 1), np.uint8)
    signature = infer_signature(input_example, estimator.predict_proba(input_example)[:, 1])
    import logging

    mlflow_logger = logging.getLogger("mlflow")
    old_level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)  # MLflow's notes on cloudpickle and type hints
    try:
        with _global_tracking_uri(run.client.tracking_uri), mlflow.start_run(
                run_id=run.run_id, nested=mlflow.active_run() is not None):
            mlflow.pyfunc.log_model(
                name="pyfunc_model", python_model=PneumoniaPyfunc(),
                artifacts={"model": str(folder)}, signature=signature,
                input_example=input_example,
                pip_requirements=[f"pneumonia-cnn=={__version__}",
                                  f"keras=={keras.__version__}",
                                  f"mlflow=={mlflow.__version__}"])
    finally:
        mlflow_logger.setLevel(old_level)


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


class MLflowLogger(keras.callbacks.Callback):
    """Keras callback: logs every epoch's metrics (loss, accuracy, auc and ``val_*``) to a
    run as MLflow metric history (step = epoch number, from 1).

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
        try:
            self.run.log_metrics(logs, step=epoch + 1)
        except Exception as exc:  # tracking must never stop training
            warnings.warn(f"MLflow logging failed at epoch {epoch + 1} ({exc}); training "
                          f"goes on; the metrics of epoch {epoch + 1} onwards are not logged",
                          stacklevel=2)
            self.failed = f"epoch {epoch + 1}: {exc}"


def data_fingerprint(X: np.ndarray) -> str:
    """Content hash of the pixels of a data set, 16 hex digits."""
    return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16]
