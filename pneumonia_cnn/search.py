"""Grid and random searches with patient-grouped CV, every candidate logged to MLflow.

:func:`search` runs scikit-learn's :class:`~sklearn.model_selection.GridSearchCV` (or
:class:`~sklearn.model_selection.RandomizedSearchCV`) over any ``PneumoniaCNN``
parameters with :class:`~sklearn.model_selection.StratifiedGroupKFold` on patient ids, and
logs, as in MLflow's scikit-learn examples:

- one **parent run** per search (the grid, the CV, ``cv_results.csv``, a plot of the score
  against the searched parameters, the best score and parameters);
- one **child run per candidate**, logged as soon as the candidate is done (its parameters,
  mean / std / per-fold value of every score, fit and score times);
- one child run for the **refit best model** (per-epoch metrics, model, and its evaluation
  on a patient-grouped hold-out that the search never saw).

The results are read back from MLflow with ``search_runs`` filtered on the parent run id,
which is also how an interrupted search **resumes**: run it again with the same name and
grid, and candidates already finished are skipped.
"""

from __future__ import annotations

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

from .data import ImageData, grouped_split, load_image_folder
from .tracking import DEFAULT_EXPERIMENT, MLflowLogger, TrackedRun

__all__ = ["MLflowGridSearchCV", "MLflowRandomizedSearchCV", "SearchResult", "default_scoring",
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

    def _candidates(self):  # pragma: no cover - defined by the concrete classes
        raise NotImplementedError

    progress: bool = False

    def _run_search(self, evaluate_candidates):
        candidates = list(self._candidates())
        for n, params in enumerate(candidates, start=1):
            if candidate_key(params) in self.skip_keys:
                continue
            start = time.perf_counter()
            results = evaluate_candidates([params])
            i = len(results["params"]) - 1
            if self.parent_run is not None:
                self._log_candidate(params, results, i)
            if self.progress:
                score = results.get(f"mean_test_{REFIT_METRIC}", [float("nan")] * (i + 1))[i]
                print(f"  candidate {n}/{len(candidates)} "
                      f"{', '.join(f'{k}={_short(v)}' for k, v in params.items())}: "
                      f"{REFIT_METRIC}={score:.4f} ({time.perf_counter() - start:.0f} s)",
                      flush=True)

    def _log_candidate(self, params, results, i):
        run = TrackedRun.start(
            tracking_uri=self.parent_run.client.tracking_uri, experiment=self.experiment,
            run_name="candidate-" + ",".join(f"{k}={_short(v)}" for k, v in params.items()),
            parent_run_id=self.parent_run.run_id,
            tags={"pneumonia_cnn.kind": "candidate", "candidate_key": candidate_key(params)})
        base = {k: v for k, v in self.estimator.get_params().items()
                if k not in ("callbacks", "metrics")}
        run.log_params({**base, **params, "searched": sorted(params)})
        metrics = {}
        for key, values in results.items():
            if key.startswith(("mean_", "std_", "split", "rank_")):
                value = values[i]
                if isinstance(value, (int, float, np.floating, np.integer)):
                    metrics[key] = float(value)
        run.log_metrics(metrics)
        run.end("FINISHED")


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
    """

    cv_results: object
    best_params: dict
    best_score: float
    best_estimator: object
    holdout: dict | None
    parent_run_id: str
    resumed: int


def search(data, param_grid=None, *, param_distributions=None, n_iter: int = 10,
           estimator=None, cv: int = 3, scoring=None, n_jobs: int | None = None,
           name: str = "search", experiment: str = DEFAULT_EXPERIMENT,
           tracking_uri: str | None = None, resume: bool = True, holdout: float = 0.2,
           refit: bool = True, random_state: int = 0, verbose: int = 1) -> SearchResult:
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
        :func:`pneumonia_cnn.robustness.stress_scoring`: the same four scores plus
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

    Returns
    -------
    SearchResult
    """
    from .estimator import PneumoniaCNN
    from .evaluation import evaluate

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

    if not isinstance(data, ImageData):
        data = load_image_folder(data, base.image_size, verbose=verbose)
    if holdout:
        search_idx, holdout_idx = grouped_split(data.y, data.groups, holdout,
                                                random_state=random_state)
    else:
        search_idx, holdout_idx = np.arange(len(data)), None
    # Searching over image_size needs the files (decoded per candidate, cached); else pixels.
    X_all = data.paths if "image_size" in searched else data.X
    X, y, groups = X_all[search_idx], data.y[search_idx], data.groups[search_idx]

    if scoring == "stress":  # within distribution and under shift, in one pass per fold
        from .robustness import stress_scoring as scoring
    scoring = scoring or default_scoring()
    splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=random_state)
    spec = {"name": name, "space": space, "cv": cv, "holdout": holdout,
            "n_iter": n_iter if param_distributions is not None else None,
            "random_state": random_state, "data_hash": _data_hash(data),
            "base": {k: v for k, v in base.get_params().items() if k != "callbacks"}}
    search_hash = hashlib.sha1(_canonical(spec).encode()).hexdigest()[:12]

    parent, done = _parent_run(name, search_hash, spec, experiment, tracking_uri, resume)
    if verbose:
        print(f"Search {name!r}: parent run {parent.run_id}"
              + (f", resuming with {len(done)} finished candidate(s)" if done else ""),
              flush=True)
    common = dict(scoring=scoring, cv=splitter, refit=False, n_jobs=n_jobs,
                  error_score=np.nan, verbose=max(verbose - 1, 0))
    if param_grid is not None:
        inner = MLflowGridSearchCV(base, param_grid, **common)
    else:
        inner = MLflowRandomizedSearchCV(base, param_distributions, n_iter=n_iter,
                                         random_state=random_state, **common)
    inner.parent_run, inner.experiment, inner.skip_keys = parent, experiment, frozenset(done)
    inner.progress = bool(verbose)
    try:
        if len(done) < len(list(inner._candidates())):
            inner.fit(X, y, groups=groups)
        table = read_candidates(parent)
        best = table.sort_values(f"mean_test_{REFIT_METRIC}", ascending=False).iloc[0]
        best_params = json.loads(best["candidate_params"])
        best_params = {k: (tuple(v) if k == "filters" else v) for k, v in best_params.items()}
        _log_parent_results(parent, table, sorted(searched))
        result = SearchResult(cv_results=table, best_params=best_params,
                              best_score=float(best[f"mean_test_{REFIT_METRIC}"]),
                              best_estimator=None, holdout=None, parent_run_id=parent.run_id,
                              resumed=len(done))
        if refit:
            result.best_estimator, result.holdout = _refit(
                parent, base, best_params, X, y, groups, data, holdout_idx, experiment,
                evaluate)
    except BaseException as exc:
        parent.end_after_error(exc)
        raise
    parent.log_metrics({f"best_mean_test_{REFIT_METRIC}": result.best_score,
                        "n_candidates": len(table)})
    parent.log_params({f"best.{k}": v for k, v in best_params.items()})
    parent.end("FINISHED")
    if verbose:
        print(f"Best {REFIT_METRIC} {result.best_score:.4f} with {best_params}", flush=True)
    return result


