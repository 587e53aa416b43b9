"""Metrics and figures."""

import json

import numpy as np
import pytest
from conftest import TINY as TINY_PARAMS
from sklearn.metrics import confusion_matrix, roc_auc_score

from pneumonia_cnn.analysis import FIGURE_FILES, evaluate
from pneumonia_cnn.metrics import (
    confidence_intervals,
    metrics_from_scores,
    plot_confusion_matrix,
)


def test_metrics_by_hand_example():
    y = np.array(["PNEUMONIA"] * 6 + ["NORMAL"] * 4)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.55, 0.2, 0.1, 0.05])
    m = metrics_from_scores(y, s, threshold=0.5)
    # predicted PNEUMONIA: 4 of 6 positives, 1 of 4 negatives
    assert m["sensitivity"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y == "PNEUMONIA", s))
    assert m["n_images"] == 10
    assert m["classification_report"]["PNEUMONIA"]["recall"] == pytest.approx(4 / 6)
    assert "PNEUMONIA" in m["classification_report_text"]


def test_threshold_changes_the_trade_off():
    y = np.array(["PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL"])
    s = np.array([0.3, 0.2, 0.9, 0.6])
    low = metrics_from_scores(y, s, threshold=0.25)
    high = metrics_from_scores(y, s, threshold=0.7)
    assert low["sensitivity"] == 1 and low["specificity"] == 0.5
    assert high["sensitivity"] == 0.5 and high["specificity"] == 1


def test_one_class_gives_nan_auc_with_warning():
    with pytest.warns(UserWarning, match="one class"):
        m = metrics_from_scores(["NORMAL", "NORMAL"], [0.1, 0.7])
    assert np.isnan(m["roc_auc"]) and m["specificity"] == 0.5
    # undefined is NaN, never 0.0 (issue 22, finding 9)
    assert np.isnan(m["sensitivity"]) and np.isnan(m["f1"])


def test_a_one_class_evaluation_reports_null_and_says_why(fitted_tiny, synthetic_data,
                                                          tmp_path):
    normal = synthetic_data.y == "NORMAL"
    with pytest.warns(UserWarning, match="no PNEUMONIA images: sensitivity, precision and F1"):
        result = evaluate(fitted_tiny, synthetic_data.X[normal], synthetic_data.y[normal],
                          out_dir=tmp_path, track=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["sensitivity"] is None and saved["f1"] is None and saved["roc_auc"] is None
    assert saved["specificity"] == pytest.approx(result["specificity"])
    assert any("no PNEUMONIA images" in w for w in saved["trust_warnings"])


def test_evaluate_writes_figures_and_json(fitted_tiny, synthetic_dir, tmp_path):
    result = evaluate(fitted_tiny, synthetic_dir, out_dir=tmp_path)
    assert set(result["figures"]) == set(FIGURE_FILES)
    for path in result["figures"].values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n_images"] == 60
    for key in ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1",
                "confusion_matrix"):
        assert saved[key] == result[key]
    table = result["per_image"]
    assert list(table.columns) == ["path", "true", "probability", "predicted"]
    assert not any(k.startswith("_") for k in result)  # no private keys
    y_pred = np.where(table["probability"] >= 0.5, "PNEUMONIA", "NORMAL")
    assert (table["predicted"] == y_pred).all()
    assert saved["confusion_matrix"] == confusion_matrix(
        table["true"], y_pred, labels=["NORMAL", "PNEUMONIA"]).tolist()
    assert (tmp_path / "classification_report.txt").read_text().strip()
    assert len(open(tmp_path / "per_image.csv").read().splitlines()) == 61
    assert saved["synthetic"] is True  # the synthetic fixture folder is marked as such


def test_confusion_matrix_plot_shows_counts_and_percentages():
    fig = plot_confusion_matrix([[30, 10], [5, 55]])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert "30\n75.0%" in texts and "55\n91.7%" in texts


def test_evaluate_and_save_use_the_threshold_predict_uses(fitted_tiny, synthetic_data, tmp_path):
    import copy

    from pneumonia_cnn import PneumoniaCNN

    clf = copy.deepcopy(fitted_tiny)
    clf.set_params(threshold=0.9)  # changed after fit: threshold_ still holds the fit's 0.5
    X, y = synthetic_data.X, synthetic_data.y
    result = evaluate(clf, X, y, track=False)
    assert result["threshold"] == 0.9
    assert result["accuracy"] == pytest.approx(np.mean(clf.predict(X) == y))
    loaded = PneumoniaCNN.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert loaded.decision_threshold() == 0.9


def test_evaluate_warns_when_its_numbers_cannot_be_trusted(fitted_tiny, synthetic_data):
    d = synthetic_data
    with pytest.warns(UserWarning) as caught:
        result = evaluate(fitted_tiny, d.X, d.y, track=False)  # the training images
    messages = " ".join(str(w.message) for w in caught)
    assert "60 of the 60 evaluation images are identical to training images" in messages
    assert "only 60 images" in messages and "95% interval" in messages
    assert len(result["trust_warnings"]) >= 2
    from pneumonia_cnn import PneumoniaCNN

    other = PneumoniaCNN(**{**TINY_PARAMS, "random_state": 1}).fit(d.X[:40], d.y[:40])
    fresh = evaluate(other, d.X[40:], d.y[40:], threshold=1.01, track=False, gallery=False)
    assert not any("identical to training" in w for w in fresh["trust_warnings"])
    assert any("calls every image NORMAL" in w for w in fresh["trust_warnings"])


