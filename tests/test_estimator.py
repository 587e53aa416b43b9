"""PneumoniaCNN as a scikit-learn classifier."""

import copy
import pickle

import numpy as np
import pytest
from conftest import TINY
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, check_cv
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.data import DataError


def test_is_a_classifier_and_cv_is_stratified():
    clf = PneumoniaCNN()
    assert is_classifier(clf)
    # with scikeras' own tags this would be a plain KFold (silently unstratified)
    cv = check_cv(5, np.array(["NORMAL", "PNEUMONIA"] * 5), classifier=is_classifier(clf))
    assert type(cv).__name__ == "StratifiedKFold"


def test_init_only_stores_and_params_round_trip():
    clf = PneumoniaCNN(backbone=None, filters=(8, 16), augmentation={"zoom": 0.1},
                       optimizer__weight_decay=1e-4)
    params = clf.get_params()
    assert params["filters"] == (8, 16) and params["optimizer__weight_decay"] == 1e-4
    c = clone(clf)
    assert c.get_params()["augmentation"] == {"zoom": 0.1}
    c.set_params(filters=(4,), augmentation="heavy")
    assert c.filters == (4,) and clf.filters == (8, 16)
    assert not hasattr(PneumoniaCNN(filters="nonsense"), "model_")  # no validation in __init__


def test_predict_before_fit_raises_not_fitted(synthetic_data):
    with pytest.raises(NotFittedError):
        PneumoniaCNN().predict(synthetic_data.X)
    with pytest.raises(NotFittedError):
        PneumoniaCNN().predict_proba(synthetic_data.X)


def test_fit_on_arrays_predicts_both_forms(fitted_tiny, synthetic_data):
    clf = fitted_tiny
    assert list(clf.classes_) == ["NORMAL", "PNEUMONIA"]
    proba = clf.predict_proba(synthetic_data.X)
    assert proba.shape == (60, 2)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    pred = clf.predict(synthetic_data.X)
    np.testing.assert_array_equal(pred == "PNEUMONIA", proba[:, 1] >= 0.5)
    assert len(clf.history_["loss"]) == 2 and "auc" in clf.history_
    assert 0 <= clf.score(synthetic_data.X, synthetic_data.y) <= 1


def test_fit_on_folder_and_paths_match_arrays(synthetic_dir, synthetic_data):
    by_folder = PneumoniaCNN(**TINY).fit(synthetic_dir)
    by_paths = PneumoniaCNN(**TINY).fit(list(synthetic_data.paths), synthetic_data.y)
    p_folder = by_folder.predict_proba(synthetic_dir)
    p_paths = by_paths.predict_proba(synthetic_data.paths)
    p_arrays = by_folder.predict_proba(synthetic_data.X)
    np.testing.assert_allclose(p_folder, p_arrays, atol=1e-6)
    np.testing.assert_allclose(p_folder, p_paths, atol=1e-6)  # same seed, same data
    assert by_folder.score(synthetic_dir) == pytest.approx(
        by_folder.score(synthetic_data.X, synthetic_data.y))


def test_threshold_moves_decisions(fitted_tiny, synthetic_data):
    clf = copy.deepcopy(fitted_tiny)
    clf.threshold = 0.0
    assert set(clf.predict(synthetic_data.X)) == {"PNEUMONIA"}
    clf.threshold = 1.01
    assert set(clf.predict(synthetic_data.X)) == {"NORMAL"}


def test_rgb_and_other_sizes_are_converted(fitted_tiny, synthetic_data):
    rgb = np.repeat(synthetic_data.X, 3, axis=-1)
    np.testing.assert_allclose(fitted_tiny.predict_proba(rgb),
                               fitted_tiny.predict_proba(synthetic_data.X), atol=1e-4)
    big = np.repeat(np.repeat(synthetic_data.X[:, :, :, 0], 2, 1), 2, 2)  # 64x64, 3-D
    assert fitted_tiny.predict_proba(big).shape == (60, 2)


def test_validation_split_early_stopping_and_history(synthetic_dir):
    clf = PneumoniaCNN(**{**TINY, "validation_fraction": 0.25, "epochs": 3, "patience": 1})
    clf.fit(synthetic_dir)
    assert {"val_loss", "val_accuracy", "val_auc"} <= set(clf.history_)
    assert 1 <= clf.best_epoch_ <= len(clf.history_["loss"])
    assert clf.n_train_ < 60


def test_same_random_state_same_predictions(synthetic_data):
    kw = {**TINY, "augmentation": "standard", "dropout": 0.3, "validation_fraction": 0.25}
    a = PneumoniaCNN(**kw).fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    b = PneumoniaCNN(**kw).fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    np.testing.assert_array_equal(a.predict_proba(synthetic_data.X),
                                  b.predict_proba(synthetic_data.X))


def test_pickle_round_trip_predicts_identically(fitted_tiny, synthetic_data):
    clone_ = pickle.loads(pickle.dumps(fitted_tiny))
    np.testing.assert_array_equal(clone_.predict_proba(synthetic_data.X),
                                  fitted_tiny.predict_proba(synthetic_data.X))


