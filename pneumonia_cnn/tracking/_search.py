"""Grid and random searches with patient-grouped CV, every candidate logged to MLflow.

:func:`search` runs scikit-learn's :class:`~sklearn.model_selection.GridSearchCV` (or
:class:`~sklearn.model_selection.RandomizedSearchCV`) over any ``PneumoniaCNN``
parameters with :class:`~sklearn.model_selection.StratifiedGroupKFold` on patient ids, and
logs, as in MLflow's scikit-learn examples:

- one **parent run** per search, ``search <name> · <data>`` (the grid, the CV, the shared
  model parameters, the data sets, ``cv_results.csv`` with the final ranks, a plot of the
  score against the searched parameters, and the winner's scores);
- one **child run per candidate**, named by its searched values (``aug=standard
  filters=16-32 · <name>``), logged as soon as the candidate is done with its real start
  and end times: the searched parameters, the mean (``roc_auc``...) and standard deviation
  (``roc_auc_std``...) of every score over the folds, ``fit_time_s``; the per-fold values
  are in its artifact ``cv_folds.json``. When the search ends (and when it resumes) every
  candidate gets its final ``rank`` and the winner the tag ``best_candidate = true``;
- one child run for the **refit best model**, ``best <values> · <name>`` (per-epoch
  metrics, the model, and its evaluation and stress test on a patient-grouped hold-out that
  the search never saw), optionally registered in the model registry.

The results are read back from MLflow with ``search_runs`` filtered on the parent run id,
which is also how an interrupted search **resumes**: run it again with the same name and
grid, and candidates already finished are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.metrics import make_scorer, recall_score
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    ParameterSampler,
    RandomizedSearchCV,
    StratifiedGroupKFold,
)

from ..analysis import evaluate, stress_scoring
from ..cluster import ClusterError, connect, dask_backend, total_threads, wave_size
from ..data import ImageData, grouped_split, image_fingerprints, load_data
from ..estimator import PneumoniaCNN
from ._fit_logging import log_stress
from ._names import data_label, describe_params, image_dataset, model_name, model_params
from ._registry import register as register_model
from ._runs import MLflowLogger, TrackedRun, close_stale_runs
from ._serving import log_model
from ._store import DEFAULT_EXPERIMENT, run_is_live

__all__ = ["MLflowGridSearchCV", "MLflowRandomizedSearchCV", "SearchResult", "candidate_key",
           "check_space", "default_scoring", "plot_search", "rank_candidates", "read_candidates",
           "search"]

REFIT_METRIC = "roc_auc"


def default_scoring() -> dict:
    """ROC AUC (used to select), accuracy, sensitivity and specificity."""
    return {
        "roc_auc": "roc_auc",
        "accuracy": "accuracy",
        "sensitivity": make_scorer(recall_score, pos_label="PNEUMONIA"),
        "specificity": make_scorer(recall_score, pos_label="NORMAL"),
    }


def candidate_key(params: dict) -> str:
    """Stable id of a candidate's parameters (12 hex digits)."""
    return hashlib.sha1(_canonical(params).encode()).hexdigest()[:12]


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=repr)


