"""Nothing silently wrong: inputs and settings that would give wrong results are refused
with a message that names them (regression tests of issue 13's findings)."""

import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN


def test_one_image_with_a_channel_axis_is_not_read_as_many(fitted_tiny):
    one = np.full((32, 32, 1), 100, np.uint8)
    with pytest.raises(ValueError, match=r"one image of 32x32 pixels.*or 32 images.*"
                                         r"X\[np.newaxis\]"):
        fitted_tiny.predict_proba(one)
    assert fitted_tiny.predict_proba(one[np.newaxis]).shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        PneumoniaCNN(**TINY).fit(np.zeros((32, 32, 3), np.uint8), ["NORMAL", "PNEUMONIA"] * 16)


@pytest.mark.parametrize("params, match", [
    ({"epochs": 0}, "'epochs' parameter of PneumoniaCNN must be an int in the range"),
    ({"epochs": -1}, "'epochs'"),
    ({"batch_size": 0}, "'batch_size'"),
    ({"threshold": 1.5}, "threshold must be a number in"),
    ({"threshold": -1}, "threshold must be a number in"),
    ({"threshold": float("nan")}, "threshold must be a number in"),
    ({"image_size": 8, "filters": (4, 8, 16, 32)}, "image_size=8 is too small for 4"),
    ({"validation_fraction": 0.99}, "'validation_fraction'"),
    ({"filters": [8, "16"]}, "filters must be a non-empty tuple of positive ints"),
    ({"augmentation": "lite"}, "unknown augmentation preset 'lite'"),
    ({"pooling": "median"}, "'pooling'"),
    ({"dropout": 1.0}, "'dropout'"),
])
def test_nonsense_settings_are_refused_before_any_work(params, match, tmp_path):
    uri = f"sqlite:///{tmp_path / 'p.db'}"
    clf = PneumoniaCNN(**{**TINY, **params, "tracking": True, "tracking_uri": uri})
    with pytest.raises(ValueError, match=match):
        clf.fit(np.zeros((8, 32, 32, 1), np.uint8), ["NORMAL", "PNEUMONIA"] * 4)
    assert not (tmp_path / "p.db").exists()  # no run was started, none is left FAILED


