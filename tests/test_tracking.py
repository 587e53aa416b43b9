"""MLflow logging of fits (default local store and explicit URIs)."""

import os
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
    p = run.data.params
    assert p["filters"] == "[4, 8]" and p["augmentation"] == "None" and p["epochs"] == "3"
    assert p["data.n_NORMAL"] == "24" and p["data.n_PNEUMONIA"] == "36"
    assert p["data.dir"] == str(synthetic_dir) and len(p["data.hash"]) == 16
    for key in ("loss", "auc", "val_loss", "val_accuracy", "val_auc"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == list(range(1, len(clf.history_["loss"]) + 1))
        assert [m.value for m in history] == pytest.approx(clf.history_[key])
    assert run.data.metrics["fit_time_s"] > 0
    assert run.data.tags["tensorflow.version"] and run.data.tags["keras.version"]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "plots"} <= artifacts
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model",
                                                tracking_uri=client.tracking_uri,
                                                dst_path=str(tmp_path / "dl"))
    loaded = PneumoniaCNN.load(local)
    X = np.zeros((2, 32, 32, 1), np.uint8)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_pyfunc_model_loads_back_from_run(synthetic_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri})
    clf.fit(synthetic_data.X, synthetic_data.y)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{clf.mlflow_run_id_}/pyfunc_model")
    assert model.metadata.signature is not None
    np.testing.assert_allclose(model.predict(synthetic_data.X[:4]),
                               clf.predict_proba(synthetic_data.X[:4])[:, 1], rtol=1e-6)


def test_failed_fit_ends_run_as_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'f.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri, "pooling": "median"})
    X = np.zeros((8, 32, 32, 1), np.uint8)
    with pytest.raises(ValueError, match="pooling"):
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