# ---------------------------------------------------------------------------------------------
# scikit-learn searches that log each candidate as it finishes
# ---------------------------------------------------------------------------------------------
class _MLflowSearchMixin:
    """Evaluate candidates one at a time; log each to a child run of ``parent_run``; skip the
    candidates whose keys are in ``skip_keys`` (already finished in an earlier run)."""

    parent_run: TrackedRun | None = None
    experiment: str = DEFAULT_EXPERIMENT
    skip_keys: frozenset = frozenset()
    search_name: str = "search"
    dataset = None  # the searched data, as an MLflow dataset

    def _candidates(self):  # pragma: no cover - defined by the concrete classes
        raise NotImplementedError

    progress: bool = False
    wave: int = 1  # candidates evaluated together (on a cluster: enough for every worker)

    def _run_search(self, evaluate_candidates):
        candidates = list(self._candidates())
        pending = [(n, p) for n, p in enumerate(candidates, start=1)
                   if candidate_key(p) not in self.skip_keys]
        for w in range(0, len(pending), max(1, int(self.wave))):
            wave = pending[w:w + max(1, int(self.wave))]
            started = time.time()
            start = time.perf_counter()
            results = evaluate_candidates([p for _, p in wave])
            first = len(results["params"]) - len(wave)
            for i, (n, params) in enumerate(wave, start=first):
                if self.parent_run is not None:
                    self._log_candidate(params, results, i, started)
                if self.progress:
                    score = results.get(f"mean_test_{REFIT_METRIC}",
                                        [float("nan")] * (i + 1))[i]
                    print(f"  candidate {n}/{len(candidates)} {describe_params(params)}: "
                          f"{REFIT_METRIC}={score:.4f} ({time.perf_counter() - start:.0f} s)",
                          flush=True)

    def _log_candidate(self, params, results, i, started: float):
        """A finished candidate as a child run spanning its folds' real time: the searched
        parameters, mean and std of each score, fit and score time per fold; the whole
        scikit-learn row (per-fold values) as ``cv_folds.json``."""
        run = TrackedRun.start(
            tracking_uri=self.parent_run.client.tracking_uri, experiment=self.experiment,
            run_name=f"{describe_params(params)} · {self.search_name}",
            parent_run_id=self.parent_run.run_id, start_time=started,
            tags={"kind": "candidate", "candidate_key": candidate_key(params),
                  "searched": json.dumps(sorted(params)), "eval_on": "cv"})
        run.log_params(params)
        row, metrics = {"params": params}, {}
        for key, values in results.items():
            if key == "params" or key.startswith("param_"):
                continue
            value = values[i]
            if isinstance(value, (int, float, np.floating, np.integer)):
                row[key] = float(value)
        for key, value in row.items():
            if key.startswith("mean_test_"):
                metrics[key[len("mean_test_"):]] = value
            elif key.startswith("std_test_"):
                metrics[key[len("std_test_"):] + "_std"] = value
        metrics["fit_time_s"] = row.get("mean_fit_time")
        metrics["score_time_s"] = row.get("mean_score_time")
        if self.dataset is not None:
            run.log_dataset(self.dataset, "cv")
        run.log_metrics(metrics, dataset=self.dataset)
        run.log_dict(json.loads(_canonical(row)), "cv_folds.json")
        run.end("FINISHED", end_time=time.time())


class MLflowGridSearchCV(_MLflowSearchMixin, GridSearchCV):
    """``GridSearchCV`` that logs every candidate to a child run of ``parent_run`` as soon as
    it is done, and skips the candidates in ``skip_keys``."""

    def _candidates(self):
        return ParameterGrid(self.param_grid)


class MLflowRandomizedSearchCV(_MLflowSearchMixin, RandomizedSearchCV):
    """``RandomizedSearchCV`` counterpart of :class:`MLflowGridSearchCV`."""

    def _candidates(self):
        return ParameterSampler(self.param_distributions, self.n_iter,
                                random_state=self.random_state)


def _short(v) -> str:
    if isinstance(v, (tuple, list)):
        return "-".join(map(str, v))
    return str(v)


def rank_candidates(table):
    """Add (or correct) ``rank_test_<score>`` for every ``mean_test_<score>`` column of a
    candidates table: 1 = best, ties share the best rank, failed (NaN) candidates last --
    as scikit-learn ranks them, but over *all* finished candidates."""
    for col in [c for c in table.columns if c.startswith("mean_test_")]:
        table["rank_test_" + col[len("mean_test_"):]] = (
            table[col].rank(ascending=False, method="min", na_option="bottom").astype(int))
    return table


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """Outcome of :func:`search`.

    Attributes
    ----------
    cv_results : pandas.DataFrame
        One row per finished candidate (read back from MLflow): its parameters
        (``param_*``), ``mean_test_*``, ``std_test_*``, ``split*_test_*``, fit times.
    best_params : dict
    best_score : float
        Mean CV ROC AUC of the best candidate.
    best_estimator : PneumoniaCNN or None
        Refit on all search data (None with ``refit=False``).
    holdout : dict or None
        Evaluation of ``best_estimator`` on the patient-grouped hold-out.
    parent_run_id : str
    resumed : int
        Candidates taken from an earlier, interrupted run of the same search.
    registration : RegistrationResult or None
        What ``register=`` did (the new version and where the ``champion`` alias is).
    """

    cv_results: object
    best_params: dict
    best_score: float
    best_estimator: object
    holdout: dict | None
    parent_run_id: str
    resumed: int
    registration: object = None


