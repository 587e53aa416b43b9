"""Site calibration (operating point, probability calibration) and the evaluation's
calibration measures and confidence intervals."""

import json

import mlflow
import numpy as np
import pytest

from pneumonia_cnn.analysis import (
    CALIBRATION_FILE,
    SiteCalibratedCNN,
    calibrate,
    evaluate,
    load_model,
)
from pneumonia_cnn.cli import main
from pneumonia_cnn.data import DataError, load_image_folder, make_synthetic_dataset
from pneumonia_cnn.metrics import confidence_intervals, wilson_interval


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A second synthetic 'site' (other seed, other size), 20 NORMAL and 30 PNEUMONIA."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("site") / "site", n_normal=20,
                                  n_pneumonia=30, size=40, random_state=5)
    return load_image_folder(root, 32, cache=False)


def _sensitivity(model, data):
    pred = model.predict(data.X)
    return float(np.mean(pred[data.y == "PNEUMONIA"] == "PNEUMONIA"))


@pytest.mark.parametrize("target, promised", [(0.9, True), (0.8, True), (1.0, False)])
def test_threshold_keeps_the_target_sensitivity_at_the_promised_confidence(
        fitted_tiny, site, target, promised):
    import warnings

    from scipy.stats import beta

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = calibrate(fitted_tiny, site, target_sensitivity=target, track=False)
    warned = [w for w in caught if "only with confidence" in str(w.message)]
    assert bool(warned) != promised
    assert _sensitivity(model, site) >= target
    p = fitted_tiny.predict_proba(site.X)[:, 1]
    pos = np.sort(p[site.y == "PNEUMONIA"])
    # the training-conditional conformal rule: the largest j whose coverage, Beta(31 - j, j),
    # falls below the target with probability <= 1 - 0.9
    ok = [j for j in range(1, 31) if beta.cdf(target, 31 - j, j) <= 0.1]
    j = max(ok) if ok else 1
    assert model.threshold_ == pytest.approx(pos[j - 1])
    c = model.calibration_
    assert c["n_NORMAL"] == 20 and c["n_PNEUMONIA"] == 30 and c["rule"] == "conformal"
    assert (c["promise_confidence"] >= 0.9) == promised
    lo, hi = c["sensitivity_ci95"]
    assert lo <= c["sensitivity"] <= hi
    assert c["sensitivity_lower_bound"] <= c["sensitivity"]
    assert model.predict_proba(site.X)[:, 1] == pytest.approx(p)  # method=None keeps them


def test_unlabelled_films_set_the_threshold_from_the_site_mixture(fitted_tiny, site):
    """A model without hold-out scores cannot use unlabelled films: said clearly."""
    with pytest.raises(ValueError, match="validation hold-out scores"):
        calibrate(fitted_tiny, site, unlabelled=site.X, track=False)


def test_fixed_threshold_and_sigmoid_calibration(fitted_tiny, site):
    fixed = calibrate(fitted_tiny, site, threshold=0.3, track=False)
    assert fixed.threshold_ == 0.3
    p = fitted_tiny.predict_proba(site.X)[:, 1]
    assert (fixed.predict(site.X) == np.where(p >= 0.3, "PNEUMONIA", "NORMAL")).all()
    sig = calibrate(fitted_tiny, site, threshold=0.5, method="sigmoid", track=False)
    q = sig.predict_proba(site.X)[:, 1]
    assert not np.allclose(q, p)
    d = np.diff(q[np.argsort(p)])
    assert np.all(d >= -1e-12) or np.all(d <= 1e-12)  # a monotone re-map


def test_a_network_that_ranks_the_site_backwards_is_warned_about(fitted_tiny, site):
    from sklearn.metrics import roc_auc_score

    p = fitted_tiny.predict_proba(site.X)[:, 1]
    y = site.y.copy()
    if roc_auc_score(y == "PNEUMONIA", p) > 0.5:  # labels swapped: now it ranks backwards
        y = np.where(y == "PNEUMONIA", "NORMAL", "PNEUMONIA")
    with pytest.warns(UserWarning, match=r"ranks NORMAL films above PNEUMONIA .* sigmoid "
                                         r"re-map inverts"):
        model = calibrate(fitted_tiny, site.X, y, threshold=0.5, method="sigmoid",
                          track=False)
    assert model.calibration_["roc_auc"] < 0.5


def test_too_small_a_calibration_set_is_refused(fitted_tiny, site):
    keep = np.r_[np.flatnonzero(site.y == "NORMAL")[:9], np.flatnonzero(site.y == "PNEUMONIA")]
    with pytest.raises(DataError, match="at least 10 images of each class.*NORMAL"):
        calibrate(fitted_tiny, site.X[keep], site.y[keep], track=False)