def test_save_load_round_trip_predicts_identically(fitted_tiny, synthetic_data, tmp_path):
    path = fitted_tiny.save(tmp_path / "model")
    assert (path / "model.keras").is_file() and (path / "pneumonia_cnn.json").is_file()
    loaded = PneumoniaCNN.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(synthetic_data.X),
                                  fitted_tiny.predict_proba(synthetic_data.X))
    assert loaded.get_params()["filters"] == (4, 8)
    assert loaded.history_["loss"] == pytest.approx(fitted_tiny.history_["loss"])


def test_load_rejects_non_models(tmp_path):
    with pytest.raises(DataError, match="not a saved PneumoniaCNN"):
        PneumoniaCNN.load(tmp_path)
    (tmp_path / "model.keras").write_text("junk")
    (tmp_path / "pneumonia_cnn.json").write_text('{"format": "pneumonia-cnn", '
                                                  '"format_version": 99}')
    with pytest.raises(DataError, match="format 99"):
        PneumoniaCNN.load(tmp_path)


def test_grid_search_with_patient_groups(synthetic_data):
    grid = GridSearchCV(
        PneumoniaCNN(**{**TINY, "epochs": 1}),
        {"filters": [(4,), (4, 8)], "augmentation": [None, "light"]},
        cv=StratifiedGroupKFold(n_splits=2), scoring="roc_auc", error_score="raise")
    grid.fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    assert len(grid.cv_results_["params"]) == 4
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_.predict(synthetic_data.X).shape == (60,)


def test_grid_search_on_file_paths(synthetic_data):
    grid = GridSearchCV(PneumoniaCNN(**{**TINY, "epochs": 1}), {"image_size": [24, 32]},
                        cv=StratifiedGroupKFold(n_splits=2), scoring="roc_auc",
                        error_score="raise")
    grid.fit(synthetic_data.paths, synthetic_data.y, groups=synthetic_data.groups)
    assert grid.best_params_["image_size"] in (24, 32)


def test_inside_a_pipeline(synthetic_data):
    pipe = make_pipeline(FunctionTransformer(lambda x: 255 - x), PneumoniaCNN(**TINY))
    pipe.fit(synthetic_data.X, synthetic_data.y)
    assert pipe.predict(synthetic_data.X[:3]).shape == (3,)


@pytest.mark.parametrize("X, y, match", [
    (np.zeros((4, 8, 8, 1), np.uint8), np.array(["NORMAL", "PNEUMONIA", "NORMAL"]), "inconsistent numbers of samples"),
    (np.zeros((4, 8)), np.array(["NORMAL", "PNEUMONIA"] * 2), "image array of shape"),
    (np.array([["x"] * 8] * 4), np.array(["NORMAL", "PNEUMONIA"] * 2), "numeric pixel values"),
    (np.zeros((4, 8, 8, 1), np.uint8), np.array(["a"] * 4), "Only binary classification"),
    (np.full((4, 8, 8, 1), np.nan), np.array(["NORMAL", "PNEUMONIA"] * 2), "NaN"),
])
def test_bad_arrays_get_clear_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        PneumoniaCNN(**TINY).fit(X, y)


def test_folder_with_y_is_an_error(synthetic_dir):
    with pytest.raises(ValueError, match="y must be None"):
        PneumoniaCNN(**TINY).fit(synthetic_dir, ["NORMAL"])


def test_single_image_probabilities_keep_two_columns(fitted_tiny, synthetic_data):
    # scikeras 0.13 squeezes a single row to shape (2,)
    one = fitted_tiny.predict_proba(synthetic_data.X[:1])
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one[0], fitted_tiny.predict_proba(synthetic_data.X[:2])[0],
                               rtol=1e-5)


def test_auto_threshold_from_validation_split(synthetic_dir, tmp_path):
    clf = PneumoniaCNN(**{**TINY, "threshold": "auto", "validation_fraction": 0.25, "epochs": 3})
    clf.fit(synthetic_dir)
    assert 0.0 <= clf.threshold_ <= 1.0
    p = clf.predict_proba(synthetic_dir)[:, 1]
    np.testing.assert_array_equal(clf.predict(synthetic_dir) == "PNEUMONIA", p >= clf.threshold_)
    loaded = PneumoniaCNN.load(clf.save(tmp_path / "m"))
    assert loaded.threshold_ == clf.threshold_
    np.testing.assert_array_equal(loaded.predict(synthetic_dir), clf.predict(synthetic_dir))
    # without a validation hold-out there is nothing to choose on: 0.5
    no_val = PneumoniaCNN(**{**TINY, "threshold": "auto"}).fit(synthetic_dir)
    assert no_val.threshold_ == 0.5


