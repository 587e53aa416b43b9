"""Grad-CAM / HiResCAM explanations: shapes, every model kind, honesty checks."""

import numpy as np
import pytest
from conftest import TINY
from scipy import ndimage
from scipy.stats import spearmanr

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.analysis import explain, gradcam, last_conv_layer
from pneumonia_cnn.cli import main
from pneumonia_cnn.data import make_synthetic_xray

SIZE = 64


@pytest.fixture(scope="module")
def films():
    """480 synthetic films (half with opacities) and where the opacities are."""
    rng = np.random.default_rng(0)
    imgs, masks, y = [], [], []
    for i in range(480):
        im, m = make_synthetic_xray(rng, SIZE, i % 2 == 1, return_mask=True)
        imgs.append(im)
        masks.append(m)
        y.append("PNEUMONIA" if i % 2 else "NORMAL")
    return np.array(imgs)[..., None], np.array(masks), np.array(y)


@pytest.fixture(scope="module")
def trained(films):
    """A small network that learns the synthetic task (held-out ROC AUC ~0.95)."""
    X, _, y = films
    return PneumoniaCNN(backbone=None, image_size=SIZE, filters=(8, 16, 32), dense_units=16,
                        epochs=20,
                        batch_size=16, validation_fraction=0.2, random_state=0,
                        augmentation=None, intensity_norm=None, n_networks=1, threshold=0.5,
                        tracking=False).fit(X[:360], y[:360])


def test_maps_have_the_input_size_and_both_classes_differ(fitted_tiny, synthetic_data):
    X = synthetic_data.X[:6]
    pos = explain(fitted_tiny, X)
    neg = explain(fitted_tiny, X, target="NORMAL")
    assert pos.heatmaps.shape == (6, 32, 32) and pos.heatmaps.dtype == np.float32
    assert 0 <= pos.heatmaps.min() and pos.heatmaps.max() <= 1
    assert pos.layer == "block2_relu1" == last_conv_layer(fitted_tiny.model_)
    assert not np.allclose(pos.heatmaps, neg.heatmaps)
    np.testing.assert_allclose(pos.probabilities, fitted_tiny.predict_proba(X)[:, 1])


@pytest.mark.parametrize("params", [
    {"augmentation": "acquisition"},
    {"global_pooling": True, "batch_norm": False},
    {"filters": (4, 8, 8, 8)},
    {"intensity_norm": "clahe"},
])
def test_every_kind_of_network_is_explained(synthetic_data, params):
    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, **params}).fit(d.X, d.y)
    e = explain(clf, d.X[:4])
    assert e.heatmaps.shape == (4, 32, 32) and np.isfinite(e.heatmaps).all()


def test_ensemble_map_is_the_mean_of_its_members(synthetic_data, tmp_path):
    d = synthetic_data
    clf = PneumoniaCNN(**{**TINY, "n_networks": 2}).fit(d.X, d.y)
    e = explain(clf, d.X[:4])
    members = [la for la in clf.model_.layers if la.name.startswith("member")]
    expected = np.mean([gradcam(m, d.X[:4].astype(np.float32)) for m in members], axis=0)
    np.testing.assert_allclose(e.heatmaps, expected, atol=1e-5)
    loaded = PneumoniaCNN.load(clf.save(tmp_path / "ens"))
    np.testing.assert_allclose(explain(loaded, d.X[:4]).heatmaps, e.heatmaps, atol=1e-5)


def test_a_named_layer_and_a_wrong_one(fitted_tiny, synthetic_data):
    e = explain(fitted_tiny, synthetic_data.X[:2], layer="block1_relu1")
    assert e.layer == "block1_relu1" and e.heatmaps.shape == (2, 32, 32)
    with pytest.raises(ValueError, match="no layer 'conv9'.*block1_relu1"):
        explain(fitted_tiny, synthetic_data.X[:2], layer="conv9")
    with pytest.raises(ValueError, match="needs a convolution layer"):
        explain(fitted_tiny, synthetic_data.X[:2], layer="dense")


