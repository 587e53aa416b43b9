"""MLflow logging of fits (default local store and explicit URIs)."""

import json
import os
import re

import mlflow
import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.tracking import resolve_tracking_uri


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_fit_logs_a_complete_run_to_default_local_store(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store is ./mlflow.db with artifacts in ./mlruns
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "validation_fraction": 0.25, "epochs": 3})
    clf.fit(synthetic_dir)
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(clf.mlflow_run_id_)
    assert run.info.status == "FINISHED"
    # the experiment opens as a model-training experiment in mlflow ui, not in GenAI mode
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # ... and its runs table has the README's columns (MLflow's shared view, opened by
    # ...?viewStateShareKey=pneumonia-cnn)
    view = json.loads(exp.tags["mlflow.sharedViewState.pneumonia-cnn"])
    assert view["orderByKey"] == "metrics.`roc_auc`" and view["orderByAsc"] is False
    assert {"metrics.`roc_auc`", "metrics.`stress_roc_auc`", "params.`augmentation`",
            "tags.`kind`"} <= set(view["selectedColumns"])
    # a readable name: what differs from the defaults, then the data
    name = run.info.run_name
    assert name.startswith("SYNTHETIC-aug=None norm=None nets=1 ")  # the demo data says so
    assert f" · {synthetic_dir.parent.name}/train (" in name and "+" in name
    assert re.search(r"\((\d+) films, [0-9a-f]{6}\)$", name)  # fits on other films differ
    assert run.data.tags["kind"] == "fit" and run.data.tags["eval_on"] == "validation hold-out"
    # the estimator's own parameter names, without the plumbing
    p = run.data.params
    assert p["filters"] == "[4, 8]" and p["augmentation"] == "None" and p["epochs"] == "3"
    assert p["threshold"] == "0.5" and p["data"].endswith("train")
    assert not set(p) & {"build_fn", "model", "run_eagerly", "warm_start", "verbose",
                         "tracking", "tracking_uri", "callbacks", "metrics"}
    # one version tag, the rest in environment.json
    assert not any(k.endswith(".version") and k != "pneumonia_cnn.version"
                   for k in run.data.tags)
    # the training data and the validation hold-out are MLflow datasets
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    profile = json.loads(inputs["training"].profile)
    assert profile["n_NORMAL"] == 24 and profile["n_PNEUMONIA"] == 36
    assert json.loads(inputs["training"].source)["uri"] == str(synthetic_dir.resolve())
    assert len(inputs["training"].digest) == 16
    # per-epoch curves under train/ and val/
    for key, hist_key in (("train/loss", "loss"), ("train/roc_auc", "auc"),
                          ("val/loss", "val_loss"), ("val/roc_auc", "val_auc")):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == list(range(1, len(clf.history_["loss"]) + 1))
        assert [m.value for m in history] == pytest.approx(clf.history_[hist_key])
    # headline metrics of the validation hold-out, under the names every run uses
    m = run.data.metrics
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity", "brier",
                "decision_threshold", "stress_roc_auc", "fit_time_s"):
        assert key in m, key
    assert not {"auc", "val_auc", "best_val_auc", "threshold"} & set(m)
    # the model is stored once, as a pyfunc model whose metrics link to it
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model" not in artifacts and "environment.json" in artifacts
    logged = client.get_logged_model(clf.mlflow_model_id_)
    assert logged.source_run_id == run.info.run_id
    linked = {x.key: x for x in logged.metrics}
    assert linked["roc_auc"].value == pytest.approx(m["roc_auc"])
    assert linked["roc_auc"].dataset_name == inputs["validation"].name
    loaded = PneumoniaCNN.load(f"models:/{clf.mlflow_model_id_}")
    X = np.zeros((2, 32, 32, 1), np.uint8)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.mlflow_model_id_ == clf.mlflow_model_id_