def test_bad_calibration_options_are_refused(fitted_tiny, site):
    with pytest.raises(ValueError, match="target_sensitivity must be in"):
        calibrate(fitted_tiny, site, target_sensitivity=1.5, track=False)
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate(fitted_tiny, site, threshold=0.5, method="platt", track=False)


def test_saves_loads_and_evaluates_at_the_new_operating_point(fitted_tiny, site, tmp_path):
    model = calibrate(fitted_tiny, site, threshold=0.42, method="isotonic", track=False)
    path = model.save(tmp_path / "calibrated")
    assert (path / CALIBRATION_FILE).is_file()
    loaded = load_model(path)
    assert isinstance(loaded, SiteCalibratedCNN) and loaded.threshold_ == 0.42
    np.testing.assert_allclose(loaded.predict_proba(site.X), model.predict_proba(site.X))
    assert (loaded.predict(site.X) == model.predict(site.X)).all()
    result = evaluate(loaded, site, track=False)
    assert result["threshold"] == 0.42
    assert result["sensitivity"] == pytest.approx(_sensitivity(model, site))
    # a model folder without calibration still loads as the plain network
    assert type(load_model(fitted_tiny.save(tmp_path / "plain"))).__name__ == "PneumoniaCNN"


def test_calibration_run_is_nested_under_the_fit_run(synthetic_data, site):
    from conftest import TINY

    from pneumonia_cnn import PneumoniaCNN

    clf = PneumoniaCNN(**{**TINY, "tracking": True}).fit(synthetic_data)
    model = calibrate(clf, site, threshold=0.5)
    run = mlflow.get_run(model.mlflow_run_id_)
    assert run.data.tags["mlflow.parentRunId"] == clf.mlflow_run_id_
    assert run.data.tags["kind"] == "calibration"
    assert run.data.metrics["decision_threshold"] == 0.5
    assert {"sensitivity", "specificity", "sensitivity_ci_low"} <= set(run.data.metrics)
    assert [i.tags[0].value for i in run.inputs.dataset_inputs] == ["calibration"]
    # the calibrated model is logged once, loads by its URI and predicts as it did
    again = load_model(f"models:/{model.mlflow_model_id_}")
    assert type(again).__name__ == "SiteCalibratedCNN" and again.threshold_ == 0.5
    np.testing.assert_allclose(again.predict_proba(site.X), model.predict_proba(site.X))
    assert run.info.status == "FINISHED"
    # evaluating the calibrated model nests under the calibration run
    result = evaluate(model, site)
    assert mlflow.get_run(result["mlflow_run_id"]).data.tags["mlflow.parentRunId"] == \
        model.mlflow_run_id_


