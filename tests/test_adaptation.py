"""Label-free site adaptation: the score mixture, batch-norm recalibration, the adapted
model's life (predict, save, load, calibrate, track, serve) and the CLI."""

import json
import re
import warnings

import mlflow
import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.analysis import (
    ADAPTATION_FILE,
    MIN_SITE_FILMS,
    SiteAdaptedCNN,
    SiteCalibratedCNN,
    adapt,
    calibrate,
    estimate_site_mixture,
    load_model,
    recalibrate_batch_norm,
)
from pneumonia_cnn.cli import main
from pneumonia_cnn.estimator import FORMAT_VERSION
from pneumonia_cnn.data import DataError, load_image_folder, make_synthetic_dataset
from pneumonia_cnn.metrics import threshold_for_sensitivity


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _holdout(rng):
    neg = rng.normal(-4, 1.5, 200)
    pos = 6 - rng.gamma(2, 1.2, 500)  # skewed towards low scores, as real PNEUMONIA scores
    return _sigmoid(np.r_[neg, pos]), np.r_[np.zeros(200, int), np.ones(500, int)]


@pytest.mark.parametrize("prevalence", [0.3, 0.6, 0.85])
def test_mixture_recovers_the_prevalence_without_shift(prevalence):
    rng = np.random.default_rng(0)
    v, lab = _holdout(rng)
    n_pos = int(600 * prevalence)
    site = _sigmoid(np.r_[rng.normal(-4, 1.5, 600 - n_pos), 6 - rng.gamma(2, 1.2, n_pos)])
    fit = estimate_site_mixture(site, v, lab)
    assert fit["prevalence"] == pytest.approx(prevalence, abs=0.04)
    pos = site[600 - n_pos:]
    assert np.mean(pos >= fit["threshold"]) >= 0.93  # the target, 0.95, within sampling noise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_follows_normal_films_that_score_higher_at_the_site(seed):
    """The failure of the in-distribution rule on the record: at a new site NORMAL films score
    higher and PNEUMONIA films are sharper, so the hold-out's threshold over-keeps
    sensitivity and loses specificity. The adapted threshold moves up with the site."""
    rng = np.random.default_rng(seed)
    v = _sigmoid(np.r_[rng.normal(-5, 1, 200), 5 - rng.gamma(1.5, 1.5, 500)])
    lab = np.r_[np.zeros(200, int), np.ones(500, int)]
    neg, pos = rng.normal(-1.5, 1, 234), 6 - rng.gamma(1.5, 1.0, 390)
    fit = estimate_site_mixture(_sigmoid(np.r_[neg, pos]), v, lab)
    assert fit["site_logit"]["NORMAL"][0] > fit["holdout_logit"]["NORMAL"][0] + 2
    # the site's PNEUMONIA shape differs from the hold-out's: the prevalence is rougher here
    assert fit["prevalence"] == pytest.approx(390 / 624, abs=0.1)

    def rates(t):
        return np.mean(_sigmoid(pos) >= t), np.mean(_sigmoid(neg) < t)

    held = threshold_for_sensitivity(np.where(lab == 1, "PNEUMONIA", "NORMAL"), v, 0.95)
    sens, spec = rates(fit["threshold"])
    held_sens, held_spec = rates(held)
    assert held_spec < 0.85  # the record's failure, reproduced
    assert sens >= 0.95 and spec >= 0.9 and fit["threshold"] > held


@pytest.fixture(scope="module")
def fitted_with_holdout(tmp_path_factory):
    """A tiny network trained with a validation hold-out (adaptation starts from its scores)."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("adapt") / "train", n_normal=40,
                                  n_pneumonia=60, size=40, random_state=3)
    data = load_image_folder(root, 32, cache=False)
    params = {**TINY, "validation_fraction": 0.3, "threshold": "target", "epochs": 4,
              "patience": None}
    return PneumoniaCNN(**params).fit(data.X, data.y, groups=data.groups)


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    """Another synthetic site: 30 NORMAL and 40 PNEUMONIA films in class sub-folders."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("adapt_site") / "site", n_normal=30,
                                  n_pneumonia=40, size=44, random_state=11)