def search(data, param_grid=None, *, param_distributions=None, n_iter: int = 10,
           estimator=None, cv: int = 3, scoring=None, n_jobs: int | None = None,
           name: str = "search", experiment: str = DEFAULT_EXPERIMENT,
           tracking_uri: str | None = None, resume: bool = True, holdout: float = 0.2,
           refit: bool = True, random_state: int = 0, verbose: int = 1,
           register: str | None = None, cluster=None) -> SearchResult:
    """Search hyperparameters with patient-grouped CV, logging everything to MLflow.

    Parameters
    ----------
    data : str, path-like or ImageData
        Data folder (NORMAL/, PNEUMONIA/) or loaded data (patient ids in ``groups``).
    param_grid : dict or list of dict, default=None
        Grid of ``PneumoniaCNN`` parameters, e.g.
        ``{"filters": [(16, 32), (32, 64)], "augmentation": [None, "standard"]}``.
    param_distributions : dict, default=None
        Instead of a grid: distributions for a random search of ``n_iter`` candidates.
    n_iter : int, default=10
        Candidates of a random search.
    estimator : PneumoniaCNN, default=None
        Base estimator (default ``PneumoniaCNN()``); its tracking is turned off inside the
        CV (the search logs the candidates).
    cv : int, default=3
        Folds of ``StratifiedGroupKFold`` (shuffled with ``random_state``).
    scoring : dict, callable or "stress", default=None
        Scorers; default :func:`default_scoring`. ``"stress"`` uses
        :func:`pneumonia_cnn.analysis.stress_scoring`: the same four scores plus
        ``stress_roc_auc``, ``stress_sensitivity``, ``stress_specificity`` and
        ``stress_normal_shift`` of every fold under acquisition-like perturbations.
        ``roc_auc`` selects the best candidate.
    n_jobs : int, default=None
        Parallel fold fits (joblib). Child runs are logged by this process, under the parent.
    name : str, default="search"
        Name of the search; with the same grid, a later call resumes it.
    experiment : str, default="pneumonia-cnn"
        MLflow experiment.
    tracking_uri : str, default=None
        See :func:`pneumonia_cnn.tracking.resolve_tracking_uri`.
    resume : bool, default=True
        Skip candidates already finished by an earlier unfinished run of this search.
    holdout : float, default=0.2
        Fraction of patients kept out of the search to evaluate the refit best model
        (0 for none).
    refit : bool, default=True
        Refit the best candidate on all search data and log it as a child run.
    random_state : int, default=0
        Seeds the hold-out split, the CV shuffle and random-search sampling.
    verbose : int, default=1
        Print progress.
    register : str, default=None
        Register the refit best model as a new version of this registered model; the alias
        ``champion`` moves to it only if its hold-out ROC AUC beats the current champion's
        (see :func:`pneumonia_cnn.tracking.register`). Needs ``refit=True``.
    cluster : str or dask.distributed.Client, default=None
        Run the fold fits on a Dask cluster (:mod:`pneumonia_cnn.cluster`): a scheduler
        address ``"tcp://host:8786"``, ``"local"`` / ``"local:N"`` (a LocalCluster of N
        worker processes here) or a Client. The images go to every worker once; this
        process logs each candidate when its wave of candidates returns (as many as keep
        every worker busy). None: in this process (``n_jobs`` as given).

    Returns
    -------
    SearchResult
    """
    if register and not refit:
        raise ValueError("register= needs refit=True: only the refit best model is logged")
    if (param_grid is None) == (param_distributions is None):
        raise ValueError("give exactly one of param_grid and param_distributions")
    base = clone(estimator) if estimator is not None else PneumoniaCNN()
    base.set_params(tracking=False)
    space = param_grid if param_grid is not None else param_distributions
    searched = set().union(*(s.keys() for s in (space if isinstance(space, list) else [space])))
    unknown = searched - set(base.get_params())
    if unknown:
        raise ValueError(f"unknown PneumoniaCNN parameter(s) in the search space: "
                         f"{sorted(unknown)}; see PneumoniaCNN().get_params()")
    check_space(base, param_grid, param_distributions, n_iter, random_state)

    if cluster is not None and "image_size" in searched:
        raise ValueError("searching image_size on a cluster is not supported (the images "
                         "are sent to the workers decoded, at one size): run one search per "
                         "image size, or search it without cluster=")
    with contextlib.ExitStack() as stack:
        client = None
        if cluster is not None:  # before any data or run: a dead scheduler fails at once
            client = stack.enter_context(connect(cluster))
        if not isinstance(data, ImageData):
            data = load_data(data, base.input_size(), role="train", verbose=verbose)
        if holdout:
            search_idx, holdout_idx = grouped_split(data.y, data.groups, holdout,
                                                    random_state=random_state)
        else:
            search_idx, holdout_idx = np.arange(len(data)), None
        # Searching over image_size needs the files (decoded per candidate, cached); else pixels.
        X_all = data.paths if "image_size" in searched else data.X
        X, y, groups = X_all[search_idx], data.y[search_idx], data.groups[search_idx]
        if cluster is not None:  # shipped to the workers: in memory, and one object per array
            X, y = np.ascontiguousarray(np.asarray(X)), np.ascontiguousarray(y)

        if scoring == "stress":  # within distribution and under shift, in one pass per fold
            scoring = stress_scoring
        scoring = scoring or default_scoring()
        splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=random_state)
        spec = {"name": name, "space": space, "cv": cv, "holdout": holdout,
                "n_iter": n_iter if param_distributions is not None else None,
                "random_state": random_state, "data_hash": _data_hash(data),
                "base": {k: v for k, v in base.get_params().items() if k != "callbacks"}}
        search_hash = hashlib.sha1(_canonical(spec).encode()).hexdigest()[:12]

        data_name = data_label(getattr(data, "root", None))
        search_ds = image_dataset(f"{data_name} (minus hold-out)" if holdout_idx is not None
                                  else data_name, data.X[search_idx], y,
                                  getattr(data, "root", None), groups)
        holdout_ds = None
        if holdout_idx is not None:
            holdout_ds = image_dataset(f"{data_name} (search hold-out)", data.X[holdout_idx],
                                       data.y[holdout_idx], getattr(data, "root", None),
                                       data.groups[holdout_idx])
        parent, done = _parent_run(name, search_hash, spec, experiment, tracking_uri, resume,
                                   data_name, base, sorted(searched))
        if verbose:
            print(f"Search {name!r}: parent run {parent.run_id}"
                  + (f", resuming with {len(done)} finished candidate(s)" if done else ""),
                  flush=True)
        if client is not None:  # the folds as arrays, sent to every worker with the images
            splitter = list(splitter.split(X, y, groups))
        common = dict(scoring=scoring, cv=splitter, refit=False, n_jobs=n_jobs,
                      error_score=np.nan, verbose=max(verbose - 1, 0))
        if param_grid is not None:
            inner = MLflowGridSearchCV(base, param_grid, **common)
        else:
            inner = MLflowRandomizedSearchCV(base, param_distributions, n_iter=n_iter,
                                             random_state=random_state, **common)
        inner.parent_run, inner.experiment, inner.skip_keys = parent, experiment, frozenset(done)
        inner.search_name, inner.dataset = name, search_ds
        inner.progress = bool(verbose)
        try:
            if not done:
                parent.log_dataset(search_ds, "cv")
                if holdout_ds is not None:
                    parent.log_dataset(holdout_ds, "holdout")
            if len(done) < len(list(inner._candidates())):
                _fit_inner(inner, X, y, groups, client, cv, verbose)
            table = rank_candidates(read_candidates(parent))
            best = table.sort_values([f"rank_test_{REFIT_METRIC}", "candidate_key"]).iloc[0]
            best_params = json.loads(best["candidate_params"])
            best_params = {k: (tuple(v) if k == "filters" else v) for k, v in best_params.items()}
            _log_parent_results(parent, table, sorted(searched), best)
            result = SearchResult(cv_results=table, best_params=best_params,
                                  best_score=float(best[f"mean_test_{REFIT_METRIC}"]),
                                  best_estimator=None, holdout=None, parent_run_id=parent.run_id,
                                  resumed=len(done))
            if refit:
                result.best_estimator, result.holdout = _refit(
                    parent, base, best_params, X, y, groups, data, holdout_idx, experiment,
                    name, search_ds, holdout_ds)
                if register:
                    result.registration = register_model(
                        f"models:/{result.best_estimator.mlflow_model_id_}", register,
                        tracking_uri=parent.client.tracking_uri)
                    if verbose:
                        print(f"Registered {register!r} version {result.registration.version}; "
                              f"{result.registration.message}", flush=True)
        except BaseException as exc:
            parent.end_after_error(exc)
            raise
        parent.end("FINISHED")
        if verbose:
            print(f"Best {REFIT_METRIC} {result.best_score:.4f} with {best_params}", flush=True)
        return result