def test_cli_calibrate_then_evaluate_and_predict(fitted_tiny, site, tmp_path, capsys):
    model_dir = fitted_tiny.save(tmp_path / "model")
    out = tmp_path / "calibrated"
    assert main(["calibrate", str(model_dir), site.root, "--model-out", str(out),
                 "--target-sensitivity", "0.9", "--no-tracking", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["sensitivity"] >= 0.9 and info["n_PNEUMONIA"] == 30
    assert main(["evaluate", str(out), site.root, "--json", "--no-tracking"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["threshold"] == pytest.approx(info["threshold"])
    assert metrics["sensitivity"] >= 0.9
    assert main(["predict", str(out), site.root + "/PNEUMONIA"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 30


def test_cli_calibrate_on_a_tiny_set_is_one_clear_line(fitted_tiny, tmp_path, capsys):
    root = make_synthetic_dataset(tmp_path / "tiny", n_normal=4, n_pneumonia=6, size=32)
    model_dir = fitted_tiny.save(tmp_path / "model")
    assert main(["calibrate", str(model_dir), str(root), "--model-out",
                 str(tmp_path / "x"), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Evaluation: Brier score, reliability diagram, confidence intervals
# ---------------------------------------------------------------------------------------------
def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(19, 20)
    assert lo == pytest.approx(0.7639, abs=1e-3) and hi == pytest.approx(0.9911, abs=1e-3)
    assert np.isnan(wilson_interval(0, 0)).all()


def test_auc_interval_resamples_patients():
    rng = np.random.default_rng(0)
    y = np.array(["PNEUMONIA"] * 60 + ["NORMAL"] * 40)
    s = np.clip(rng.normal(np.where(y == "PNEUMONIA", 0.65, 0.35), 0.2), 0, 1)
    per_image = confidence_intervals(y, s)["roc_auc"]
    # the same data where every patient has 4 identical images: fewer independent units,
    # so the interval must be wider than pretending they are 400 images
    y4, s4 = np.repeat(y, 4), np.repeat(s, 4)
    groups = np.repeat(np.arange(100), 4)
    by_patient = confidence_intervals(y4, s4, groups=groups)["roc_auc"]
    naive = confidence_intervals(y4, s4)["roc_auc"]
    assert by_patient[1] - by_patient[0] > 1.5 * (naive[1] - naive[0])
    assert by_patient[1] - by_patient[0] == pytest.approx(per_image[1] - per_image[0], rel=0.35)


def test_evaluate_reports_brier_cis_and_a_reliability_diagram(fitted_tiny, site, tmp_path):
    result = evaluate(fitted_tiny, site, out_dir=tmp_path, track=False)
    assert 0 <= result["brier"] <= 1
    for k in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        lo, hi = result["ci95"][k]
        assert lo <= result[k] <= hi, k
    assert (tmp_path / "reliability_diagram.png").stat().st_size > 5000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["ci95"]["roc_auc"] == pytest.approx(result["ci95"]["roc_auc"])


@pytest.mark.parametrize("bad", [float("nan"), -3, "high"])
def test_a_saved_threshold_outside_0_1_is_refused_on_load(fitted_tiny, site, tmp_path, bad):
    """A damaged folder is not used with a threshold nobody chose (issue 22, finding 12)."""
    path = fitted_tiny.save(tmp_path / "m")
    meta = json.loads((path / "pneumonia_cnn.json").read_text())
    meta["threshold"] = bad
    (path / "pneumonia_cnn.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="threshold"):
        load_model(path)
    meta["threshold"] = 0.5
    meta["params"]["threshold"] = bad  # a fixed threshold parameter
    (path / "pneumonia_cnn.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="threshold"):
        load_model(path)
    # a fixed-threshold site calibration
    fitted_tiny.save(tmp_path / "ok")
    calibrate(fitted_tiny, site, threshold=0.4, track=False).save(tmp_path / "cal")
    info = json.loads((tmp_path / "cal" / CALIBRATION_FILE).read_text())
    info["threshold"] = info["threshold_"] = bad
    (tmp_path / "cal" / CALIBRATION_FILE).write_text(json.dumps(info))
    with pytest.raises(DataError, match="damaged"):
        load_model(tmp_path / "cal")


def test_calibrating_on_the_model_s_training_films_is_warned_about(fitted_tiny, synthetic_data):
    """(issue 22, finding 10: evaluate warned, calibrate did not)"""
    with pytest.warns(UserWarning, match="identical to training images of this model"):
        calibrate(fitted_tiny, synthetic_data, threshold=0.5, track=False)


def test_a_calibrated_model_is_not_calibrated_again(fitted_tiny, site, tmp_path, capsys):
    """Its inner map was dropped on load: 9 of 80 labels changed (issue 22, finding 7)."""
    once = calibrate(fitted_tiny, site, threshold=0.4, method="sigmoid", track=False)
    with pytest.raises(ValueError, match="already site-calibrated: calibrate its network"):
        calibrate(once, site, threshold=0.5, track=False)
    once.save(tmp_path / "cal")
    assert main(["calibrate", str(tmp_path / "cal"), str(site.root), "--model-out",
                 str(tmp_path / "again"), "--no-tracking"]) == 2
    assert "already site-calibrated" in capsys.readouterr().err


def test_damaged_model_files_are_one_clear_error(fitted_tiny, site, tmp_path, capsys):
    """(issue 22, finding 19: these ended in raw tracebacks)"""
    calibrate(fitted_tiny, site, threshold=0.4, track=False).save(tmp_path / "cal")
    info = json.loads((tmp_path / "cal" / CALIBRATION_FILE).read_text())
    info["labels"] = info["labels"][:-3]
    (tmp_path / "cal" / CALIBRATION_FILE).write_text(json.dumps(info))
    with pytest.raises(DataError, match="damaged"):
        load_model(tmp_path / "cal")
    path = fitted_tiny.save(tmp_path / "three")
    meta = json.loads((path / "pneumonia_cnn.json").read_text())
    meta["classes"] = ["A", "B", "C"]
    (path / "pneumonia_cnn.json").write_text(json.dumps(meta))
    assert main(["predict", str(path), str(site.paths[0])]) == 2
    err = capsys.readouterr().err
    assert "2 classes" in err and "Traceback" not in err
    assert main(["search", str(site.root), "--random", '{"dropout": [0.1, 0.2]}',
                 "--n-iter", "0"]) == 2
    assert "n_iter must be an int >= 1" in capsys.readouterr().err