def test_pyfunc_model_loads_back_from_run(synthetic_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri})
    clf.fit(synthetic_data.X, synthetic_data.y)
    client = mlflow.MlflowClient(uri)
    name = client.get_logged_model(clf.mlflow_model_id_).name
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{clf.mlflow_run_id_}/{name}")
        out = model.predict(synthetic_data.X[:4])
    finally:
        mlflow.set_tracking_uri(None)
    np.testing.assert_allclose(out["probability"],
                               clf.predict_proba(synthetic_data.X[:4])[:, 1], rtol=1e-6)
    assert list(out["label"]) == list(clf.predict(synthetic_data.X[:4]))
    # PneumoniaCNN.load reads the same files from the run URI
    same = PneumoniaCNN.load(f"runs:/{clf.mlflow_run_id_}/{name}", tracking_uri=uri)
    np.testing.assert_array_equal(same.predict_proba(synthetic_data.X[:4]),
                                  clf.predict_proba(synthetic_data.X[:4]))


def test_model_uri_that_does_not_exist_gets_a_clear_error(tmp_path):
    from pneumonia_cnn.data import DataError

    uri = f"sqlite:///{tmp_path / 'e.db'}"
    with pytest.raises(DataError, match="could not fetch the model models:/nope@champion"):
        PneumoniaCNN.load("models:/nope@champion", tracking_uri=uri)


def test_failed_fit_ends_run_as_failed(tmp_path):
    import keras

    class Broken(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("disk full")

    uri = f"sqlite:///{tmp_path / 'f.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri,
                          "callbacks": [Broken()]})
    X = np.zeros((8, 32, 32, 1), np.uint8)
    with pytest.raises(RuntimeError, match="disk full"):
        clf.fit(X, ["NORMAL", "PNEUMONIA"] * 4)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("pneumonia-cnn").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_logging_a_model_leaves_the_tracking_uri_of_the_process_alone(tmp_path, monkeypatch,
                                                                      synthetic_data):
    """A logged pyfunc model must not redirect the runs that come after it."""
    import mlflow

    from pneumonia_cnn import PneumoniaCNN

    first = f"sqlite:///{tmp_path / 'first.db'}"
    second = f"sqlite:///{tmp_path / 'second.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    PneumoniaCNN(**{**TINY, "tracking": True}).fit(synthetic_data.X, synthetic_data.y)
    assert os.environ["MLFLOW_TRACKING_URI"] == first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)
    clf = PneumoniaCNN(**{**TINY, "tracking": True}).fit(synthetic_data.X, synthetic_data.y)
    assert mlflow.MlflowClient(second).get_run(clf.mlflow_run_id_).info.status == "FINISHED"
    assert os.environ["MLFLOW_TRACKING_URI"] == second


def test_a_local_store_keeps_its_artifacts_beside_it(synthetic_data, tmp_path, monkeypatch):
    """Artifacts of sqlite:///<dir>/x.db go to <dir>/mlruns, never to the working folder
    (the test suite used to leave dozens of run folders in the project's ./mlruns)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = f"sqlite:///{tmp_path / 'store' / 'x.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri})
    clf.fit(synthetic_data.X, synthetic_data.y)
    assert list(work.iterdir()) == []
    assert any((tmp_path / "store" / "mlruns").rglob("model.keras"))


def test_runs_left_running_by_a_killed_process_can_be_closed(tmp_path, capsys):
    import subprocess
    import sys

    from pneumonia_cnn.cli import main
    from pneumonia_cnn.tracking import TrackedRun, close_stale_runs

    uri = f"sqlite:///{tmp_path / 'k.db'}"
    code = ("from pneumonia_cnn.tracking import TrackedRun; import os, signal; "
            f"r = TrackedRun.start(tracking_uri={uri!r}, run_name='killed'); print(r.run_id, "
            "flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    dead = out.stdout.split()[0]
    alive = TrackedRun.start(tracking_uri=uri, run_name="this process")
    client = mlflow.MlflowClient(uri)
    assert client.get_run(dead).info.status == "RUNNING"  # what SIGKILL leaves behind
    assert main(["close-runs", "--tracking-uri", uri]) == 0
    assert "1 run(s) marked KILLED" in capsys.readouterr().out
    assert client.get_run(dead).info.status == "KILLED"
    assert client.get_run(alive.run_id).info.status == "RUNNING"  # a live process: untouched
    assert close_stale_runs(uri) == []
    with pytest.raises(SystemExit) as exit_:  # argparse's refusal, before MLflow loads
        main(["close-runs", "--tracking-uri", uri, "--older-than", "-1"])
    assert exit_.value.code == 2
    assert "'-1' is not a number of hours >= 0" in capsys.readouterr().err
    assert client.get_run(alive.run_id).info.status == "RUNNING"
    alive.end()


def test_a_damaged_store_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys,
                                                     synthetic_dir):
    from pneumonia_cnn.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_bytes(b"this is not a database" * 100)
    code = main(["train", str(synthetic_dir), "--model-out", "m", "--epochs", "1",
                 "--n-networks", "1", "--backbone", "none", "--image-size", "32", "--filters", "4", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot use the MLflow store" in err and "mv mlflow.db mlflow.db.bad" in err
    assert "Traceback" not in err


def test_a_folder_named_with_percent_escapes_keeps_its_store(tmp_path, monkeypatch):
    from pneumonia_cnn.tracking import TrackedRun

    work = tmp_path / "a%20b"  # SQLAlchemy would read this as "a b"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = TrackedRun.start(run_name="x")
    run.end()
    assert (work / "mlflow.db").is_file() and not (tmp_path / "a b").exists()


def test_a_tracked_fit_warns_nothing_about_mlflow_internals(synthetic_data, tmp_path):
    """MLflow's advice on predict type hints used to be printed on every tracked fit."""
    import warnings

    uri = f"sqlite:///{tmp_path / 'w.db'}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri}).fit(
            synthetic_data.X, synthetic_data.y)
    assert not [w for w in caught if "type hint" in str(w.message)]