def test_pretrained_backbone_maps_fall_on_the_evidence():
    """HiResCAM on the backbone's last activation (inside the nested EfficientNet): films
    whose PNEUMONIA evidence is a bright square get their heat on the square, and a named
    backbone layer can be explained too."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 60, (40, 128, 128, 1)).astype(np.uint8)
    y = np.array(["NORMAL", "PNEUMONIA"] * 20)
    X[y == "PNEUMONIA", 72:112, 72:112] = 220
    clf = PneumoniaCNN(backbone="efficientnet-lite0", image_size=128, epochs=1,
                       augmentation=None, intensity_norm=None, tracking=False,
                       random_state=0, validation_fraction=0.0, threshold=0.5).fit(X, y)
    e = explain(clf, X[y == "PNEUMONIA"][:6])
    assert e.layer == "top_activation" == last_conv_layer(clf.model_)
    heat = e.heatmaps.mean(0)
    square = np.zeros(heat.shape, bool)
    square[72:112, 72:112] = True
    assert heat[square].mean() > 1.3 * heat[~square].mean()
    named = explain(clf, X[:2], layer="block12_project_conv")
    assert named.heatmaps.shape == (2, 128, 128) and np.isfinite(named.heatmaps).all()
    with pytest.raises(ValueError, match="no layer 'conv9'.*top_activation"):
        explain(clf, X[:2], layer="conv9")


def test_maps_fall_on_the_opacities(films, trained):
    """Most of the map's mass of correctly classified PNEUMONIA films lies on the opacity
    (within half a cell of the last feature map, 4 px), and its peak is on it."""
    X, masks, y = films
    X, masks, y = X[360:], masks[360:], y[360:]
    e = explain(trained, X)
    hit = (y == "PNEUMONIA") & (e.probabilities >= 0.5)
    assert hit.sum() >= 40
    mass, area, peak = [], [], []
    for i in np.flatnonzero(hit):
        place = ndimage.binary_dilation(masks[i], iterations=4)
        h = e.heatmaps[i]
        mass.append(h[place].sum() / max(h.sum(), 1e-12))
        area.append(place.mean())
        peak.append(place.flat[h.argmax()])
    assert np.mean(mass) > 0.45 and np.mean(mass) > 2.5 * np.mean(area), (np.mean(mass),
                                                                          np.mean(area))
    assert np.mean(peak) >= 0.9


def test_sanity_check_randomised_top_layers_change_the_maps(films, trained):
    """Adebayo et al. (2018): maps that do not change when the learned weights are
    destroyed explain the input, not the model."""
    import keras

    X = films[0][360:400]
    before = explain(trained, X).heatmaps
    model = trained.model_
    saved = model.get_weights()
    try:
        rng = np.random.default_rng(1)
        for layer in model.layers:
            if layer.name in ("pneumonia", "dense", last_conv_layer(model).replace("relu",
                                                                                  "conv")):
                layer.set_weights([rng.normal(0, np.std(w) + 1e-3, w.shape).astype(w.dtype)
                                   for w in layer.get_weights()])
        after = explain(trained, X).heatmaps
    finally:
        model.set_weights(saved)
    again = explain(trained, X).heatmaps
    np.testing.assert_allclose(again, before, atol=1e-6)  # restored: the same maps
    rho = [spearmanr(b.ravel(), a.ravel())[0] for b, a in zip(before, after)
           if b.std() > 0 and a.std() > 0]
    assert np.nanmean(rho) < 0.5, np.nanmean(rho)
    assert isinstance(model, keras.Model)


def test_cli_explain_writes_overlays_and_an_index(fitted_tiny, synthetic_dir, tmp_path, capsys):
    model_dir = fitted_tiny.save(tmp_path / "model")
    out = tmp_path / "explained"
    assert main(["explain", str(model_dir), str(synthetic_dir / "PNEUMONIA"), "--out",
                 str(out), "--target", "both"]) == 0
    for target in ("pneumonia", "normal"):
        pngs = sorted((out / target).glob("*.png"))
        assert len(pngs) == 36 and pngs[0].stat().st_size > 3000
        index = (out / target / "index.html").read_text()
        assert index.count("<img") == 36 and "P(PNEUMONIA)" in index
    assert main(["explain", str(model_dir), str(synthetic_dir), "--out", str(out),
                 "--layer", "nope"]) == 2
    assert "no layer 'nope'" in capsys.readouterr().err


def test_error_gallery_is_written_and_logged(films, trained, tmp_path):
    import mlflow

    from pneumonia_cnn.analysis import evaluate

    X, _, y = films
    trained.set_params(tracking=True)
    try:
        result = evaluate(trained, X[360:], y[360:], out_dir=tmp_path)
    finally:
        trained.set_params(tracking=False)
    assert (tmp_path / "error_gallery.png").stat().st_size > 20000
    assert "error_gallery" in result["figures"]
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(result["mlflow_run_id"],
                                                                  "evaluation")}
    assert "evaluation/error_gallery.png" in names and "evaluation/per_image.csv" in names


def test_index_links_to_overlays_whose_names_hold_url_characters(fitted_tiny, synthetic_dir,
                                                                 tmp_path):
    """'#' and '%41' in a file name must still load the picture (issue 22, finding 20)."""
    import shutil
    from pathlib import Path
    from urllib.parse import unquote

    one = next((synthetic_dir / "NORMAL").iterdir())
    odd = tmp_path / "film #2 %41.png"
    shutil.copy(one, odd)
    result = explain(fitted_tiny, [str(odd)], out_dir=tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    src = page.split('<img src="', 1)[1].split('"', 1)[0]
    assert "#" not in src and (tmp_path / "out" / unquote(src)).is_file()
    assert unquote(src) == Path(result.files[0]).name


def test_the_index_names_the_method_and_titles_keep_the_end_of_long_names(fitted_tiny,
                                                                          synthetic_dir,
                                                                          tmp_path):
    """It said Grad-CAM for HiResCAM maps, and cut names to 'person1461_virus_2510.jp'
    (issue 20, item 9)."""
    import shutil

    from pneumonia_cnn.analysis._explain import _shorten

    one = next((synthetic_dir / "NORMAL").iterdir())
    long_name = tmp_path / "person1461_virus_2510_and_more_words.jpeg"
    shutil.copy(one, long_name)
    explain(fitted_tiny, [str(long_name)], out_dir=tmp_path / "h")
    assert "<h1>HiResCAM: PNEUMONIA evidence" in (tmp_path / "h" / "index.html").read_text()
    explain(fitted_tiny, [str(long_name)], out_dir=tmp_path / "g", method="gradcam")
    assert "<h1>Grad-CAM: PNEUMONIA evidence" in (tmp_path / "g" / "index.html").read_text()
    short = _shorten(long_name.name, 24)
    assert len(short) == 24 and short.endswith("words.jpeg") and short.startswith("person14")
    assert _shorten("IM-0001.jpeg", 24) == "IM-0001.jpeg"


def test_error_gallery_says_what_data_how_many_films_and_its_scale(fitted_tiny,
                                                                   synthetic_data):
    """Issue 20, item 9: the title had neither the data nor n, and no colour bar; the demo's
    gallery was the one output not marked SYNTHETIC."""
    import pandas as pd

    from pneumonia_cnn.analysis import error_gallery

    X = synthetic_data.X[:12]
    p = fitted_tiny.predict_proba(X)[:, 1]
    table = pd.DataFrame({"path": synthetic_data.paths[:12], "true": synthetic_data.y[:12],
                          "probability": p})
    fig = error_gallery(fitted_tiny, X, table, 0.5, data="site/test", synthetic=True)
    title = fig._suptitle.get_text()
    assert title.startswith("SYNTHETIC DATA") and "site/test" in title and "12 films" in title
    assert "HiResCAM" in title
    assert any(ax.get_ylabel().startswith("PNEUMONIA evidence") for ax in fig.axes)


def test_an_ensembles_history_says_whose_it_is():
    """Issue 20, item 9: training_history.png showed network 1 of 3 without saying so."""
    from pneumonia_cnn.metrics import plot_history

    history = {"loss": [0.7, 0.5], "val_loss": [0.7, 0.6], "auc": [0.6, 0.8],
               "val_auc": [0.6, 0.7]}
    assert plot_history(history)._suptitle is None
    title = plot_history(history, n_networks=3)._suptitle.get_text()
    assert title.startswith("The ensemble's 3 networks (network 1 only)")
    # with every network's history (user's path issue, item 8): all are drawn
    fig = plot_history(history, n_networks=3, histories=[history] * 3)
    assert "all of them" in fig._suptitle.get_text()
    assert len(fig.axes[1].get_lines()) == 6  # train and validation of 3 networks


def test_heat_on_the_border_is_measured_and_reported(fitted_tiny, synthetic_dir):
    """User's path issue, item 10: heat maps on the laterality marker and the corners were
    visible in the gallery, but no text said so. The share of the evidence in the film's
    border band is measured against the band's share of the area, and evaluate reports it."""
    from pneumonia_cnn.analysis import evaluate, heat_on_border

    inside = np.zeros((2, 32, 32))
    inside[:, 10:22, 10:22] = 1.0
    edge = np.zeros((2, 32, 32))
    edge[:, :4, :] = 1.0
    assert heat_on_border(inside)["share"] == 0.0
    assert heat_on_border(edge)["share"] == 1.0
    even = heat_on_border(np.ones((1, 32, 32)))
    assert even["share"] == pytest.approx(even["area_share"]) and 0 < even["area_share"] < 1
    result = evaluate(fitted_tiny, str(synthetic_dir), track=False)
    border = result["heat_on_border"]
    assert 0 < border["n_films"] <= 32 and 0 <= border["share"] <= 1
