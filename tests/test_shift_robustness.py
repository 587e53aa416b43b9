"""Shift-stress protocol and the robustness levers (intensity normalisation, label smoothing,
ensembles, test-time augmentation, acquisition augmentation)."""

import json
import pickle

import mlflow
import numpy as np
import pytest
from conftest import TINY
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_validate

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.analysis import PERTURBATIONS, perturb, stress_scoring, stress_test
from pneumonia_cnn.network import (
    TTA_VIEWS,
    augmentation_factors,
    normalize_intensity,
    tta_views,
)


def _batch(n=4, size=96):
    """Film-like test images at the default input size: a grey ramp with texture."""
    ramp = np.tile(np.linspace(30, 220, size), (size, 1))
    noise = np.random.default_rng(0).integers(-20, 20, size=(n, size, size))
    return np.clip(ramp[None] + noise, 0, 255).astype(np.uint8)[..., None]


# ---------------------------------------------------------------------------------------------
# Perturbations
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_every_perturbation_changes_images_more_with_severity(name):
    X = _batch()
    diffs = []
    for s in (1, 2, 3):
        out = perturb(X, name, s, random_state=0)
        assert out.shape == X.shape and out.dtype == np.uint8
        diffs.append(np.abs(out.astype(float) - X).mean())
    assert diffs[0] > 0.2, f"{name} severity 1 leaves the images unchanged"
    assert diffs[2] > diffs[0], f"{name}: severity 3 should change more than severity 1"


def test_perturbations_are_deterministic_for_a_seed():
    X = _batch()
    for name in ("noise", "rotation", "position"):
        a, b = perturb(X, name, 2, random_state=3), perturb(X, name, 2, random_state=3)
        assert np.array_equal(a, b)
    assert not np.array_equal(perturb(X, "noise", 2, 3), perturb(X, "noise", 2, 4))


def test_unknown_perturbation_and_severity_are_refused():
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        perturb(_batch(), "fog", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        perturb(_batch(), "blur", 4)


def test_darker_and_brighter_move_the_mean_the_right_way():
    X = _batch()
    assert perturb(X, "darker", 2).mean() < X.mean() < perturb(X, "brighter", 2).mean()


# ---------------------------------------------------------------------------------------------
# The protocol and its scorer
# ---------------------------------------------------------------------------------------------
def test_stress_test_reports_per_perturbation_and_averages(fitted_tiny, synthetic_data):
    d = synthetic_data
    r = stress_test(fitted_tiny, d.X, d.y, perturbations=["darker", "blur"], severities=(1, 3))
    assert [row["perturbation"] for row in r.table] == ["clean", "darker", "darker", "blur",
                                                         "blur"]
    for key in ("stress_roc_auc", "stress_sensitivity", "stress_specificity",
                "stress_normal_shift", "clean_roc_auc", "stress_min_specificity"):
        assert np.isfinite(r.summary[key]), key
    perturbed = r.table[1:]
    assert r.summary["stress_specificity"] == pytest.approx(
        np.mean([row["specificity"] for row in perturbed]))
    assert r.threshold == fitted_tiny.threshold_
    again = stress_test(fitted_tiny, d.X, d.y, perturbations=["darker", "blur"],
                        severities=(1, 3))
    assert again.summary == r.summary  # deterministic
    json.dumps(r.to_dict())  # serialisable


def test_stress_normal_shift_is_measured_against_clean(synthetic_data):
    class Brightness:  # a "model" whose P(PNEUMONIA) is the mean grey level
        classes_ = np.array(["NORMAL", "PNEUMONIA"])
        image_size = 32
        threshold = 0.5

        def predict_proba(self, X):
            p = np.asarray(X, float).mean(axis=(1, 2, 3)) / 255
            return np.column_stack([1 - p, p])

    d = synthetic_data
    r = stress_test(Brightness(), d.X, d.y, perturbations=["brighter", "darker"],
                    severities=(2,))
    assert r.by_perturbation["brighter"]["normal_shift"] > 0.02
    assert r.by_perturbation["darker"]["normal_shift"] < -0.02


def test_stress_scoring_works_as_a_search_scorer(synthetic_data):
    d = synthetic_data
    res = cross_validate(PneumoniaCNN(**TINY), d.X, d.y, groups=d.groups,
                         cv=GroupKFold(2), scoring=stress_scoring)
    for key in ("test_roc_auc", "test_accuracy", "test_stress_roc_auc",
                "test_stress_specificity", "test_stress_normal_shift"):
        assert key in res and np.isfinite(res[key]).all(), key


def test_a_tracked_fit_logs_its_stress_test(synthetic_data):
    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "validation_fraction": 0.3}).fit(d)
    run = mlflow.get_run(clf.mlflow_run_id_)
    for key in ("stress_roc_auc", "stress_specificity", "stress_sensitivity",
                "stress_normal_shift", "roc_auc"):  # roc_auc: the clean hold-out's
        assert key in run.data.metrics, key
    assert run.data.metrics["roc_auc"] == pytest.approx(clf.stress_["clean_roc_auc"])
    assert clf.stress_["stress_specificity"] == pytest.approx(
        run.data.metrics["stress_specificity"])
    artifact = mlflow.artifacts.download_artifacts(run_id=clf.mlflow_run_id_,
                                                   artifact_path="stress/stress_test.json")
    assert json.load(open(artifact))["summary"]["stress_roc_auc"] == pytest.approx(
        clf.stress_["stress_roc_auc"])