def _fit_inner(inner, X, y, groups, client, n_splits: int, verbose: int) -> None:
    """The scikit-learn search, here or on the cluster of ``client`` (joblib's Dask backend;
    the images, labels and fold indices sent to every worker once; waves of candidates that
    fill the workers)."""
    if client is None:
        inner.fit(X, y, groups=groups)
        return
    inner.wave = wave_size(client, n_splits)
    inner.n_jobs = -1
    if verbose:
        print(f"On the Dask cluster {client.scheduler.address}: {total_threads(client)} "
              f"worker thread(s), {inner.wave} candidate(s) at a time", flush=True)
    # Everything a task reads is broadcast: joblib would otherwise send each fold's index
    # array (over 1 kB) to one worker only, and a task whose inputs died with that worker
    # is cancelled instead of rerun.
    folds = [part for split in inner.cv for part in split]
    from concurrent.futures import (
        CancelledError,  # distributed's FutureCancelledError too
    )

    from distributed import KilledWorker

    try:
        with dask_backend(client, [X, y, *folds]):
            inner.fit(X, y, groups=groups)
    except (CancelledError, KilledWorker) as exc:
        raise ClusterError(
            f"the Dask cluster lost work it could not redo ({type(exc).__name__}: "
            f"{str(exc)[:200]}); the candidates finished so far are logged: run the same "
            "search again to resume it") from exc


