"""Where runs go: the tracking store (URI, client, SQLite set-up, server check), the shared
runs view, and closing runs left RUNNING by dead processes."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

__all__ = [
    "DEFAULT_EXPERIMENT", "MIN_RANKED_IMAGES", "RANKING", "SHARED_VIEW", "VIEWS",
    "TrackingError", "check_server", "experiment_id", "failure_reason", "get_client",
    "global_tracking_uri", "process_alive", "process_tags", "resolve_tracking_uri",
    "run_is_live", "save_view", "sqlite_path", "ui_url",
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
#: Which ranking a run belongs to (tag ``ranking``), by its ``kind``: each question has its
#: own view, and nothing measured on fewer than :data:`MIN_RANKED_IMAGES` images or on
#: training images is in any (``ranking`` = ``none``).
RANKING = {"fit": "model", "refit": "model", "candidate": "candidate", "search": "search",
           "evaluation": "evaluation", "calibration": "site", "adaptation": "site"}
#: Fewest images a run's headline metrics may rest on to be ranked.
MIN_RANKED_IMAGES = 30

_HEADLINE = [f"metrics.`{m}`" for m in ("roc_auc", "sensitivity", "specificity")]
#: The saved views of the runs table (``...?viewStateShareKey=<name>``), one per question,
#: each with only comparable runs and the columns that answer it first.
VIEWS = {
    "models": {  # which trained model is best (fits and search refits, on their hold-outs)
        "searchFilter": "tags.ranking = 'model'",
        "orderByKey": "metrics.`roc_auc`", "orderByAsc": False,
        "selectedColumns": ["tags.`kind`", "tags.`eval_on`", *_HEADLINE, "metrics.`n_images`",
                            "metrics.`stress_roc_auc`", "metrics.`stress_specificity`",
                            "params.`data`", "params.`augmentation`",
                            "params.`intensity_norm`", "params.`n_networks`",
                            "params.`image_size`"]},
    "candidates": {  # which search candidate is best (mean over the CV folds)
        "searchFilter": "tags.ranking = 'candidate'",
        "orderByKey": "metrics.`roc_auc`", "orderByAsc": False,
        "selectedColumns": ["tags.`eval_on`", "metrics.`rank`", *_HEADLINE,
                            "metrics.`roc_auc_std`", "metrics.`stress_roc_auc`",
                            "params.`augmentation`", "params.`intensity_norm`",
                            "params.`n_networks`", "params.`filters`", "params.`image_size`"]},
    "evaluations": {  # how did a model do on this data (sorted by data, then ROC AUC)
        "searchFilter": "tags.ranking = 'evaluation'",
        "orderByKey": "tags.`eval_on`", "orderByAsc": True,
        "selectedColumns": ["tags.`eval_on`", *_HEADLINE, "metrics.`n_images`",
                            "tags.`model_run_id`"]},
}
#: The view ``ui_url`` opens by default (its name is the one earlier releases printed).
SHARED_VIEW = "pneumonia-cnn"
_SHARED_VIEW_TAG = "mlflow.sharedViewState."
VIEWS[SHARED_VIEW] = VIEWS["models"]


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
        # the runs tables the docs' MLflow page describes, opened by
        # ...?viewStateShareKey=<name> (written again: an older release's flat view sorted
        # every run, evaluations of 4 images included, in one list)
        for view, state in VIEWS.items():
            if tags.get(f"{_SHARED_VIEW_TAG}{view}") != json.dumps(state):
                client.set_experiment_tag(exp_id, f"{_SHARED_VIEW_TAG}{view}",
                                          json.dumps(state))
        _READY_EXPERIMENTS.add(key)
    return exp_id


def ui_url(exp_id: str, host: str = "http://127.0.0.1:5000", view: str = SHARED_VIEW) -> str:
    """The ``mlflow ui`` address of an experiment's runs table in one of its saved views
    (:data:`VIEWS`: "models", the default, "candidates", "evaluations"; or one made by
    :func:`save_view`)."""
    return (f"{host}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={view}")


def save_view(client, exp_id: str, name: str, like: str, search_filter: str) -> str:
    """Save a view of the runs table: the columns and order of :data:`VIEWS` ``[like]``,
    narrowed by ``search_filter`` (e.g. one search's candidates:
    ``tags.mlflow.parentRunId = '<id>'``). Returns ``name``, for :func:`ui_url`. (A filter
    in the address itself would make the UI drop the view's columns.)"""
    state = dict(VIEWS[like])
    state["searchFilter"] = f"{state['searchFilter']} AND {search_filter}"
    client.set_experiment_tag(exp_id, f"{_SHARED_VIEW_TAG}{name}", json.dumps(state))
    return name


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