# ---------------------------------------------------------------------------------------------
# Levers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["standardize", "equalize", "clahe"])
def test_intensity_normalisation_removes_a_global_exposure_change(method):
    X = _batch()
    brighter = perturb(X, "brighter", 2)
    before = np.abs(X.astype(float) - brighter).mean()
    after = np.abs(normalize_intensity(X, method).astype(float)
                   - normalize_intensity(brighter, method)).mean()
    # global methods undo a monotone grey-level change almost fully; CLAHE (local and
    # clip-limited) about halves it
    assert after < (0.75 if method == "clahe" else 0.5) * before, (before, after)
    out = normalize_intensity(X, method)
    assert out.dtype == np.uint8 and out.shape == X.shape
    assert normalize_intensity(np.zeros_like(X), method).shape == X.shape  # flat images


def test_intensity_norm_is_applied_at_predict_time_too(synthetic_data):
    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, "intensity_norm": "equalize"}).fit(d.X, d.y)
    # equalisation makes the prediction blind to a monotone grey-level change
    p = clf.predict_proba(d.X)[:, 1]
    p_gamma = clf.predict_proba(perturb(d.X, "darker", 1))[:, 1]
    plain = PneumoniaCNN(**TINY).fit(d.X, d.y)
    shift_plain = np.abs(plain.predict_proba(d.X)[:, 1]
                         - plain.predict_proba(perturb(d.X, "darker", 1))[:, 1]).mean()
    assert np.abs(p - p_gamma).mean() < shift_plain


@pytest.mark.parametrize("params, match", [
    ({"intensity_norm": "hist"}, "intensity_norm must be one of"),
    ({"n_networks": 0}, "n_networks must be an int >= 1"),
    ({"tta": 9}, "tta must be an int from 0"),
    ({"tta": True}, "tta must be an int from 0"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be a number in \[0, 1\)"),
])
def test_bad_lever_values_are_refused_before_training(synthetic_data, params, match):
    with pytest.raises(ValueError, match=match):
        PneumoniaCNN(**{**TINY, **params}).fit(synthetic_data.X, synthetic_data.y)


def test_tta_averages_fixed_views(fitted_tiny, synthetic_data):
    X = synthetic_data.X[:6]
    views = tta_views(X, 3)
    assert len(views) == 3 and all(v.shape == X.shape for v in views)
    clf = pickle.loads(pickle.dumps(fitted_tiny)).set_params(tta=3)
    expected = np.mean([fitted_tiny.predict_proba(v) for v in [X, *views]], axis=0)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    assert len(TTA_VIEWS) == 8


def test_ensemble_is_one_estimator_that_averages_its_members(synthetic_data, tmp_path):
    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, "n_networks": 3, "validation_fraction": 0.25}).fit(d)
    members = [layer for layer in clf.model_.layers if layer.name.startswith("member")]
    assert len(members) == 3
    p = clf.predict_proba(d.X)[:, 1]
    member_mean = np.mean([m.predict(d.X, verbose=0)[:, 0] for m in members], axis=0)
    np.testing.assert_allclose(p, member_mean, rtol=1e-5, atol=1e-6)
    assert len(clf.member_histories_) == 3 and clf.best_epoch_ is not None
    # members differ (different seeds), and the fit is reproducible
    assert np.std([m.predict(d.X[:8], verbose=0)[:, 0] for m in members], axis=0).max() > 1e-4
    again = PneumoniaCNN(**{**TINY, "n_networks": 3, "validation_fraction": 0.25}).fit(d)
    np.testing.assert_allclose(again.predict_proba(d.X)[:, 1], p, rtol=1e-5, atol=1e-6)
    # saves, loads, pickles and clones as one estimator
    loaded = PneumoniaCNN.load(clf.save(tmp_path / "ens"))
    np.testing.assert_allclose(loaded.predict_proba(d.X)[:, 1], p, rtol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(d.X)[:, 1], p,
                               rtol=1e-6)
    assert clone(clf).get_params()["n_networks"] == 3


