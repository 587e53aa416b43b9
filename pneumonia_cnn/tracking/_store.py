"""Where runs go: the tracking store (URI, client, SQLite set-up, server check), the shared
runs view, and closing runs left RUNNING by dead processes."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

__all__ = [
    "DEFAULT_EXPERIMENT", "SHARED_VIEW", "TrackingError", "check_server", "experiment_id",
    "failure_reason", "get_client", "global_tracking_uri", "process_alive", "process_tags",
    "resolve_tracking_uri", "run_is_live", "sqlite_path", "ui_url",
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
                f"cannot use the MLflow store {uri} ({failure_reason(exc)}): it may be damaged, "
                "unreadable or not an MLflow database. Move it aside to start a new one (e.g. "
                "mv mlflow.db mlflow.db.bad), point MLFLOW_TRACKING_URI / --tracking-uri at "
                "another store, or turn tracking off (tracking=False, --no-tracking)") from None
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(db_path)


def failure_reason(exc: BaseException) -> str:
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


def experiment_id(client, name: str) -> str:
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
        # the runs table as the docs' MLflow page describes it, opened by ...?viewStateShareKey=<name>
        if f"{_SHARED_VIEW_TAG}{SHARED_VIEW}" not in tags:
            client.set_experiment_tag(exp_id, f"{_SHARED_VIEW_TAG}{SHARED_VIEW}",
                                      json.dumps(_SHARED_VIEW_STATE))
        _READY_EXPERIMENTS.add(key)
    return exp_id


def ui_url(exp_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """The ``mlflow ui`` address that opens an experiment's runs table in model-training
    mode with the docs' columns, sorted by ``roc_auc``."""
    return (f"{host}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={SHARED_VIEW}")



@contextlib.contextmanager
def global_tracking_uri(uri: str):
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


def process_tags() -> dict:
    """Which process owns a run, so that :func:`close_stale_runs` can tell a run still being
    written from one whose process was killed (SIGKILL, power loss) and left RUNNING."""
    import socket

    return {"pneumonia_cnn.host": socket.gethostname(), "pneumonia_cnn.pid": str(os.getpid())}


def process_alive(pid: int) -> bool:
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
        return process_alive(int(pid))
    return True