def _data_hash(data: ImageData) -> str:
    h = hashlib.sha1()
    for p, y in zip(data.paths, data.y):
        h.update(f"{p}|{y}".encode())
    return h.hexdigest()[:12]


def _parent_run(name, search_hash, spec, experiment, tracking_uri, resume):
    """Find the unfinished parent run of the same search (to resume), or start one."""
    run = TrackedRun.start(tracking_uri=tracking_uri, experiment=experiment,
                           run_name=f"search-{name}",
                           tags={"pneumonia_cnn.kind": "search", "search.name": name,
                                 "search.hash": search_hash})
    client = run.client
    done = {}
    if resume:
        exp_id = client.get_run(run.run_id).info.experiment_id
        earlier = client.search_runs(
            [exp_id], filter_string=f"tags.`search.hash` = '{search_hash}' and "
                                    f"attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"])
        earlier = [r for r in earlier if r.info.run_id != run.run_id]
        if earlier:
            client.delete_run(run.run_id)  # continue the earlier parent instead
            run = TrackedRun(client, earlier[0].info.run_id)
            client.update_run(run.run_id, status="RUNNING")
            done = {r.data.tags["candidate_key"]: r for r in _children(run)}
    if not done:
        run.log_params({"search.name": name, "search.space": spec["space"],
                        "search.cv": f"StratifiedGroupKFold(n_splits={spec['cv']})",
                        "search.holdout": spec["holdout"], "search.n_iter": spec["n_iter"],
                        "search.random_state": spec["random_state"],
                        "data.hash": spec["data_hash"]})
    return run, done


def _children(parent: TrackedRun, kind: str = "candidate"):
    client = parent.client
    exp_id = client.get_run(parent.run_id).info.experiment_id
    return client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}' and "
                                f"tags.`pneumonia_cnn.kind` = '{kind}' and "
                                f"attributes.status = 'FINISHED'",
        max_results=10000)


def read_candidates(parent: TrackedRun):
    """The finished candidates of a search as a DataFrame (read back from MLflow)."""
    import pandas as pd

    rows = []
    for r in _children(parent):
        searched = json.loads(r.data.params["searched"])
        params = {k: json.loads(r.data.params[k]) if r.data.params[k][:1] in "[{" else
                  _parse_scalar(r.data.params[k]) for k in searched}
        row = {"run_id": r.info.run_id, "candidate_key": r.data.tags["candidate_key"],
               "candidate_params": json.dumps(params)}
        row.update({f"param_{k}": _short(v) for k, v in params.items()})
        row.update(r.data.metrics)
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


def _log_parent_results(parent: TrackedRun, table, searched: list) -> None:
    import matplotlib.pyplot as plt

    parent.log_text(table.to_csv(index=False), "cv_results.csv")
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


def _refit(parent, base, best_params, X, y, groups, data, holdout_idx, experiment, evaluate):
    run = TrackedRun.start(tracking_uri=parent.client.tracking_uri, experiment=experiment,
                           run_name="refit-best", parent_run_id=parent.run_id,
                           tags={"pneumonia_cnn.kind": "refit"})
    est = clone(base).set_params(**best_params)
    run.log_params({k: v for k, v in est.get_params().items() if k != "callbacks"})
    est.set_params(callbacks=[*(base.callbacks or []), MLflowLogger(run)])
    try:
        est.fit(X, y, groups=groups)
        run.log_fit(est)
        run.log_model(est)
        holdout = None
        if holdout_idx is not None:
            holdout = evaluate(est, data.X[holdout_idx] if X.dtype.kind != "U" else
                               data.paths[holdout_idx], data.y[holdout_idx])
            run.log_evaluation(holdout, prefix="holdout_")
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    est.set_params(callbacks=base.callbacks)
    return est, holdout