def check_space(base, param_grid, param_distributions, n_iter, random_state) -> None:
    """Every candidate's settings are valid, before any data is loaded or fit (a grid such
    as ``{"filters": [8, 16]}``, ints where tuples are meant, would fail every fit)."""
    if param_grid is not None:
        candidates = ParameterGrid(param_grid)
    else:
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
            raise ValueError(f"n_iter must be an int >= 1 (the number of random candidates), "
                             f"got {n_iter!r}")
        candidates = ParameterSampler(param_distributions, n_iter, random_state=random_state)
    for params in candidates:
        try:
            clone(base).set_params(**params).check_params()
        except ValueError as exc:
            raise ValueError(f"search candidate {describe_params(params)}: {exc}") from None


def _data_hash(data: ImageData) -> str:
    """What a resumed search must find again: every film's pixels (not its name: a folder
    whose files were replaced under the same names is other data) and label, in order."""
    h = hashlib.sha1()
    for fp, y in zip(image_fingerprints(data.X), data.y):
        h.update(f"{fp}|{y}".encode())
    return h.hexdigest()[:12]


def _parent_run(name, search_hash, spec, experiment, tracking_uri, resume, data_name, base,
                searched):
    """Find the unfinished parent run of the same search (to resume), or start one."""
    run = TrackedRun.start(tracking_uri=tracking_uri, experiment=experiment,
                           run_name=f"search {name} · {data_name}",
                           tags={"kind": "search", "search.name": name,
                                 "search.hash": search_hash, "eval_on": "cv"})
    client = run.client
    done = {}
    if resume:
        exp_id = client.get_run(run.run_id).info.experiment_id
        earlier = client.search_runs(
            [exp_id], filter_string=f"tags.`search.hash` = '{search_hash}' and "
                                    f"attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"])
        earlier = [r for r in earlier if r.info.run_id != run.run_id]
        live = [r for r in earlier if run_is_live(r)]
        if live:  # another process is running this search now: never merge into it
            client.delete_run(run.run_id)
            r = live[0]
            raise ValueError(
                f"a search named {name!r} with the same grid and data is running now "
                f"(parent run {r.info.run_id}, process "
                f"{r.data.tags.get('pneumonia_cnn.pid', '?')} on "
                f"{r.data.tags.get('pneumonia_cnn.host', 'another machine')}): wait for it "
                "to finish, or give this search another name. If that process is gone, "
                "`pneumonia-cnn close-runs` closes its runs and the search can resume")
        if earlier:
            client.delete_run(run.run_id)  # continue the earlier parent instead
            run = TrackedRun(client, earlier[0].info.run_id)
            run.reopen()
            # a refit (or candidate) whose process was killed outright is still RUNNING:
            # close it, so that the tree has one live refit, the new one
            close_stale_runs(client.tracking_uri, experiment, parent_run_id=run.run_id)
            done = {r.data.tags["candidate_key"]: r for r in _children(run)}
    if not done:
        # the parameters the candidates share (the searched ones are the candidates' own)
        shared = {k: v for k, v in model_params(base).items() if k not in searched}
        run.log_params({**shared, "data": data_name,
                        "search.space": spec["space"],
                        "search.cv": f"StratifiedGroupKFold(n_splits={spec['cv']})",
                        "search.holdout": spec["holdout"], "search.n_iter": spec["n_iter"],
                        "search.random_state": spec["random_state"]})
        run.log_environment()
    return run, done


