"""Grid searches logged to MLflow: run tree, read-back, resume after an interruption."""

import json

import mlflow
import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.tracking import _search as search_mod
from pneumonia_cnn.tracking import candidate_key, search

GRID = {"filters": [(4,), (4, 8)], "augmentation": [None, "light"]}


def _runs(uri, parent_id, kind):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("pneumonia-cnn")
    return client.search_runs([exp.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parent_id}' and tags.kind = '{kind}'"))


@pytest.mark.slow
def test_search_logs_parent_children_and_refit(synthetic_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    res = search(synthetic_dir, GRID, estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2,
                 tracking_uri=uri, name="grid", holdout=0.25, verbose=0)
    assert len(res.cv_results) == 4
    assert res.best_score == pytest.approx(res.cv_results["mean_test_roc_auc"].max())
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_candidates"] == 4
    assert {a.path for a in client.list_artifacts(res.parent_run_id)} >= {"cv_results.csv",
                                                                            "plots"}
    children = _runs(uri, res.parent_run_id, "candidate")
    assert len(children) == 4
    seen = {(c.data.params["filters"], c.data.params["augmentation"]) for c in children}
    assert seen == {("[4]", "None"), ("[4]", "light"), ("[4, 8]", "None"), ("[4, 8]", "light")}
    table = res.cv_results.set_index("run_id")
    for c in children:
        # only the searched parameters; scores under the names every run uses
        assert set(c.data.params) == {"filters", "augmentation"}
        row = table.loc[c.info.run_id]
        for score in ("roc_auc", "accuracy", "sensitivity", "specificity"):
            assert c.data.metrics[score] == pytest.approx(row[f"mean_test_{score}"])
            assert c.data.metrics[f"{score}_std"] == pytest.approx(row[f"std_test_{score}"])
            assert not any(k.startswith(("split", "mean_", "rank_test")) for k in c.data.metrics)
        assert c.data.metrics["fit_time_s"] > 0
        # the name leads with the searched values, then the search
        filters = "-".join(map(str, json.loads(c.data.params["filters"])))
        assert c.info.run_name == (f"aug={c.data.params['augmentation']} filters={filters}"
                                   " · grid")
        # the run spans its folds: at least the time spent fitting them
        duration = (c.info.end_time - c.info.start_time) / 1000
        assert duration >= 2 * c.data.metrics["fit_time_s"] * 0.9
        # per-fold values are in cv_folds.json
        folds = mlflow.artifacts.load_dict(f"{c.info.artifact_uri}/cv_folds.json")
        assert "split0_test_roc_auc" in folds and "split1_test_roc_auc" in folds
    # final ranks over all candidates, as scikit-learn ranks them, and one marked winner
    expected = res.cv_results["mean_test_roc_auc"].rank(ascending=False, method="min")
    assert list(res.cv_results["rank_test_roc_auc"]) == list(expected.astype(int))
    for c in children:
        assert c.data.metrics["rank"] == table.loc[c.info.run_id, "rank_test_roc_auc"]
    winners = [c for c in children if c.data.tags.get("best_candidate") == "true"]
    assert len(winners) == 1 and winners[0].data.metrics["rank"] == 1
    assert parent.data.tags["best_run_id"] == winners[0].info.run_id
    assert parent.data.metrics["roc_auc"] == pytest.approx(res.best_score)
    csv = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/cv_results.csv")
    assert "rank_test_roc_auc" in csv.splitlines()[0]
    refit = _runs(uri, res.parent_run_id, "refit")
    assert len(refit) == 1
    rid = refit[0].info.run_id
    assert refit[0].info.run_name.startswith("best aug=") and "roc_auc" in refit[0].data.metrics
    assert "stress_roc_auc" in refit[0].data.metrics
    assert len(client.get_metric_history(rid, "train/loss")) == 1
    paths = {a.path for a in client.list_artifacts(rid, "evaluation")}
    assert "evaluation/confusion_matrix.png" in paths and "evaluation/roc_curve.png" in paths
    assert res.best_estimator.predict(np.zeros((2, 32, 32, 1), np.uint8)).shape == (2,)
    # the refit's model carries its hold-out metrics (Models tab)
    logged = client.get_logged_model(res.best_estimator.mlflow_model_id_)
    assert {m.key for m in logged.metrics} >= {"roc_auc", "sensitivity", "stress_roc_auc"}


def test_ranks_are_final_over_all_candidates():
    """Ranks computed at the end, over every candidate (the defect: each candidate was ranked
    among those finished before it, so two candidates both read rank 1)."""
    import pandas as pd

    from pneumonia_cnn.tracking import rank_candidates

    table = pd.DataFrame({"mean_test_roc_auc": [0.7, 0.9, float("nan"), 0.9, 0.8]})
    assert list(rank_candidates(table)["rank_test_roc_auc"]) == [4, 1, 5, 1, 3]


@pytest.mark.slow
def test_interrupted_search_resumes_without_redoing_candidates(synthetic_dir, tmp_path,
                                                               monkeypatch):
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    kw = dict(estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2, tracking_uri=uri,
              name="resume", holdout=0, verbose=0)
    real_log = search_mod._MLflowSearchMixin._log_candidate
    logged = []

    def interrupt_after_two(self, params, results, i, started):
        real_log(self, params, results, i, started)
        logged.append(candidate_key(params))
        if len(logged) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(search_mod._MLflowSearchMixin, "_log_candidate", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        search(synthetic_dir, GRID, **kw)
    monkeypatch.setattr(search_mod._MLflowSearchMixin, "_log_candidate", real_log)

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("pneumonia-cnn")
    parents = client.search_runs([exp.experiment_id], "tags.kind = 'search'")
    assert [p.info.status for p in parents] == ["KILLED"]

    evaluated = []
    real_fit = PneumoniaCNN.fit

    def counting_fit(self, X, y=None, **k):
        evaluated.append(candidate_key({"augmentation": self.augmentation,
                                        "filters": self.filters}))
        return real_fit(self, X, y, **k)

    monkeypatch.setattr(PneumoniaCNN, "fit", counting_fit)
    res = search(synthetic_dir, GRID, **kw)
    assert res.resumed == 2 and res.parent_run_id == parents[0].info.run_id
    assert len(res.cv_results) == 4
    # the two finished candidates were not fitted again (2 folds each for the others + refit)
    assert not set(evaluated[:-1]) & set(logged)
    assert len(evaluated) == 2 * 2 + 1
    assert client.get_run(res.parent_run_id).info.status == "FINISHED"


def test_read_back_params_round_trip(synthetic_dir, tmp_path):
    res = search(synthetic_dir, {"filters": [(4,)], "dropout": [0.0, 0.5]},
                 estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2,
                 tracking_uri=f"sqlite:///{tmp_path / 'p.db'}", holdout=0, refit=False,
                 verbose=0)
    params = [json.loads(p) for p in res.cv_results["candidate_params"]]
    assert sorted(p["dropout"] for p in params) == [0.0, 0.5]
    assert res.best_estimator is None


def test_unknown_parameter_is_rejected(synthetic_dir):
    with pytest.raises(ValueError, match="unknown PneumoniaCNN parameter"):
        search(synthetic_dir, {"filterz": [(4,)]}, verbose=0)


@pytest.mark.slow
def test_a_resumed_search_closes_the_refit_a_killed_process_left_running(synthetic_dir,
                                                                         tmp_path,
                                                                         monkeypatch):
    import subprocess
    import sys

    from pneumonia_cnn.tracking import TrackedRun

    uri = f"sqlite:///{tmp_path / 'k.db'}"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()

    def killed_refit(parent, *args, **kwargs):  # what SIGKILL during a refit leaves behind
        run = TrackedRun.start(tracking_uri=uri, run_name="refit", parent_run_id=parent.run_id,
                               tags={"kind": "refit", "pneumonia_cnn.pid": dead})
        raise KeyboardInterrupt(run.run_id)

    kw = dict(estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2, tracking_uri=uri,
              name="stale", holdout=0.25, verbose=0)
    monkeypatch.setattr(search_mod, "_refit", killed_refit)
    with pytest.raises(KeyboardInterrupt) as info:
        search(synthetic_dir, {"dropout": [0.0]}, **kw)
    stale = str(info.value)
    client = mlflow.MlflowClient(uri)
    assert client.get_run(stale).info.status == "RUNNING"
    monkeypatch.undo()
    res = search(synthetic_dir, {"dropout": [0.0]}, **kw)
    assert client.get_run(stale).info.status == "KILLED"
    refits = _runs(uri, res.parent_run_id, "refit")
    assert sorted(r.info.status for r in refits) == ["FINISHED", "KILLED"]


@pytest.mark.slow
def test_a_search_running_now_is_not_merged_into(synthetic_dir, tmp_path):
    """Two searches with the same name a few seconds apart merged into one parent: every
    candidate twice, two refits (issue 22, finding 13). A live one is refused, by name."""
    from pneumonia_cnn.tracking import TrackedRun

    uri = f"sqlite:///{tmp_path / 'live.db'}"
    kw = dict(estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2, tracking_uri=uri,
              name="twice", holdout=0, verbose=0)
    search(synthetic_dir, {"dropout": [0.0]}, **kw)  # learn the search's hash
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("pneumonia-cnn")
    (first,) = client.search_runs([exp.experiment_id], "tags.kind = 'search'")
    # the same search, running now in this (live) process
    live = TrackedRun.start(tracking_uri=uri, run_name="search twice",
                            tags={"kind": "search", "search.name": "twice",
                                  "search.hash": first.data.tags["search.hash"]})
    with pytest.raises(ValueError, match="is running now .* give this search another name"):
        search(synthetic_dir, {"dropout": [0.0]}, **kw)
    parents = client.search_runs([exp.experiment_id], "tags.kind = 'search'")
    assert sorted(p.info.run_id for p in parents) == sorted([first.info.run_id, live.run_id])
    assert client.get_run(live.run_id).info.status == "RUNNING"
    live.end("KILLED")  # once it ended unfinished, it is resumed, not refused
    res = search(synthetic_dir, {"dropout": [0.0]}, **kw)
    assert res.parent_run_id == live.run_id


@pytest.mark.slow
def test_a_search_over_changed_pixels_is_not_resumed(synthetic_dir, tmp_path, monkeypatch):
    """Same file names and labels, other pixels: old and new scores must not be ranked
    together (issue 22, finding 5)."""
    import shutil

    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    uri = f"sqlite:///{tmp_path / 'px.db'}"
    kw = dict(estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2, tracking_uri=uri,
              name="pixels", holdout=0, verbose=0)
    real_log = search_mod._MLflowSearchMixin._log_candidate

    def interrupt(self, params, results, i, started):
        real_log(self, params, results, i, started)
        raise KeyboardInterrupt

    monkeypatch.setattr(search_mod._MLflowSearchMixin, "_log_candidate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        search(root, GRID, **kw)
    monkeypatch.undo()
    for f in (root / "NORMAL").iterdir():  # the same names, brighter films
        img = np.asarray(Image.open(f).convert("L"), np.float64)
        Image.fromarray(np.clip(img * 1.5 + 20, 0, 255).astype(np.uint8)).save(f)
    res = search(root, GRID, **kw)
    from sklearn.model_selection import ParameterGrid

    assert res.resumed == 0 and len(res.cv_results) == len(ParameterGrid(GRID))
