"""Brief training on a sample of the real chest X-rays (skipped without them).

.ci/run sets PNEUMONIA_CNN_DATA to ../shared/data/chest_xray/train.
"""

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumonia_cnn import PneumoniaCNN, load_image_folder
from pneumonia_cnn.data import grouped_split


def test_real_data_loads_with_patients(real_train_dir):
    data = load_image_folder(real_train_dir, 64)
    counts = data.class_counts()
    assert set(counts) == {"NORMAL", "PNEUMONIA"} and sum(counts.values()) == len(data)
    assert len(np.unique(data.groups)) < len(data)  # several images per patient exist


def test_model_learns_on_unseen_patients(real_train_dir):
    data = load_image_folder(real_train_dir, 64)
    rng = np.random.default_rng(0)
    # a small budget: ~600 images, 64x64, a few epochs
    idx = rng.choice(len(data), size=min(600, len(data)), replace=False)
    X, y, g = data.X[idx], data.y[idx], data.groups[idx]
    tr, te = grouped_split(y, g, 0.25, random_state=0)
    assert set(g[tr]).isdisjoint(g[te])
    clf = PneumoniaCNN(backbone=None, image_size=64, filters=(16, 32, 64), epochs=6,
                       augmentation="light",
                       intensity_norm=None, n_networks=1, threshold=0.5,
                       validation_fraction=0.0, random_state=0)
    clf.fit(X[tr], y[tr])
    auc = roc_auc_score(y[te] == "PNEUMONIA", clf.predict_proba(X[te])[:, 1])
    assert auc > 0.85, f"validation ROC AUC {auc:.3f}"


def test_stress_and_site_calibration_on_real_films(real_train_dir):
    """Small budget: train on part of the patients, stress-test and calibrate on others."""
    from pneumonia_cnn.analysis import calibrate, evaluate, stress_test

    data = load_image_folder(real_train_dir, 64)
    tr, rest = grouped_split(data.y, data.groups, 0.3, random_state=1)
    # the default's levers (acquisition augmentation, CLAHE), one network to keep it short
    clf = PneumoniaCNN(backbone=None, image_size=64, filters=(8, 16, 32), epochs=5,
                       validation_fraction=0.0,
                       n_networks=1, threshold=0.5, random_state=0,
                       tracking=False).fit(data.X[tr], data.y[tr])
    Xr, yr = data.X[rest], data.y[rest]
    stress = stress_test(clf, Xr, yr, perturbations=["darker", "padding"], severities=(3,))
    assert stress.summary["clean_roc_auc"] > 0.9
    # strong perturbations cost ranking quality on real films: the protocol measures that
    assert stress.summary["stress_min_roc_auc"] < stress.summary["clean_roc_auc"]
    # calibrate on 20 + 20 films of the "site", evaluate on its other films
    rng = np.random.default_rng(0)
    cal = np.r_[rng.choice(np.flatnonzero(yr == "NORMAL"), 20, replace=False),
                rng.choice(np.flatnonzero(yr == "PNEUMONIA"), 20, replace=False)]
    other = np.setdiff1d(np.arange(len(yr)), cal)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 20 positives cannot promise 0.95
        site = calibrate(clf, Xr[cal], yr[cal], target_sensitivity=0.95, track=False)
    assert site.calibration_["sensitivity"] >= 0.95
    result = evaluate(site, Xr[other], yr[other], track=False)
    assert result["threshold"] == site.threshold_
    assert result["sensitivity"] > 0.85 and result["roc_auc"] > 0.9
    lo, hi = result["ci95"]["roc_auc"]
    assert lo < result["roc_auc"] < hi


def test_label_free_adaptation_on_a_real_later_batch(real_train_dir):
    """Small budget: a network trained on the middle acquisition batches of the real films,
    adapted without labels to the latest batch: it estimates the batch's prevalence and its
    threshold keeps the sensitivity there."""
    import warnings

    from pneumonia_cnn.analysis import adapt
    from pneumonia_cnn.data import batch_masks

    data = load_image_folder(real_train_dir, 64)
    early, late = batch_masks(data.paths)
    middle = ~early & ~late
    clf = PneumoniaCNN(backbone=None, image_size=64, filters=(8, 16, 32), epochs=5,
                       n_networks=1, validation_fraction=0.2, random_state=0, tracking=False)
    clf.fit(data.X[middle], data.y[middle], groups=data.groups[middle])
    y = data.y[late] == "PNEUMONIA"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        site = adapt(clf, data.X[late], n_bootstrap=20, track=False)
    a = site.adaptation_
    assert abs(a["prevalence"] - y.mean()) < 0.1, a["prevalence"]
    p = site.predict_proba(data.X[late])[:, 1]
    assert np.mean(p[y] >= site.threshold_) >= 0.9
    assert roc_auc_score(y, p) > 0.9