def test_training_batches_come_from_memory_with_weights(synthetic_data, monkeypatch):
    import pneumonia_cnn.estimator._training as est

    calls = []
    original = est.in_memory_batches

    def spy(*arrays, **kw):
        calls.append(([np.asarray(a) for a in arrays if a is not None], kw))
        return original(*arrays, **kw)

    monkeypatch.setattr(est, "in_memory_batches", spy)
    X, y = synthetic_data.X, synthetic_data.y
    user_w = np.linspace(0.5, 1.5, len(y))
    clf = PneumoniaCNN(**{**TINY, "validation_fraction": 0.25, "epochs": 2})
    clf.fit(X, y, sample_weight=user_w, groups=synthetic_data.groups)
    (train, train_kw), (val, val_kw) = sorted(calls, key=lambda c: -len(c[0][0]))
    assert train_kw == {"batch_size": 16, "shuffle": True} and val_kw == {"batch_size": 16}
    assert len(train) == 3 and len(val) == 2  # images, labels, weights / images, labels
    Xt, wt = train[0], train[2]
    idx = [next(i for i in range(len(X)) if np.array_equal(X[i], x)) for x in Xt]
    yt = y[idx]
    balanced = {c: len(yt) / (2 * np.sum(yt == c)) for c in np.unique(yt)}
    np.testing.assert_allclose(wt, user_w[idx] * np.array([balanced[c] for c in yt]),
                               rtol=1e-5)  # user weights times balanced class weights
    assert "fit" not in vars(clf.model_)  # Keras' own fit is back


def test_two_saves_to_one_folder_at_once_leave_one_whole_model(synthetic_data, tmp_path):
    """(issue 22, finding 6: one model's network with the other's threshold) Saves are a
    rename of a finished sibling folder under a lock."""
    import json
    import threading

    from conftest import TINY

    a = PneumoniaCNN(**{**TINY, "threshold": 0.2}).fit(synthetic_data.X, synthetic_data.y)
    b = PneumoniaCNN(**{**TINY, "threshold": 0.8, "random_state": 1}).fit(
        synthetic_data.X, synthetic_data.y)
    target = tmp_path / "model"
    errors = []

    def save(est):
        try:
            for _ in range(3):
                est.save(target)
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(e,)) for e in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loaded = PneumoniaCNN.load(target)
    source = a if loaded.threshold_ == 0.2 else b
    assert loaded.threshold_ == json.loads((target / "pneumonia_cnn.json").read_text())[
        "threshold"]
    np.testing.assert_allclose(loaded.predict_proba(synthetic_data.X),
                               source.predict_proba(synthetic_data.X), rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["model"]
    assert not [p for p in tmp_path.iterdir() if ".saving-" in p.name or ".old-" in p.name]


def test_predictions_through_predict_on_batch_equal_kerass_predict_to_the_bit(fitted_tiny,
                                                                             synthetic_data):
    """predict_proba uses Keras' predict_on_batch (issue 21: 3 ms for one film instead of
    50); a routed predict argument takes scikeras' own path through Keras' predict. Both
    give the same numbers, for one film and for many."""
    for X in (synthetic_data.X[:1], synthetic_data.X[:300]):
        fast = fitted_tiny.predict_proba(X)
        keras_predict = fitted_tiny.predict_proba(X, batch_size=32)
        assert fast.shape == keras_predict.shape == (len(X), 2)
        np.testing.assert_array_equal(fast, keras_predict)


def test_fit_hooks_that_are_not_hooks_are_refused_before_any_work(synthetic_data):
    """A Keras callback or a hook class (not an instance) in fit_hooks failed mid-fit with
    an AttributeError; it is refused at once, saying where callbacks go."""
    from pneumonia_cnn.analysis import StressOnFit

    import keras

    for wrong in (StressOnFit, keras.callbacks.History()):
        with pytest.raises(ValueError, match="fit_hooks must hold FitHook instances"):
            PneumoniaCNN(fit_hooks=[wrong]).fit(synthetic_data.X, synthetic_data.y)


def test_average_last_keeps_the_mean_of_the_last_epochs_weights(synthetic_data, tmp_path):
    """``average_last=N`` (the pretrained default's 3) keeps the average of the weights
    after each of the last N epochs, batch-norm statistics included; 0 keeps the best
    validation epoch's, as the from-scratch default always did."""
    import keras

    from pneumonia_cnn.estimator import BACKBONE_DEFAULTS

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    rec = Record()
    clf = PneumoniaCNN(**{**TINY, "epochs": 4, "average_last": 2, "validation_fraction": 0.25,
                          "patience": None}, callbacks=[rec])
    clf.fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    assert len(rec.weights) == 4 and clf.averaged_epochs_ == [3, 4]
    for got, a, b in zip(clf.model_.get_weights(), *rec.weights[-2:]):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(clf.model_.get_weights()[0], rec.weights[-1][0])
    loaded = PneumoniaCNN.load(clf.save(tmp_path / "m"))
    assert loaded.averaged_epochs_ == [3, 4] and loaded.get_params()["average_last"] == 2
    assert BACKBONE_DEFAULTS[None]["average_last"] == 0
    assert BACKBONE_DEFAULTS["efficientnet-lite0"]["average_last"] == 3