def test_label_smoothing_is_the_training_loss(synthetic_data):
    import keras

    d = synthetic_data
    clf = PneumoniaCNN(**TINY, label_smoothing=0.2).fit(d.X, d.y)
    assert isinstance(clf.model_.loss, keras.losses.BinaryCrossentropy)
    assert clf.model_.loss.get_config()["label_smoothing"] == pytest.approx(0.2)
    # smoothed targets 0.1 / 0.9: even a perfect prediction of the hard labels has a loss
    y_true = np.array([[0.0], [1.0]], np.float32)
    assert float(clf.model_.loss(y_true, np.array([[1e-7], [1 - 1e-7]], np.float32))) > 0.3
    with pytest.raises(ValueError, match="label_smoothing needs loss='binary_crossentropy'"):
        PneumoniaCNN(**TINY, label_smoothing=0.2, loss="mse").fit(d.X, d.y)


def test_acquisition_preset_has_intensity_and_sharpness_factors():
    f = augmentation_factors("acquisition")
    assert {"contrast", "brightness", "blur", "sharpness", "noise"} <= set(f)
    assert "flip" not in f


def test_format_1_model_folders_load_with_the_levers_off(fitted_tiny, synthetic_data, tmp_path):
    path = fitted_tiny.save(tmp_path / "old")
    meta_file = path / "pneumonia_cnn.json"
    meta = json.loads(meta_file.read_text())
    meta["format_version"] = 1
    for k in ("intensity_norm", "label_smoothing", "n_networks", "tta"):
        meta["params"].pop(k)
    meta_file.write_text(json.dumps(meta))
    old = PneumoniaCNN.load(path)
    assert (old.intensity_norm, old.tta, old.n_networks, old.label_smoothing) == (None, 0, 1, 0.0)
    np.testing.assert_allclose(old.predict_proba(synthetic_data.X),
                               fitted_tiny.predict_proba(synthetic_data.X), rtol=1e-6)


def test_target_sensitivity_sets_the_most_specific_threshold_on_the_hold_out(synthetic_data):
    from pneumonia_cnn.data import grouped_split
    from pneumonia_cnn.metrics import (
        threshold_for_sensitivity,
        threshold_for_sensitivity_hd,
    )

    d = synthetic_data
    kw = {**TINY, "validation_fraction": 0.3}
    clf = PneumoniaCNN(**{**kw, "threshold": "target"}, target_sensitivity=0.9).fit(d)
    _, va = grouped_split(d.y, d.groups, 0.3, random_state=0)
    p = clf.predict_proba(d.X[va])[:, 1]
    y_pos = d.y[va] == "PNEUMONIA"
    assert clf.threshold_ == pytest.approx(threshold_for_sensitivity_hd(d.y[va], p, 0.9))
    conformal = PneumoniaCNN(**{**kw, "threshold": "conformal"}, target_sensitivity=0.9).fit(d)
    assert np.mean(p[y_pos] >= conformal.threshold_) >= 0.9
    assert conformal.threshold_ == threshold_for_sensitivity(d.y[va], p, 0.9)
    assert (clf.predict(d.X) == np.where(clf.predict_proba(d.X)[:, 1] >= clf.threshold_,
                                         "PNEUMONIA", "NORMAL")).all()
    with pytest.raises(ValueError, match="target_sensitivity must be a number in"):
        PneumoniaCNN(**{**kw, "threshold": "target"}, target_sensitivity=0).fit(d)
    with pytest.raises(ValueError, match="threshold must be a number in"):
        PneumoniaCNN(**{**kw, "threshold": 1.5}).fit(d)
    with pytest.warns(UserWarning, match="needs a validation hold-out"):
        PneumoniaCNN(**{**TINY, "threshold": "target"}, target_sensitivity=0.9).fit(d.X, d.y)
    # a fixed threshold is used as it is, whatever target_sensitivity says
    fixed = PneumoniaCNN(**{**kw, "threshold": 0.3}, target_sensitivity=0.9).fit(d)
    assert fixed.threshold_ == 0.3


def test_threshold_for_sensitivity_by_hand():
    from pneumonia_cnn.metrics import threshold_for_sensitivity

    y = np.array(["PNEUMONIA"] * 4 + ["NORMAL"] * 3)
    s = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1])
    # 4 positives: j = floor(5 * (1 - target)), the j-th smallest positive score
    assert threshold_for_sensitivity(y, s, 0.75) == 0.3   # j = 1: all 4 kept
    assert threshold_for_sensitivity(y, s, 1.0) == 0.3    # j = 0 -> 1 (cannot promise 1.0)
    assert threshold_for_sensitivity(y, s, 0.5) == 0.6    # j = 2
    assert threshold_for_sensitivity(y, s, 0.2) == 0.9    # j = 4


