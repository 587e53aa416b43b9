"""MLflow: where runs go, what a fit, a search, an evaluation, a calibration or an adaptation
logs, the registry and serving. Every MLflow import of the package is in this subpackage.

Everything here works through an explicit :class:`mlflow.MlflowClient` and run id (as
skorch's MLflow logger does), so that runs land where they belong even when several fits,
processes or searches log at the same time.

One naming scheme for every run (see the docs' MLflow page):

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

# Layout (for developers):
# Modules (private, re-exported here): ``_store`` (the tracking store), ``_names`` (run,
# parameter and data names), ``_runs`` (:class:`TrackedRun`, the per-epoch logger),
# ``_fit_logging`` (:class:`FitLogger`, the fit hook ``tracking=True`` plugs in),
# ``_site_runs`` (runs of evaluations, calibrations, adaptations), ``_search`` (grid and random
# searches with a parent run and a child per candidate), ``_registry`` (model registry and
# model URIs), ``_serving`` (the pyfunc model and ``mlflow models serve``).

from ..estimator import is_model_uri
from ._fit_logging import FitLogger, log_stress, run_name
from ._names import (
    HEADLINE_METRICS,
    PLUMBING_PARAMS,
    changed_params,
    data_fingerprint,
    data_label,
    describe_changes,
    describe_params,
    image_dataset,
    library_versions,
    model_name,
    model_params,
    short_value,
)
from ._registry import CHAMPION, RegistrationResult, model_folder, register
from ._runs import MLflowLogger, TrackedRun, close_stale_runs, quiet_run_links
from ._search import (
    MLflowGridSearchCV,
    MLflowRandomizedSearchCV,
    SearchResult,
    candidate_key,
    check_space,
    default_scoring,
    plot_search,
    rank_candidates,
    read_candidates,
    search,
)
from ._serving import (
    MODEL_ARTIFACT,
    PneumoniaPyfunc,
    ServingInputError,
    decode_request,
    log_model,
    save_pyfunc,
    start_server,
    stop_server,
    wait_until_serving,
)
from ._site_runs import (
    log_adaptation_run,
    log_calibration_run,
    log_evaluation_run,
    log_site_evaluation,
    log_site_run,
)
from ._store import (
    DEFAULT_EXPERIMENT,
    MIN_RANKED_IMAGES,
    SHARED_VIEW,
    VIEWS,
    TrackingError,
    check_server,
    get_client,
    global_tracking_uri,
    resolve_tracking_uri,
    run_is_live,
    save_view,
    sqlite_path,
    ui_url,
)

__all__ = [
    "CHAMPION", "DEFAULT_EXPERIMENT", "FitLogger", "HEADLINE_METRICS", "MLflowGridSearchCV",
    "MLflowLogger", "MLflowRandomizedSearchCV", "MODEL_ARTIFACT", "PLUMBING_PARAMS",
    "PneumoniaPyfunc", "RegistrationResult", "SHARED_VIEW", "SearchResult",
    "ServingInputError", "TrackedRun", "TrackingError", "candidate_key", "changed_params",
    "check_server", "check_space", "close_stale_runs", "data_fingerprint", "data_label",
    "decode_request", "default_scoring", "describe_changes", "describe_params", "get_client",
    "global_tracking_uri", "image_dataset", "is_model_uri", "library_versions",
    "log_adaptation_run", "log_calibration_run", "log_evaluation_run", "log_model",
    "log_site_evaluation", "log_site_run", "log_stress", "model_folder", "model_name",
    "model_params", "plot_search", "quiet_run_links", "rank_candidates", "read_candidates",
    "register", "resolve_tracking_uri", "run_is_live", "run_name", "search", "short_value",
    "save_pyfunc", "save_view", "sqlite_path", "start_server", "stop_server", "ui_url",
    "wait_until_serving",
    "MIN_RANKED_IMAGES", "VIEWS",
]
