"""Metrics and figures."""

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from pneumonia_cnn.evaluation import (
    FIGURE_FILES,
    evaluate,
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
    y_pred = np.where(result["_y_score"] >= 0.5, "PNEUMONIA", "NORMAL")
    assert saved["confusion_matrix"] == confusion_matrix(
        result["_y_true"], y_pred, labels=["NORMAL", "PNEUMONIA"]).tolist()
    assert (tmp_path / "classification_report.txt").read_text().strip()


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
    assert loaded._decision_threshold() == 0.9