def test_cli_checks_settings_before_loading_data(capsys, synthetic_dir, tmp_path):
    """Settings and paths are refused before any image is read, and before TensorFlow is
    imported (issue 21: errors in under a second; the subprocess proves the import)."""
    import subprocess
    import sys

    from pneumonia_cnn.cli import main

    model = str(tmp_path / "m")
    for cmd in (["train", str(synthetic_dir), "--model-out", model], ["run", str(synthetic_dir),
                                                                       "--out", model]):
        assert main([*cmd, "--augmentation", "lite"]) == 2
        assert "unknown augmentation preset 'lite'" in capsys.readouterr().err
        assert main([*cmd, "--epochs", "0"]) == 2
        assert "'epochs' parameter" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    # the data source is checked first (no scikit-learn needed), then the settings
    assert main(["train", "/no/such/folder", "--model-out", model, "--epochs", "0"]) == 2
    assert "/no/such/folder does not exist" in capsys.readouterr().err
    probe = ("import sys; from pneumonia_cnn.cli import main; "
             f"code = main(['train', {str(synthetic_dir)!r}, '--model-out', {model!r}, "
             "'--image-size', '4']); "
             "assert code == 2 and 'tensorflow' not in sys.modules and 'keras' not in "
             "sys.modules, (code, [m for m in sys.modules if 'tensorflow' in m][:3])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "'image_size' parameter of PneumoniaCNN must be an int" in out.stderr


@pytest.fixture()
def saved(fitted_tiny, tmp_path):
    return fitted_tiny.save(tmp_path / "model")


@pytest.mark.parametrize("damage, match", [
    (lambda m: m.pop("params"), "has no 'params' object"),
    (lambda m: m["params"].update(flux_capacitor=1), r"parameter\(s\) \['flux_capacitor'\]"),
])
def test_a_damaged_model_description_is_a_clear_error(saved, damage, match):
    import json

    from pneumonia_cnn.data import DataError

    meta = json.loads((saved / "pneumonia_cnn.json").read_text())
    damage(meta)
    (saved / "pneumonia_cnn.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=match):
        PneumoniaCNN.load(saved)


def test_a_truncated_network_file_is_a_clear_error(saved):
    from pneumonia_cnn.data import DataError

    data = (saved / "model.keras").read_bytes()
    (saved / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged or truncated"):
        PneumoniaCNN.load(saved)


def test_a_saved_tracking_uri_does_not_decide_where_runs_go(saved, monkeypatch):
    import json

    meta = json.loads((saved / "pneumonia_cnn.json").read_text())
    meta["params"]["tracking_uri"] = "http://attacker.example:5000"
    (saved / "pneumonia_cnn.json").write_text(json.dumps(meta))
    assert PneumoniaCNN.load(saved).tracking_uri is None  # $MLFLOW_TRACKING_URI / ./mlflow.db
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "my-site")
    assert PneumoniaCNN.load(saved).experiment == "my-site"


def test_model_out_is_checked_before_training(tmp_path, capsys, synthetic_dir):
    import os

    from pneumonia_cnn.cli import main

    args = ["train", str(synthetic_dir), "--no-tracking", "--epochs", "1", "--backbone", "none", "--image-size", "32",
            "--filters", "4", "--n-networks", "1", "--quiet", "--model-out"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main([*args, str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    theirs = tmp_path / "someones_folder"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    assert main([*args, str(theirs)]) == 2
    assert "is not a saved model" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main([*args, str(locked / "model")]) == 2
        assert "cannot write" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*args, str(theirs), "--overwrite"]) == 0
    assert (theirs / "notes.txt").read_text() == "keep me" and (theirs / "model.keras").is_file()


def test_a_grid_of_ints_where_tuples_are_meant_is_caught_when_read(capsys):
    from pneumonia_cnn.cli import main
    from pneumonia_cnn.tracking import search

    # checked before the data is read: the folder does not even exist
    with pytest.raises(ValueError, match="search candidate filters=8: filters must be"):
        search("/no/such/folder", {"filters": [8, 16]}, verbose=0)
    assert main(["search", "/no/such/folder", "--grid", '{"filters": [8, 16]}']) == 2
    err = capsys.readouterr().err
    assert "search candidate filters=8" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="search candidate aug=lite"):
        search("/no/such/folder", param_distributions={"augmentation": ["lite"]}, n_iter=1,
               verbose=0)


def test_a_damaged_image_cache_entry_is_dropped_and_rebuilt(synthetic_dir, tmp_path):
    from pneumonia_cnn import load_image_folder

    cache = tmp_path / "cache"
    first = load_image_folder(synthetic_dir, 32, cache=cache, verbose=0)
    (entry,) = cache.glob("*/X.npy")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as after a crash or a full disk
    with pytest.warns(UserWarning, match="damaged .* dropped and rebuilt"):
        again = load_image_folder(synthetic_dir, 32, cache=cache, verbose=0)
    np.testing.assert_array_equal(again.X, first.X)
    third = load_image_folder(synthetic_dir, 32, cache=cache, verbose=0)  # rebuilt: no warning
    np.testing.assert_array_equal(third.X, first.X)


def test_labels_are_the_two_classes_in_any_case_or_0_1_and_nothing_else(synthetic_data):
    from pneumonia_cnn.data import canonical_labels

    d = synthetic_data
    lower = np.char.lower(d.y.astype(str))
    assert list(canonical_labels(lower)) == list(d.y)
    assert list(canonical_labels((d.y == "PNEUMONIA").astype(int))) == list(d.y)
    assert list(canonical_labels(d.y == "PNEUMONIA")) == list(d.y)
    clf = PneumoniaCNN(**TINY).fit(d.X, lower)
    assert list(clf.classes_) == ["NORMAL", "PNEUMONIA"]
    assert clf.score(d.X, lower) == clf.score(d.X, d.y) > 0.0  # not 0.0 as before
    with pytest.raises(ValueError, match=r"labels must be NORMAL and PNEUMONIA.*got \['cat', "
                                         r"'dog'\]"):
        PneumoniaCNN(**TINY).fit(d.X, np.where(d.y == "NORMAL", "cat", "dog"))
    with pytest.raises(ValueError, match=r"got \[2\]"):
        PneumoniaCNN(**TINY).fit(d.X, (d.y == "PNEUMONIA").astype(int) * 2)


def test_ctrl_c_while_logging_a_finished_fit_says_what_happened(synthetic_dir, tmp_path,
                                                                 monkeypatch, capsys):
    import mlflow

    from pneumonia_cnn.cli import main
    from pneumonia_cnn.tracking import _fit_logging as serving

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(serving, "log_model", interrupted)
    uri = f"sqlite:///{tmp_path / 'i.db'}"
    code = main(["train", str(synthetic_dir), "--model-out", str(tmp_path / "m"), "--epochs",
                 "1", "--backbone", "none", "--image-size", "32", "--filters", "4", "--n-networks", "1",
                 "--augmentation", "none", "--intensity-norm", "none", "--threshold", "0.5",
                 "--quiet", "--tracking-uri", uri])
    assert code == 130
    err = capsys.readouterr().err
    assert "training had finished" in err and "checkpoint" not in err
    assert (tmp_path / "m" / "model.keras").is_file()
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("pneumonia-cnn").experiment_id])
    assert run.info.status == "KILLED"  # not left RUNNING