def test_conformal_threshold_keeps_sensitivity_on_new_images():
    """Many simulated calibration sets of 20 positives: the sensitivity on new positives
    averages at least the target (it would fall short with the in-sample rule)."""
    from pneumonia_cnn.metrics import threshold_for_sensitivity

    rng = np.random.default_rng(0)
    y = np.array(["PNEUMONIA"] * 20 + ["NORMAL"] * 20)
    achieved = []
    for _ in range(400):
        s = np.r_[rng.beta(5, 2, 20), rng.beta(2, 5, 20)]
        t = threshold_for_sensitivity(y, s, 0.9)
        achieved.append(np.mean(rng.beta(5, 2, 2000) >= t))
    assert np.mean(achieved) >= 0.9


class _StopAt:
    """A Keras callback that raises KeyboardInterrupt at the n-th epoch end of the process
    (counted across clones, as an ensemble's members are clones)."""

    count = 0

    def __new__(cls, n):
        import keras

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                _StopAt.count += 1
                if _StopAt.count == n:
                    raise KeyboardInterrupt

        return Stop()


def test_interrupted_ensemble_keeps_the_members_it_trained(synthetic_data):
    d = synthetic_data
    _StopAt.count = 0
    clf = PneumoniaCNN(**{**TINY, "n_networks": 3, "epochs": 2, "validation_fraction": 0.25,
                          "callbacks": [_StopAt(3)]})  # member 2, epoch 1
    with pytest.raises(KeyboardInterrupt):
        clf.fit(d)
    assert clf.interrupted_
    members = [la for la in clf.model_.layers if la.name.startswith("member")]
    assert len(members) == 2  # the finished member and the interrupted one's best epoch
    assert clf.predict_proba(d.X).shape == (len(d.X), 2)


def test_ensemble_operating_point_is_chosen_on_the_shared_hold_out(synthetic_data):
    from pneumonia_cnn.data import grouped_split
    from pneumonia_cnn.metrics import threshold_for_sensitivity

    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, "n_networks": 2, "validation_fraction": 0.3,
                          "threshold": "conformal", "target_sensitivity": 0.9}).fit(d)
    _, va = grouped_split(d.y, d.groups, 0.3, random_state=0)
    p = clf.predict_proba(d.X[va])[:, 1]
    assert clf.threshold_ == threshold_for_sensitivity(d.y[va], p, 0.9)


def test_defaults_are_the_measured_configuration():
    from pneumonia_cnn.estimator import by_backbone

    clf = PneumoniaCNN()
    assert (clf.backbone, clf.input_size(), clf.architecture()["augmentation"],
            clf.intensity_norm, by_backbone(clf, "n_networks"), clf.freeze_blocks,
            clf.threshold, clf.target_sensitivity) == (
        "efficientnet-lite0", 128, "light", "clahe", 1, 8, "target", 0.95)
    scratch = PneumoniaCNN(backbone=None)
    assert (scratch.input_size(), scratch.architecture()["augmentation"],
            by_backbone(scratch, "n_networks"), by_backbone(scratch, "epochs")) == (
        96, "acquisition", 3, 14)
    assert PneumoniaCNN(backbone=None, image_size=28).architecture()["augmentation"] == "light"


def test_odd_inputs_to_the_stress_test_are_converted_or_refused(fitted_tiny, synthetic_data):
    d = synthetic_data
    with pytest.raises(ValueError, match="grayscale images"):
        perturb(np.zeros((2, 8, 8, 3), np.uint8), "blur", 1)
    with pytest.raises(ValueError, match="pixel values 0-255"):
        perturb(np.full((2, 8, 8), 300.0), "blur", 1)
    # RGB arrays reach the network as predict sees them (luminance), not as a red channel
    rgb = np.repeat(d.X, 3, axis=-1)
    a = stress_test(fitted_tiny, rgb, d.y, perturbations=["blur"], severities=(1,))
    b = stress_test(fitted_tiny, d.X, d.y, perturbations=["blur"], severities=(1,))
    assert a.summary == pytest.approx(b.summary, nan_ok=True)


def test_augmentation_factors_keras_caps_at_one_are_named():
    for key in ("blur", "sharpness", "noise"):
        with pytest.raises(ValueError, match=f"augmentation {key} must be between 0 and 1"):
            augmentation_factors({key: 6})