def test_each_question_has_its_view_and_small_or_training_sets_rank_nowhere(synthetic_dir,
                                                                            tmp_path):
    """Issue 20: the runs table ranked an evaluation of 4 training images (ROC AUC 1.0)
    above every fit. Views: models, candidates, evaluations; nothing on < 30 images or on
    training images is in any."""
    from pneumonia_cnn.analysis import evaluate
    from pneumonia_cnn.data import load_image_folder
    from pneumonia_cnn.tracking import MIN_RANKED_IMAGES, VIEWS

    uri = f"sqlite:///{tmp_path / 'v.db'}"
    data = load_image_folder(synthetic_dir, 32, cache=False)
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri,
                          "validation_fraction": 0.25}).fit(data)
    client = mlflow.MlflowClient(uri)
    fit = client.get_run(clf.mlflow_run_id_)
    n_holdout = int(fit.data.metrics["n_images"])
    assert fit.data.tags["ranking"] == ("model" if n_holdout >= MIN_RANKED_IMAGES else "none")

    small = evaluate(clf, data.subset(np.arange(8)))  # 8 images: ranked nowhere
    seen = evaluate(clf, data.subset(np.arange(40)))  # training images: ranked nowhere
    tags = [client.get_run(r["mlflow_run_id"]).data.tags for r in (small, seen)]
    assert [t["ranking"] for t in tags] == ["none", "none"]
    assert "8 images" in tags[0]["unranked_because"]
    assert "training images" in tags[1]["unranked_because"]

    exp = client.get_experiment(fit.info.experiment_id)
    for name, state in VIEWS.items():
        assert json.loads(exp.tags[f"mlflow.sharedViewState.{name}"]) == state
    ranked = client.search_runs([exp.experiment_id], VIEWS["evaluations"]["searchFilter"])
    assert not {r.info.run_id for r in ranked} & {small["mlflow_run_id"],
                                                  seen["mlflow_run_id"]}


def test_a_model_trained_under_another_store_is_evaluated_and_logged_here(synthetic_dir,
                                                                          tmp_path, capsys):
    """Regression (site issue, finding 15): evaluating a model folder whose fit was logged
    to another MLflow store failed with a raw "FOREIGN KEY constraint failed", and the
    evaluation was lost. It is logged here, without a link to a model this store lacks."""
    from pneumonia_cnn.cli import main

    first, second = (f"sqlite:///{tmp_path / n}" for n in ("first.db", "second.db"))
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": first})
    clf.fit(str(synthetic_dir))
    clf.save(tmp_path / "model")
    assert main(["evaluate", str(tmp_path / "model"), str(synthetic_dir), "--json",
                 "--tracking-uri", second, "--out", str(tmp_path / "eval")]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["n_images"] == 60 and "FOREIGN KEY" not in captured.err
    run = mlflow.MlflowClient(second).get_run(metrics["mlflow_run_id"])
    assert run.data.metrics["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert run.info.status == "FINISHED"