def _children(parent: TrackedRun, kind: str = "candidate"):
    client = parent.client
    exp_id = client.get_run(parent.run_id).info.experiment_id
    return client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}' and "
                                f"tags.kind = '{kind}' and "
                                f"attributes.status = 'FINISHED'",
        max_results=10000)


def read_candidates(parent: TrackedRun):
    """The finished candidates of a search as a DataFrame (read back from MLflow): the
    scikit-learn ``cv_results_`` columns of each (from its ``cv_folds.json``), its
    ``run_id``, ``candidate_key`` and ``candidate_params`` (JSON)."""
    import tempfile

    import pandas as pd

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in _children(parent):
            local = parent.client.download_artifacts(r.info.run_id, "cv_folds.json", tmp)
            with open(local) as f:
                folds = json.load(f)
            params = folds.pop("params")
            row = {"run_id": r.info.run_id, "candidate_key": r.data.tags["candidate_key"],
                   "candidate_params": json.dumps(params)}
            row.update({f"param_{k}": _short(v) for k, v in params.items()})
            row.update(folds)
            rows.append(row)
    if not rows:
        raise RuntimeError("no candidate finished: see the errors above (every fit failed?)")
    return pd.DataFrame(rows)


def _parse_scalar(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def _log_parent_results(parent: TrackedRun, table, searched: list, best) -> None:
    """The final ranks on every candidate and the winner's tag, the winner's scores on the
    parent, ``cv_results.csv`` and the plot. Run again on resume: ranks and tag follow."""
    import matplotlib.pyplot as plt
    from mlflow.exceptions import MlflowException

    client = parent.client
    for _, row in table.iterrows():
        rid = row["run_id"]
        client.log_metric(rid, "rank", int(row[f"rank_test_{REFIT_METRIC}"]))
        if rid == best["run_id"]:
            client.set_tag(rid, "best_candidate", "true")
        else:
            try:
                client.delete_tag(rid, "best_candidate")
            except MlflowException:
                pass  # it never was the best
    scores = {c[len("mean_test_"):]: best[c] for c in table.columns
              if c.startswith("mean_test_")}
    scores.update({c[len("std_test_"):] + "_std": best[c] for c in table.columns
                   if c.startswith("std_test_")})
    parent.log_metrics({**scores, "n_candidates": len(table)})
    params = json.loads(best["candidate_params"])
    parent.set_tags({"best_run_id": best["run_id"], "best_candidate": describe_params(params)})
    parent.log_text(table.drop(columns=["candidate_params"]).to_csv(index=False),
                    "cv_results.csv")
    fig = plot_search(table, searched)
    parent.log_figure(fig, "plots/search_roc_auc.png")
    plt.close(fig)


def plot_search(table, searched: list, metric: str = REFIT_METRIC):
    """Mean CV score against the searched parameters: a heat map over the first two, a bar
    chart for one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    col = f"mean_test_{metric}"
    if len(searched) >= 2:
        a, b = searched[0], searched[1]
        pivot = table.pivot_table(index=f"param_{a}", columns=f"param_{b}", values=col,
                                  aggfunc="max")
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * pivot.shape[1], 1.2 + 0.7 * pivot.shape[0]))
        sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis", ax=ax)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
    else:
        a = searched[0]
        order = table.sort_values(col)
        fig, ax = plt.subplots(figsize=(5, 0.9 + 0.4 * len(order)))
        ax.barh(order[f"param_{a}"].astype(str), order[col],
                xerr=order.get(f"std_test_{metric}"), color="tab:blue")
        ax.set_xlabel(f"mean CV {metric}")
        ax.set_ylabel(a)
        ax.set_xlim(max(0.0, float(order[col].min()) - 0.1), 1.0)
    ax.set_title(f"Mean CV {metric} (patient-grouped)")
    fig.tight_layout()
    return fig


def _refit(parent, base, best_params, X, y, groups, data, holdout_idx, experiment, name,
           search_ds, holdout_ds):
    """Refit the winner on all search data as a child run (one logged model), evaluate and
    stress-test it on the search hold-out, with the metrics linked to the model."""
    est = clone(base).set_params(**best_params)
    run = TrackedRun.start(tracking_uri=parent.client.tracking_uri, experiment=experiment,
                           run_name=f"best {describe_params(best_params)} · {name}",
                           parent_run_id=parent.run_id,
                           tags={"kind": "refit", "eval_on": "search hold-out"})
    run.log_params({**model_params(est), "data": search_ds.name})
    est.set_params(callbacks=[*(base.callbacks or []), MLflowLogger(run)])
    try:
        run.log_dataset(search_ds, "training")
        est.fit(X, y, groups=groups)
        est.mlflow_run_id_ = run.run_id
        est.mlflow_model_id_ = log_model(run, est, model_name(run.name))
        run.log_fit(est)
        holdout = None
        if holdout_idx is not None:
            Xh = data.X[holdout_idx] if X.dtype.kind != "U" else data.paths[holdout_idx]
            holdout = evaluate(est, Xh, data.y[holdout_idx], track=False)
            run.log_dataset(holdout_ds, "holdout", model_id=est.mlflow_model_id_)
            run.log_evaluation(holdout, model_id=est.mlflow_model_id_, dataset=holdout_ds)
            run.rank_check(len(holdout_idx))
            if len(np.unique(data.y[holdout_idx])) == 2:
                log_stress(run, est, est.prepare_images(data.X[holdout_idx]),
                           data.y[holdout_idx], holdout_ds)
        else:
            run.unrank("no search hold-out (holdout=0)")
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    est.set_params(callbacks=base.callbacks)
    return est, holdout
