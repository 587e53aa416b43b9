"""A tiny search logged over HTTP to a real `mlflow server` on 127.0.0.1."""

import mlflow
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.tracking import search


def test_search_over_http(mlflow_server, synthetic_dir):
    url, folder = mlflow_server
    grid = {"filters": [(4,), (4, 8)], "augmentation": [None, "light"]}
    res = search(synthetic_dir, grid, estimator=PneumoniaCNN(**{**TINY, "epochs": 2,
                                                                 "validation_fraction": 0.25}),
                 cv=2, tracking_uri=url, name="http", holdout=0.25, verbose=0)
    client = mlflow.MlflowClient(url)
    exp = client.get_experiment_by_name("pneumonia-cnn")
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{res.parent_run_id}'")
    kinds = sorted(c.data.tags["kind"] for c in children)
    assert kinds == ["candidate"] * 4 + ["refit"]
    cands = [c for c in children if c.data.tags["kind"] == "candidate"]
    assert {c.data.params["filters"] for c in cands} == {"[4]", "[4, 8]"}
    assert {c.data.params["augmentation"] for c in cands} == {"None", "light"}
    refit = next(c for c in children if c.data.tags["kind"] == "refit")
    history = client.get_metric_history(refit.info.run_id, "val/roc_auc")
    assert [m.step for m in history] == [1, 2]
    assert len(client.get_metric_history(refit.info.run_id, "train/loss")) == 2
    # artifacts went through the server into its artifact folder
    parent_files = {a.path for a in client.list_artifacts(res.parent_run_id)}
    assert "cv_results.csv" in parent_files
    logged = client.get_logged_model(res.best_estimator.mlflow_model_id_)
    model_files = {a.path for a in client.list_logged_model_artifacts(logged.model_id,
                                                                        "artifacts/model")}
    assert "artifacts/model/model.keras" in model_files
    stored = list((folder / "artifacts").rglob("model.keras"))
    assert stored, "no artifact reached the server's artifact folder"
    eval_files = {a.path for a in client.list_artifacts(refit.info.run_id, "evaluation")}
    assert "evaluation/roc_curve.png" in eval_files