@pytest.mark.parametrize("where", ["_choose_threshold", "_split_validation"])
def test_ctrl_c_anywhere_in_a_fit_ends_its_run(where, synthetic_data, tmp_path, monkeypatch):
    """Runs used to stay RUNNING when the interrupt came outside Keras' training loop."""
    import mlflow

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PneumoniaCNN, where, interrupted)
    uri = f"sqlite:///{tmp_path / 'c.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri})
    with pytest.raises(KeyboardInterrupt):
        clf.fit(synthetic_data.X, synthetic_data.y)
    assert mlflow.MlflowClient(uri).get_run(clf.mlflow_run_id_).info.status == "KILLED"


def test_a_diverged_fit_is_an_error_and_writes_no_model(synthetic_dir, tmp_path, capsys):
    """learning rate 1e6 with SGD and no batch norm: NaN weights. Not 'model saved' with
    threshold nan (issue 22, finding 2)."""
    import warnings

    from pneumonia_cnn.cli import main

    args = ["train", str(synthetic_dir), "--no-tracking", "--epochs", "2", "--backbone", "none", "--image-size", "32",
            "--filters", "4", "--n-networks", "1", "--quiet", "--learning-rate", "1e6",
            "--optimizer", "sgd", "--no-batch-norm", "--model-out", str(tmp_path / "m")]
    assert main(args) == 2
    err = capsys.readouterr().err
    # NaN weights, or weights so large that every film gets the same probability
    assert ("the fit diverged" in err or "no better than chance" in err) and (
        "Traceback" not in err)
    assert not (tmp_path / "m").exists()
    # the API: NaN scores are an error; saturated constant scores are warned about
    clf = PneumoniaCNN(**{**TINY, "learning_rate": 1e6, "optimizer": "sgd",
                          "batch_norm": False, "validation_fraction": 0.3})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clf.fit(synthetic_dir)
            diverged = False
        except ValueError as exc:
            assert "the fit diverged" in str(exc)
            diverged = True
    assert diverged or any("no better than chance" in str(w.message) for w in caught)


def test_non_finite_scores_after_a_fit_are_an_error(fitted_tiny, synthetic_data):
    import copy

    broken = copy.deepcopy(fitted_tiny)
    weights = broken.model_.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)  # the output unit's bias
    broken.model_.set_weights(weights)
    with pytest.raises(ValueError, match="the fit diverged: .*non-finite"):
        broken._check_not_diverged(synthetic_data.X)
    fitted_tiny._check_not_diverged(synthetic_data.X)  # a sound network passes
