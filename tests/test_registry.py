"""Model registry on a real `mlflow server`: versions, the champion alias, model URIs."""

import mlflow
import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.analysis import load_model
from pneumonia_cnn.cli import main
from pneumonia_cnn.tracking import register


@pytest.fixture(scope="module")
def three_fits(mlflow_server, synthetic_data):
    """Three tracked fits on the server, with hold-out ROC AUCs set to 0.80, 0.70, 0.90 so
    that the champion rule is tested on known numbers (a later value of a metric is the one
    MLflow shows, and the one the rule reads)."""
    url, _ = mlflow_server
    client = mlflow.MlflowClient(url)
    fits = []
    for seed, auc in zip((0, 1, 2), (0.80, 0.70, 0.90)):
        clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": url,
                              "validation_fraction": 0.3, "random_state": seed,
                              "experiment": "registry-test"})
        clf.fit(synthetic_data)
        client.log_metric(clf.mlflow_run_id_, "roc_auc", auc,
                          timestamp=client.get_run(clf.mlflow_run_id_).info.end_time + 1000)
        fits.append(clf)
    return url, fits


def test_champion_moves_only_to_a_better_hold_out_score(three_fits):
    url, (a, b, c) = three_fits
    first = register(f"models:/{a.mlflow_model_id_}", "cnn-test", tracking_uri=url)
    assert (first.version, first.champion, first.moved) == ("1", "1", True)
    assert first.holdout_roc_auc == pytest.approx(0.80)
    worse = register(b.mlflow_run_id_, "cnn-test", tracking_uri=url)  # a bare run id works
    assert (worse.version, worse.champion, worse.moved) == ("2", "1", False)
    assert "stays on v1" in worse.message and "does not beat" in worse.message
    better = register(f"models:/{c.mlflow_model_id_}", "cnn-test", tracking_uri=url)
    assert (better.version, better.champion, better.moved) == ("3", "3", True)
    assert "moves from v1 (0.8000) to v3" in better.message
    client = mlflow.MlflowClient(url)
    assert client.get_model_version_by_alias("cnn-test", "champion").version == "3"
    assert client.get_model_version("cnn-test", "2").tags["holdout_roc_auc"] == "0.700000"


def test_every_model_uri_loads_the_same_network(three_fits, synthetic_data):
    url, (a, _, c) = three_fits
    X = synthetic_data.X[:5]
    name = mlflow.MlflowClient(url).get_logged_model(a.mlflow_model_id_).name
    for uri, clf in ((f"models:/{a.mlflow_model_id_}", a), ("models:/cnn-test/1", a),
                     ("models:/cnn-test@champion", c),
                     (f"runs:/{a.mlflow_run_id_}/{name}", a)):
        loaded = load_model(uri, tracking_uri=url)
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
        assert loaded.threshold_ == clf.threshold_


def test_cli_register_and_evaluate_a_registry_uri(three_fits, synthetic_dir, capsys,
                                                  monkeypatch):
    url, (a, _, _) = three_fits
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    assert main(["register", f"models:/{a.mlflow_model_id_}", "cnn-cli"]) == 0
    out = capsys.readouterr().out
    assert "Registered 'cnn-cli' version 1; champion -> v1" in out
    assert main(["evaluate", "models:/cnn-cli@champion", str(synthetic_dir), "--json",
                 "--no-tracking"]) == 0
    assert '"roc_auc"' in capsys.readouterr().out
    assert main(["register", "runs:/0123456789abcdef/model", "cnn-cli"]) == 2
    assert "could not register" in capsys.readouterr().err


def test_cli_registers_a_model_folder(three_fits, tmp_path, capsys, monkeypatch,
                                      fitted_tiny):
    """`register outputs/model NAME` was refused ('neither a model URI ... nor a run id'):
    a folder registers the model it logged (issue 20, item 2)."""
    url, (a, _, _) = three_fits
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    a.save(tmp_path / "model")
    assert main(["register", str(tmp_path / "model"), "cnn-folder"]) == 0
    assert "Registered 'cnn-folder' version 1" in capsys.readouterr().out
    version = mlflow.MlflowClient(url).get_model_version("cnn-folder", "1")
    assert a.mlflow_model_id_ in (version.source or "") or (
        getattr(version, "model_id", None) == a.mlflow_model_id_)
    fitted_tiny.save(tmp_path / "untracked")
    assert main(["register", str(tmp_path / "untracked"), "cnn-folder"]) == 2
    assert "was not logged to MLflow" in capsys.readouterr().err


def test_search_registers_its_refit_model(mlflow_server, synthetic_dir):
    from pneumonia_cnn.tracking import search

    url, _ = mlflow_server
    res = search(synthetic_dir, {"dropout": [0.0, 0.5]},
                 estimator=PneumoniaCNN(**{**TINY, "epochs": 1}), cv=2, tracking_uri=url,
                 name="registered", holdout=0.25, verbose=0, register="cnn-search",
                 experiment="registry-test")
    reg = res.registration
    assert (reg.version, reg.champion, reg.moved) == ("1", "1", True)
    version = mlflow.MlflowClient(url).get_model_version("cnn-search", "1")
    assert res.best_estimator.mlflow_model_id_ in (version.model_id or version.source)
    assert float(version.tags["holdout_roc_auc"]) == pytest.approx(res.holdout["roc_auc"], abs=1e-6)


def test_register_without_refit_is_refused(synthetic_dir):
    from pneumonia_cnn.tracking import search

    with pytest.raises(ValueError, match="register= needs refit=True"):
        search(synthetic_dir, {"dropout": [0.0]}, refit=False, register="x", verbose=0)