def test_curves_mark_the_operating_point_with_three_decimals():
    from pneumonia_cnn.metrics import plot_precision_recall, plot_roc

    y = np.array(["PNEUMONIA"] * 6 + ["NORMAL"] * 4)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.55, 0.2, 0.1, 0.05])
    fig = plot_roc(y, s, threshold=0.5, caption="test data: 10 images, threshold 0.500")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "PneumoniaCNN (AUC = 0.917)" in labels     # 3 decimals (sklearn: 0.92)
    assert any("threshold 0.500: sens 0.667, spec 0.750" in t for t in labels)
    assert "10 images" in fig.axes[0].get_title()
    fig = plot_precision_recall(y, s, threshold=0.5)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("AP = " in t and len(t.split("AP = ")[1].rstrip(")")) == 5 for t in labels)
    assert any("recall 0.667, precision 0.800" in t for t in labels)


def test_history_marks_the_kept_epoch_and_uses_a_log_loss_axis():
    from pneumonia_cnn.metrics import plot_history

    history = {"loss": [50.0, 0.5, 0.4, 0.3], "val_loss": [80.0, 0.6, 0.5, 0.55],
               "auc": [0.5, 0.9, 0.95, 0.97], "val_auc": [0.5, 0.92, 0.96, 0.95]}
    fig = plot_history(history)
    loss_ax, auc_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    labels = auc_ax.get_legend_handles_labels()[1]
    assert "kept: epoch 3" in labels and "validation (internal hold-out)" in labels
    # every epoch is in view, the first included (user's path issue, item 8: it was clipped)
    assert auc_ax.get_ylim()[0] <= 0.5 and loss_ax.get_ylim()[1] >= 80
    # averaged weights: the span is marked instead of one epoch
    fig = plot_history(history, averaged_epochs=[2, 3, 4])
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert "kept: average of epochs 2-4" in labels and not any("epoch 3" in t for t in labels)


def test_harrell_davis_threshold_is_steadier_than_the_order_statistic():
    """Both estimate the 5% quantile of the PNEUMONIA scores; over many draws of 300 the
    Harrell-Davis estimate varies less (the rule behind threshold="target")."""
    from scipy.stats import beta

    from pneumonia_cnn.metrics import (
        threshold_for_sensitivity,
        threshold_for_sensitivity_hd,
    )

    rng = np.random.default_rng(0)
    true_q = beta.ppf(0.05, 5, 1.5)
    hd, order = [], []
    for _ in range(200):
        pos = rng.beta(5, 1.5, 300)
        y = np.array(["PNEUMONIA"] * 300)
        hd.append(threshold_for_sensitivity_hd(y, pos, 0.95))
        order.append(threshold_for_sensitivity(y, pos, 0.95))
    assert abs(np.mean(hd) - true_q) < 0.01
    assert np.std(hd) < np.std(order)


def test_images_decoded_at_another_size_are_decoded_again_for_the_model(fitted_tiny,
                                                                        synthetic_dir):
    """(issue 22, finding 11) The overlap check sees them, and the scores are those of a
    load at the model's size."""
    from pneumonia_cnn import load_image_folder

    at_model = load_image_folder(synthetic_dir, fitted_tiny.input_size(), cache=False)
    other = load_image_folder(synthetic_dir, 48, cache=False)
    with pytest.warns(UserWarning, match="identical to training images"):
        a = evaluate(fitted_tiny, other, track=False)
    with pytest.warns(UserWarning, match="identical to training images"):
        b = evaluate(fitted_tiny, at_model, track=False)
    assert a["roc_auc"] == pytest.approx(b["roc_auc"])
    assert np.allclose(a["per_image"]["probability"], b["per_image"]["probability"])


def test_no_auc_interval_from_a_handful_of_films():
    """'1.000-1.000' on 4 images read as certainty (issue 20, item 8): below 10 films of a
    class the interval is undefined (null), not a bootstrap of nothing."""
    from pneumonia_cnn.cli._common import fmt_ci as _fmt_ci
    from pneumonia_cnn.metrics import strict_json

    y = np.array(["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"])
    ci = confidence_intervals(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert np.isnan(ci["roc_auc"]).all()
    assert strict_json(ci)["roc_auc"] == [None, None]
    assert "roc_auc n/a (too few images)" in _fmt_ci({"ci95": ci, "brier": 0.1})
    many = np.repeat(y, 5)  # 10 of each class: an interval again
    lo, hi = confidence_intervals(many, np.repeat([0.1, 0.6, 0.4, 0.9], 5))["roc_auc"]
    assert 0 <= lo <= hi <= 1


def test_cli_evaluate_prints_undefined_metrics_as_na(fitted_tiny, synthetic_dir, tmp_path,
                                                      capsys):
    """Regression (site issue, finding 3): with --threshold 1 no film is called PNEUMONIA, so
    precision is undefined; evaluate printed a TypeError traceback instead of the report."""
    from pneumonia_cnn.cli import main

    model = fitted_tiny.save(tmp_path / "m")
    code = main(["evaluate", str(model), str(synthetic_dir), "--threshold", "1",
                 "--out", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code in (0, None)
    assert "precision=n/a" in out and "sensitivity=0.000" in out