def test_fit_keeps_and_saves_its_holdout_scores(fitted_with_holdout, tmp_path):
    est = fitted_with_holdout
    assert est.validation_scores_ is not None
    assert set(np.unique(est.validation_labels_)) == {0, 1}
    assert len(est.validation_scores_) == len(est.validation_labels_)
    loaded = PneumoniaCNN.load(est.save(tmp_path / "m"))
    assert np.allclose(loaded.validation_scores_, est.validation_scores_)
    meta = json.loads((tmp_path / "m" / "pneumonia_cnn.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 4
    meta["validation_scores"][0] = 7.0  # not a probability: a damaged file
    (tmp_path / "m" / "pneumonia_cnn.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="validation_scores"):
        PneumoniaCNN.load(tmp_path / "m")


def test_batch_norm_recalibration_uses_the_site_statistics(fitted_with_holdout, site_dir):
    import keras

    site = load_image_folder(site_dir, 32, cache=False)
    before = [w.copy() for w in fitted_with_holdout.model_.get_weights()]
    adapted = recalibrate_batch_norm(fitted_with_holdout, site.X)
    # the original network is untouched
    assert all(np.array_equal(a, b) for a, b in
               zip(before, fitted_with_holdout.model_.get_weights()))
    bn = [layer for layer in adapted.model_.layers
          if isinstance(layer, keras.layers.BatchNormalization)][0]
    probe = keras.Model(adapted.model_.inputs, bn.input)
    acts = np.asarray(probe([adapted.feature_encoder_.transform(site.X)], training=False))
    assert np.allclose(np.asarray(bn.moving_mean), acts.reshape(-1, acts.shape[-1]).mean(0),
                       atol=1e-4)
    conv = [layer for layer in adapted.model_.layers if "conv" in layer.name][0]
    original = fitted_with_holdout.model_.get_layer(conv.name)
    assert np.array_equal(conv.get_weights()[0], original.get_weights()[0])


@pytest.mark.parametrize("network", [
    {"augmentation": "light"},  # one network whose only nested model is its augmentation
    {"backbone": "efficientnet-lite0", "freeze_blocks": 16, "augmentation": "light"},
])
def test_batch_norm_re_estimation_reaches_every_layer(network, site_dir, tmp_path):
    """Regression (site issue, finding 1): with augmentation inside the network, adapt said
    it re-estimated batch norm and changed nothing. Every batch-norm layer, in a backbone
    too, must get the site's statistics, and the scores must move."""
    import keras

    from pneumonia_cnn.network import flat_layers

    root = make_synthetic_dataset(tmp_path / "train", n_normal=16, n_pneumonia=16, size=40,
                                  random_state=3)
    data = load_image_folder(root, 32, cache=False)
    clf = PneumoniaCNN(**{**TINY, "epochs": 1, **network}).fit(data.X, data.y)
    site = load_image_folder(site_dir, 32, cache=False).X
    site = np.clip(site.astype(int) * 0.6 + 70, 0, 255).astype(np.uint8)  # another exposure
    adapted = recalibrate_batch_norm(clf, site)
    layers = [layer for layer in flat_layers(adapted.model_)
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert adapted.n_batch_norm_recalibrated_ == len(layers) > 0
    original = {layer.name: np.asarray(layer.moving_mean) for layer in
                flat_layers(clf.model_) if isinstance(layer, keras.layers.BatchNormalization)}
    assert all(not np.allclose(np.asarray(layer.moving_mean), original[layer.name])
               for layer in layers)
    assert not np.allclose(adapted.predict_proba(site), clf.predict_proba(site))


def test_adapt_predicts_saves_loads_and_calibrates(fitted_with_holdout, site_dir, tmp_path):
    site = load_image_folder(site_dir, 32, cache=False)
    model = adapt(fitted_with_holdout, site, n_bootstrap=20, track=False, batch_norm=True)
    a = model.adaptation_
    assert a["n_films"] == 70 and 0 < a["prevalence"] < 1
    lo, hi = a["prevalence_ci90"]
    assert lo <= hi
    assert a["batch_norm_recalibrated"] and a["batch_norm_layers"] == 2
    plain = adapt(fitted_with_holdout, site, n_bootstrap=20, track=False)  # the default
    assert not plain.adaptation_["batch_norm_recalibrated"]
    assert plain.adaptation_["batch_norm_layers"] == 0
    p = model.predict_proba(site.X)[:, 1]
    assert (model.predict(site.X) == np.where(p >= model.threshold_, "PNEUMONIA",
                                              "NORMAL")).all()
    path = model.save(tmp_path / "adapted")
    assert (path / ADAPTATION_FILE).is_file()
    loaded = load_model(path)
    assert isinstance(loaded, SiteAdaptedCNN)
    assert loaded.threshold_ == model.threshold_
    assert np.allclose(loaded.predict_proba(site.X), model.predict_proba(site.X), atol=1e-6)
    # calibrate accepts the adapted model; the calibrated one loads with its adaptation
    with pytest.warns(UserWarning):
        cal = calibrate(loaded, site, track=False)
    cal.save(tmp_path / "calibrated")
    again = load_model(tmp_path / "calibrated")
    assert isinstance(again, SiteCalibratedCNN)
    assert isinstance(again.estimator, SiteAdaptedCNN)
    assert np.allclose(again.predict_proba(site.X), cal.predict_proba(site.X), atol=1e-6)
    # a plain model saved over the folder leaves no stale adaptation behind
    fitted_with_holdout.save(tmp_path / "adapted")
    assert isinstance(load_model(tmp_path / "adapted"), PneumoniaCNN)


def test_adapt_warns_about_the_model_s_own_training_films(fitted_with_holdout, tmp_path):
    root = make_synthetic_dataset(tmp_path / "train", n_normal=40, n_pneumonia=60, size=40,
                                  random_state=3)  # the fixture's training films
    with pytest.warns(UserWarning, match="identical to training films of this model"):
        adapt(fitted_with_holdout, load_image_folder(root, 32, cache=False), n_bootstrap=5,
              track=False)


def test_calibrate_warns_about_the_model_s_own_unlabelled_training_films(
        fitted_with_holdout, site_dir, tmp_path):
    """Regression (site issue, finding 11): `calibrate --unlabelled` took the model's own
    training films without a word, where adapt warns."""
    root = make_synthetic_dataset(tmp_path / "train", n_normal=40, n_pneumonia=60, size=40,
                                  random_state=3)  # the fixture's training films
    site = load_image_folder(site_dir, 32, cache=False)
    with pytest.warns(UserWarning, match="unlabelled site films are identical to training"):
        calibrate(fitted_with_holdout, site.X, site.y,
                  unlabelled=load_image_folder(root, 32, cache=False).X, track=False)


def test_adapt_refuses_too_few_films_and_models_without_holdout_scores(
        fitted_with_holdout, fitted_tiny, site_dir):
    site = load_image_folder(site_dir, 32, cache=False)
    with pytest.raises(DataError, match=f"at least {MIN_SITE_FILMS} distinct unlabelled films"):
        adapt(fitted_with_holdout, site.X[:20], track=False)
    with pytest.raises(ValueError, match="kept no validation hold-out scores"):
        adapt(fitted_tiny, site.X, batch_norm=False, track=False)


def test_adaptation_run_is_nested_under_the_fit_and_the_logged_model_serves(
        fitted_with_holdout, site_dir):
    import copy

    est = copy.deepcopy(fitted_with_holdout)
    parent = mlflow.start_run(run_name="a fit").info.run_id
    mlflow.end_run()
    est.mlflow_run_id_ = parent
    site = load_image_folder(site_dir, 32, cache=False)
    model = adapt(est, site, n_bootstrap=10, track=True, data_name="site")
    run = mlflow.get_run(model.mlflow_run_id_)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["kind"] == "adaptation"
    # named by its films' count and digest: two sites named alike do not share a name
    assert re.fullmatch(r"adapt \S*site \(70 films, [0-9a-f]{6}\)", run.info.run_name)
    assert run.data.metrics["estimated_prevalence"] == pytest.approx(
        model.adaptation_["prevalence"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.mlflow_model_id_}")
    out = pyfunc.predict(site.X[:5, ..., 0])
    assert np.allclose(out["probability"], model.predict_proba(site.X[:5])[:, 1], atol=1e-5)
    assert (out["label"] == model.predict(site.X[:5])).all()


def test_cli_adapt_then_evaluate_and_predict(fitted_with_holdout, site_dir, tmp_path, capsys):
    fitted_with_holdout.save(tmp_path / "model")
    assert main(["adapt", str(tmp_path / "model"), str(site_dir), "--model-out",
                 str(tmp_path / "adapted"), "--no-tracking"]) == 0
    out = capsys.readouterr().out
    assert "their labels are not" in out  # class sub-folders: films used, labels ignored
    assert "Estimated prevalence of PNEUMONIA" in out and "90% interval" in out
    assert "Expected at this threshold: sensitivity" in out
    assert main(["evaluate", str(tmp_path / "adapted"), str(site_dir), "--no-tracking",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    threshold = json.loads((tmp_path / "adapted" / ADAPTATION_FILE).read_text())["threshold_"]
    assert result["threshold"] == pytest.approx(threshold)
    assert main(["predict", str(tmp_path / "adapted"), str(site_dir / "NORMAL")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 30
    films = sorted((site_dir / "PNEUMONIA").iterdir())[:2]
    assert main(["explain", str(tmp_path / "adapted"), *map(str, films), "--out",
                 str(tmp_path / "heat")]) == 0
    assert len(list((tmp_path / "heat").glob("*.png"))) == 2


def test_cli_adapt_errors_are_one_line(fitted_with_holdout, tmp_path, capsys):
    fitted_with_holdout.save(tmp_path / "model")
    few = make_synthetic_dataset(tmp_path / "few", n_normal=5, n_pneumonia=5, size=40,
                                 random_state=2)
    assert main(["adapt", str(tmp_path / "model"), str(few), "--model-out",
                 str(tmp_path / "out"), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "at least 50 distinct unlabelled films" in err and "Traceback" not in err
    assert main(["adapt", str(tmp_path / "model"), str(tmp_path / "nowhere"), "--model-out",
                 str(tmp_path / "out")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "root" / "train").mkdir(parents=True)
    (tmp_path / "root" / "test").mkdir()
    assert main(["adapt", str(tmp_path / "model"), str(tmp_path / "root"), "--model-out",
                 str(tmp_path / "out")]) == 2
    assert "holds split folders (test, train)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_calibrate_with_unlabelled_site_films_uses_the_site_mixture(
        fitted_with_holdout, site_dir, tmp_path, capsys):
    site = load_image_folder(site_dir, 32, cache=False)
    labelled = np.r_[np.flatnonzero(site.y == "NORMAL")[:10],
                     np.flatnonzero(site.y == "PNEUMONIA")[:10]]
    model = calibrate(fitted_with_holdout, site.X[labelled], site.y[labelled],
                      unlabelled=site.X, track=False)
    c = model.calibration_
    assert c["rule"] == "mixture" and c["n_unlabelled"] == 70
    assert 0 <= model.threshold_ <= 1
    loaded = load_model(model.save(tmp_path / "cal"))
    assert loaded.threshold_ == model.threshold_
    assert loaded.calibration_["rule"] == "mixture"
    # the CLI: labelled films in a folder, the unlabelled ones in another
    fitted_with_holdout.save(tmp_path / "model")
    assert main(["calibrate", str(tmp_path / "model"), str(site_dir), "--unlabelled",
                 str(site_dir / "PNEUMONIA"), "--model-out", str(tmp_path / "cal2"),
                 "--no-tracking"]) == 0
    out = capsys.readouterr().out
    assert "Threshold from the site's score distributions (40 unlabelled films" in out
    assert main(["calibrate", str(tmp_path / "model"), str(site_dir), "--model-out",
                 str(tmp_path / "cal3"), "--no-tracking"]) == 0
    assert "Promise: sensitivity >= 0.95 on the site's next films with probability" in (
        capsys.readouterr().out)


def test_format_2_folders_load_and_adapt_says_what_they_lack(fitted_with_holdout, site_dir,
                                                             tmp_path):
    """A folder of the previous release: no hold-out scores, no border_mask, explicit
    architecture. It loads with its own values and predicts as before; adapt refuses it
    with the reason."""
    path = fitted_with_holdout.save(tmp_path / "v2")
    meta_file = path / "pneumonia_cnn.json"
    meta = json.loads(meta_file.read_text())
    meta["format_version"] = 2
    for k in ("validation_scores", "validation_labels"):
        meta.pop(k)
    meta["params"].pop("border_mask")
    meta["params"].update(filters=[4, 8], convs_per_block=1, global_pooling=False,
                          dense_units=8, augmentation=None)
    meta_file.write_text(json.dumps(meta))
    old = PneumoniaCNN.load(path)
    assert old.validation_scores_ is None and old.border_mask == 0.0
    assert old.architecture()["filters"] == (4, 8)
    site = load_image_folder(site_dir, 32, cache=False)
    np.testing.assert_allclose(old.predict_proba(site.X),
                               fitted_with_holdout.predict_proba(site.X), rtol=1e-5)
    with pytest.raises(ValueError, match="kept no validation hold-out scores"):
        adapt(old, site, batch_norm=False, track=False)


def test_cli_calibrates_an_adapted_model_folder_with_its_adaptation(fitted_with_holdout,
                                                                    site_dir, tmp_path):
    fitted_with_holdout.save(tmp_path / "model")
    assert main(["adapt", str(tmp_path / "model"), str(site_dir), "--model-out",
                 str(tmp_path / "adapted"), "--no-tracking"]) == 0
    assert main(["calibrate", str(tmp_path / "adapted"), str(site_dir), "--model-out",
                 str(tmp_path / "cal"), "--threshold", "0.5", "--no-tracking"]) == 0
    model = load_model(tmp_path / "cal")
    assert isinstance(model, SiteCalibratedCNN) and isinstance(model.estimator, SiteAdaptedCNN)


def test_normal_films_that_score_like_pneumonia_make_the_specificity_unknown(
        fitted_with_holdout):
    """Without labels, NORMAL films moved far up cannot be told from a higher prevalence:
    the estimate must say so, not print specificity 1.0."""
    rng = np.random.default_rng(0)
    v = _sigmoid(np.r_[rng.normal(-5, 1, 200), 5 - rng.gamma(1.5, 1.5, 500)])
    lab = np.r_[np.zeros(200, int), np.ones(500, int)]
    site = _sigmoid(np.r_[5 - rng.gamma(1.5, 1.5, 150), 5 - rng.gamma(1.5, 1.5, 450)])
    fit = estimate_site_mixture(site, v, lab)
    assert fit["prevalence"] > 0.95 and fit["expected_specificity"] is None
    import copy

    est = copy.deepcopy(fitted_with_holdout)
    est.validation_scores_, est.validation_labels_ = v, lab
    with pytest.warns(UserWarning, match="specificity is unknown"):
        model = SiteAdaptedCNN(est, n_bootstrap=10)._fit_scores(site)
    assert model.adaptation_["expected_specificity"] is None
    assert model.adaptation_["expected_specificity_ci90"] is None


@pytest.mark.parametrize("field, value", [("threshold_", float("nan")), ("threshold_", -3),
                                          ("site_scores", [0.5, float("nan")])])
def test_a_damaged_adaptation_file_is_refused(fitted_with_holdout, site_dir, tmp_path, field,
                                              value):
    site = load_image_folder(site_dir, 32, cache=False)
    path = adapt(fitted_with_holdout, site, n_bootstrap=5, track=False).save(tmp_path / "a")
    info = json.loads((path / ADAPTATION_FILE).read_text())
    info[field] = value
    (path / ADAPTATION_FILE).write_text(json.dumps(info))
    with pytest.raises(DataError, match="damaged"):
        load_model(path)


def test_cli_adapt_on_part_of_a_labelled_site_evaluates_on_the_rest(fitted_with_holdout,
                                                                    site_dir, tmp_path,
                                                                    capsys):
    """Issue 20: `adapt --evaluate-fraction` splits the site's films by patient, adapts on
    one part (labels unused) and evaluates the adapted model and its network on the other."""
    fitted_with_holdout.save(tmp_path / "model")
    assert main(["adapt", str(tmp_path / "model"), str(site_dir), "--model-out",
                 str(tmp_path / "adapted"), "--no-tracking", "--evaluate-fraction", "0.2",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    held = summary["evaluation"]["n_images"]
    assert summary["n_films"] + held == 70 and 0 < held < 35
    assert summary["evaluation"]["data"].endswith("(evaluation part)")
    assert set(summary["evaluation"]) >= {"model", "network"}
    assert summary["evaluation"]["model"]["threshold"] == pytest.approx(summary["threshold"])


def test_adapting_an_adapted_or_calibrated_model_says_why(fitted_with_holdout, site_dir):
    """Regression (site issue, finding 12): this said the model "is not fitted yet"."""
    adapted = adapt(fitted_with_holdout, site_dir, track=False)
    calibrated = calibrate(fitted_with_holdout, site_dir)
    for model in (adapted, calibrated):
        with pytest.raises(ValueError, match="not an adapted or calibrated model"):
            adapt(model, site_dir, track=False)


@pytest.mark.parametrize("kind", ["adapted", "calibrated_with_unlabelled"])
def test_an_edited_operating_point_is_refused_on_load(fitted_with_holdout, site_dir, tmp_path,
                                                      kind):
    """Regression (site issue, finding 4): a plausible but edited threshold in
    site_adaptation.json, or in a calibration made with unlabelled films, was used as it
    stood. Both are rebuilt from the saved scores on load and compared."""
    from pneumonia_cnn.analysis import CALIBRATION_FILE

    site = load_image_folder(site_dir, 32, cache=False)
    if kind == "adapted":
        model, name = adapt(fitted_with_holdout, site, n_bootstrap=5, track=False), \
            ADAPTATION_FILE
    else:
        labelled = np.r_[np.flatnonzero(site.y == "NORMAL")[:10],
                         np.flatnonzero(site.y == "PNEUMONIA")[:10]]
        model, name = calibrate(fitted_with_holdout, site.X[labelled], site.y[labelled],
                                unlabelled=site.X, track=False), CALIBRATION_FILE
    path = model.save(tmp_path / kind)
    assert load_model(path).threshold_ == pytest.approx(model.threshold_, rel=1e-6)
    info = json.loads((path / name).read_text())
    info["threshold_"] = model.threshold_ * 0.8
    (path / name).write_text(json.dumps(info))
    with pytest.raises(DataError, match="edited"):
        load_model(path)


def test_the_network_loader_refuses_to_drop_a_site_s_operating_point(fitted_with_holdout,
                                                                     site_dir, tmp_path):
    """Regression (site issue, finding 5): PneumoniaCNN.load on an adapted or calibrated
    folder returned the bare network at its original threshold, without a word."""
    adapted = adapt(fitted_with_holdout, site_dir, n_bootstrap=5, track=False)
    calibrated = calibrate(fitted_with_holdout, site_dir)
    for name, model in (("adapted", adapted), ("calibrated", calibrated)):
        path = model.save(tmp_path / name)
        with pytest.raises(DataError, match=r"analysis.load_model"):
            PneumoniaCNN.load(path)
        net = PneumoniaCNN.load(path, network_only=True)
        assert net.threshold_ == pytest.approx(fitted_with_holdout.threshold_)
        assert load_model(path).threshold_ == pytest.approx(model.threshold_)


def test_copies_of_one_film_count_once(fitted_with_holdout, site_dir):
    """Regression (site issue, finding 10): 50 copies of one film passed the 50-film
    minimum and gave a confident, meaningless operating point."""
    site = load_image_folder(site_dir, 32, cache=False)
    copies = np.repeat(site.X[:1], MIN_SITE_FILMS + 10, axis=0)
    with pytest.warns(UserWarning, match=f"{MIN_SITE_FILMS + 9} of the {MIN_SITE_FILMS + 10} "
                                         "site films are pixel-identical"), \
            pytest.raises(DataError, match="distinct unlabelled films of the site, got 1"):
        adapt(fitted_with_holdout, copies, n_bootstrap=5, track=False)
    # the distinct films of a site padded with copies: adapted on the distinct ones only
    padded = np.concatenate([site.X, site.X[:20]])
    with pytest.warns(UserWarning, match="20 of the 90 site films are pixel-identical"):
        model = adapt(fitted_with_holdout, padded, n_bootstrap=5, track=False)
    assert model.adaptation_["n_films"] == 70
    with pytest.warns(UserWarning, match="pixel-identical"):
        direct = SiteAdaptedCNN(fitted_with_holdout, n_bootstrap=5).fit(padded)
    assert direct.adaptation_["n_films"] == 70


@pytest.mark.parametrize("prevalence", [1.0, 0.5])
def test_the_sensitivity_interval_is_that_of_the_chosen_threshold(fitted_with_holdout,
                                                                  prevalence):
    """Regression (site issue, finding 2): on a site of PNEUMONIA films only, adapt printed
    sensitivity 0.950 with the interval 0.950-0.950, which said nothing (each resample's
    own threshold keeps the target by construction). The interval is now that of the
    chosen threshold over resamples of the site's films."""
    import copy

    rng = np.random.default_rng(4)
    v, lab = _holdout(rng)
    n_pos = int(300 * prevalence)
    site = _sigmoid(np.r_[rng.normal(-4, 1.5, 300 - n_pos), 6 - rng.gamma(2, 1.2, n_pos)])
    est = copy.deepcopy(fitted_with_holdout)
    est.validation_scores_, est.validation_labels_ = v, lab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = SiteAdaptedCNN(est, n_bootstrap=60)._fit_scores(site).adaptation_
    lo, hi = a["expected_sensitivity_ci90"]
    assert hi - lo > 0.01
    assert lo <= a["expected_sensitivity"] <= hi


def test_a_threshold_that_calls_every_film_pneumonia_is_warned_about(fitted_with_holdout,
                                                                     site_dir):
    """Regression (site issue, finding 16): calibrate --target-sensitivity 1 --unlabelled
    gave threshold 1.6e-28 (every film PNEUMONIA) without a word."""
    site = load_image_folder(site_dir, 32, cache=False)
    with pytest.warns(UserWarning, match="calls every film of the site PNEUMONIA"):
        model = calibrate(fitted_with_holdout, site.X, site.y, target_sensitivity=1.0,
                          unlabelled=site.X, track=False)
    assert model.calibration_["specificity"] == 0.0


def test_an_edited_threshold_of_the_network_itself_is_refused(fitted_with_holdout, tmp_path):
    """The class of site issue finding 4: every file that holds an operating point is
    checked on load against what it was derived from, the network's own
    pneumonia_cnn.json (threshold rule on its saved hold-out scores) included."""
    from pneumonia_cnn.utils import META_FILE

    path = fitted_with_holdout.save(tmp_path / "m")
    assert PneumoniaCNN.load(path).threshold_ == pytest.approx(fitted_with_holdout.threshold_)
    meta = json.loads((path / META_FILE).read_text())
    meta["threshold"] = fitted_with_holdout.threshold_ * 0.8
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="edited"):
        PneumoniaCNN.load(path)


def test_evaluating_a_calibrated_adapted_model_writes_its_error_gallery(fitted_with_holdout,
                                                                        site_dir, tmp_path):
    """User's path issue, item 6: `evaluate` of a model adapted, then calibrated (two
    wrappers) wrote no error gallery and no training history."""
    from pneumonia_cnn.analysis import evaluate

    adapted = adapt(fitted_with_holdout, site_dir, n_bootstrap=5, track=False)
    model = calibrate(adapted, site_dir, track=False)
    result = evaluate(model, str(site_dir), out_dir=tmp_path / "eval", track=False)
    assert {"error_gallery", "history"} <= set(result["figures"])
    assert (tmp_path / "eval" / "error_gallery.png").is_file()


def test_batch_norm_re_estimation_on_a_one_class_site_is_warned_about(fitted_with_holdout,
                                                                      tmp_path):
    """Regression (site issue, finding 2): with batch-norm re-estimation, a site of
    PNEUMONIA films only moved the scores toward NORMAL and the promise failed without a
    word. The site's mix is read before the re-estimation, and a site of mostly one class
    is warned about."""
    est = fitted_with_holdout  # its own PNEUMONIA films (the fixture's data, made again)
    root = make_synthetic_dataset(tmp_path / "train", n_normal=40, n_pneumonia=60, size=40,
                                  random_state=3)
    data = load_image_folder(root, 32, cache=False)
    pneumonia = data.X[data.y == "PNEUMONIA"]
    with pytest.warns(UserWarning, match="mostly one class"):
        adapt(est, pneumonia, batch_norm=True, n_bootstrap=5, track=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*identical to training")
        warnings.filterwarnings("ignore", message=".*almost no NORMAL")
        adapt(est, pneumonia, batch_norm=False, n_bootstrap=5, track=False)


def test_cli_adapt_says_why_an_estimate_has_no_interval(fitted_with_holdout, site_dir,
                                                         tmp_path, capsys):
    """Regression (site issue, finding 16): without an interval adapt printed a bare point
    estimate and did not say why."""
    fitted_with_holdout.save(tmp_path / "model")
    assert main(["adapt", str(tmp_path / "model"), str(site_dir), "--model-out",
                 str(tmp_path / "a"), "--no-tracking", "--n-bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    line = next(t for t in out.splitlines() if t.startswith("Estimated prevalence"))
    assert "(no interval: no resamples were asked for)" in line
