"""Grad-CAM explanations: where did the network look?

Grad-CAM (Selvaraju et al., 2017) weights the feature maps of a convolution layer by the
gradient of the class score with respect to them, sums them and keeps the positive part:
the regions whose features raised that class's score. Computed as in the keras.io
"Grad-CAM class activation visualization" example: a functional model that outputs the
chosen layer and the prediction, and ``tf.GradientTape``. (tf-keras-vis, the maintained
library for this, targets tf.keras 2, not Keras 3.)

The default variant is **HiResCAM** (Draelos & Carin, 2020): the gradient multiplies the
feature maps position by position instead of being averaged over the image first. Our
default head flattens the last feature maps into a dense layer, which weighs every position
differently; averaging the gradient (plain Grad-CAM) then smears the map across the film.
On synthetic films with opacities at known places, HiResCAM put 39% of the map's mass on the
opacities (8.7% of the image) and its peak on an opacity in every correctly classified
film; plain Grad-CAM put 21% there. For a global-average-pooling head the two are the same.
``method="gradcam"`` gives the original.

- The class score is the **logit** of the sigmoid output (computed from the output layer's
  input, so saturated probabilities still have gradients); PNEUMONIA evidence is the logit,
  NORMAL evidence its negative.
- The default layer is the last convolution block's activation; any layer with a 4-D output
  can be named.
- An ensemble's map is the mean of its members' maps (each member normalised first).
- Images pass through the estimator's own preprocessing (``intensity_norm``), as in
  ``predict``; test-time views are not explained (the map is of the image itself).

Maps are resized to the model's input size and scaled to 0-1 per image (0 = no evidence).
A map shows what raised the score, not that the network is right, nor what a radiologist
would look at: read it as a check for shortcuts (text markers, borders, devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import display_path, load_any, mark_outputs
from ..metrics import plt
from ..network import BACKBONES, feeding_layer
from ._wrappers import network_of

__all__ = ["BORDER_BAND", "Explanation", "error_gallery", "explain", "gradcam",
           "heat_on_border", "last_conv_layer", "write_overlays"]


@dataclass
class Explanation:
    """Result of :func:`explain`.

    Attributes
    ----------
    heatmaps : ndarray of float32, shape (n, size, size)
        One map per image, 0-1, at the model's input size.
    images : ndarray of uint8, shape (n, size, size)
        The images as the network saw them (before intensity normalisation).
    probabilities : ndarray of float, shape (n,)
        P(PNEUMONIA) of every image.
    labels : ndarray of str
        The model's predictions.
    target : str
        "PNEUMONIA" or "NORMAL": whose evidence the maps show.
    layer : str
    paths : ndarray of str or None
    method : {"hirescam", "gradcam"}
        How the maps were computed (the index page names it).
    files : list of str
        Overlay PNG files, when written.
    """

    heatmaps: np.ndarray
    images: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    target: str
    layer: str
    paths: np.ndarray | None = None
    files: list | None = None
    method: str = "hirescam"


def last_conv_layer(model) -> str:
    """Name of the last layer of ``model`` with a 4-D output before flatten / global
    pooling: the last convolution block's activation in :func:`build_model`'s networks."""
    import keras

    backbone = _backbone(model)
    if backbone is not None:  # a pretrained network: the backbone's last activation
        return "top_activation"
    name = None
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            continue
        if isinstance(layer, (keras.layers.Flatten, keras.layers.GlobalAveragePooling2D)):
            break
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4 and not isinstance(
                layer, (keras.layers.InputLayer,)) and not layer.name.endswith("_pool") \
                and layer.name not in ("rescale", "augmentation"):
            name = layer.name
    if name is None:
        raise ValueError(f"model {model.name!r} has no convolution layer to explain")
    return name


def _backbone(model):
    """The pretrained backbone nested in one network (None for a from-scratch one)."""
    import keras

    names = {b.replace("-", "_") for b in BACKBONES}
    return next((layer for layer in model.layers
                 if isinstance(layer, keras.Model) and layer.name in names), None)


def _members(model):
    """The networks of an ensemble model (or the model itself)."""
    import keras

    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)
             and layer.name.startswith("member")]
    return inner or [model]


METHODS = ("hirescam", "gradcam")


def gradcam(model, images: np.ndarray, layer: str | None = None, *, sign: float = 1.0,
            method: str = "hirescam", batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps of one Keras network for a batch of (preprocessed) images.

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`pneumonia_cnn.network.build_model` (output layer
        ``pneumonia``, one sigmoid unit), or an ensemble of them.
    images : ndarray, shape (n, h, w, 1)
        Network inputs (0-255).
    layer : str, default=None
        Layer to explain; default :func:`last_conv_layer` of each network.
    sign : float, default=1.0
        +1 for PNEUMONIA evidence (the logit), -1 for NORMAL evidence.
    method : {"hirescam", "gradcam"}, default="hirescam"
        Position-wise gradients (HiResCAM) or their spatial mean (Grad-CAM).

    Returns
    -------
    ndarray of float32, shape (n, h, w), each map scaled to 0-1.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    maps = [_gradcam_one(m, images, layer, sign, batch_size, method) for m in _members(model)]
    return np.mean(maps, axis=0).astype(np.float32)


def _gradcam_one(model, images, layer, sign, batch_size, method="gradcam"):
    import keras
    import tensorflow as tf

    name = layer or last_conv_layer(model)
    backbone = _backbone(model)
    graph = backbone if backbone is not None else model  # where the layer is looked up
    try:
        target = graph.get_layer(name)
    except ValueError:
        names = [la.name for la in graph.layers if len(getattr(la.output, "shape", ())) == 4]
        raise ValueError(f"no layer {name!r} in the network; 4-D layers: "
                         f"{', '.join(names)}") from None
    if len(target.output.shape) != 4:
        raise ValueError(f"layer {name!r} has output shape {target.output.shape}: Grad-CAM "
                         "needs a convolution layer (4-D output)")
    head = model.get_layer("pneumonia")
    if backbone is None:
        grad_model = keras.Model(model.inputs, [target.output, head.input])
    else:
        # the layers before the backbone (augmentation is off at inference, the grey film
        # into three channels, ImageNet scaling), then the backbone's own graph to the
        # layer and to its features, then global average pooling (dropout is off)
        before = keras.Model(model.inputs, model.get_layer(feeding_layer(model, backbone)).output)
        inner = keras.Model(backbone.inputs, [target.output, backbone.output])

        def grad_model(x, training=False):
            conv, maps = inner(before(x, training=training), training=training)
            return conv, keras.ops.mean(maps, axis=(1, 2))
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    h, w = images.shape[1:3]
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            conv, features = grad_model(x, training=False)
            logit = tf.matmul(features, kernel) + bias      # the score before the sigmoid
            score = sign * logit[:, 0]
        grads = tape.gradient(score, conv)
        if method == "gradcam":
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)   # per channel
        else:  # HiResCAM: the gradient at every position, not its spatial mean
            weights = grads
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))
        cam = tf.image.resize(cam[..., None], (h, w), method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        out.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
    return np.concatenate(out)


def explain(estimator, X, *, layer: str | None = None, target: str = "PNEUMONIA",
            method: str = "hirescam", out_dir=None, progress: bool = False) -> Explanation:
    """Grad-CAM heat maps of a fitted model's decisions.

    Parameters
    ----------
    estimator : fitted PneumoniaCNN (or SiteCalibratedCNN)
    X : str, path-like, sequence of paths, ImageData or array (n, h, w[, 1])
        Images, as everywhere in the package.
    layer : str, default=None
        Layer to explain (default: the last convolution block).
    target : {"PNEUMONIA", "NORMAL"}, default="PNEUMONIA"
        Whose evidence: what raised P(PNEUMONIA), or what lowered it.
    method : {"hirescam", "gradcam"}, default="hirescam"
        See the module notes.
    out_dir : str or path-like, default=None
        Write one overlay PNG per image there (see :func:`write_overlays`) and an
        ``index.html`` showing them side by side.
    progress : bool, default=False
        Print progress while writing overlays.

    Returns
    -------
    Explanation
    """
    if target not in ("PNEUMONIA", "NORMAL"):
        raise ValueError(f"target must be 'PNEUMONIA' or 'NORMAL', got {target!r}")
    net = network_of(estimator)  # a site model's network (under one wrapper or two)
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(net, "model_")
    data = load_any(X, net.input_size())
    paths = data.paths if data is not None else None
    images = net.prepare_images(data.X if data is not None else X)
    proba = np.asarray(estimator.predict_proba(images))[:, 1]
    labels = np.asarray(estimator.predict(images)).astype(str)
    inputs = net.feature_encoder_.transform(images)
    heat = gradcam(net.model_, np.asarray(inputs), layer,
                   sign=1.0 if target == "PNEUMONIA" else -1.0, method=method)
    result = Explanation(heatmaps=heat, images=images[..., 0], probabilities=proba,
                         labels=labels, target=target,
                         layer=layer or last_conv_layer(_members(net.model_)[0]),
                         paths=paths, method=method)
    if out_dir is not None:
        result.files = write_overlays(result, out_dir, progress=progress)
    return result


_METHOD_NAMES = {"hirescam": "HiResCAM", "gradcam": "Grad-CAM"}


def _shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, its start and its end kept
    (``person1461_vir…2510.jpeg``): the end of a file name tells films apart."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return f"{name[:width - 1 - tail]}\u2026{name[-tail:]}"


def _shown(result, i: int, file) -> str:
    """What the index shows for image ``i``: its path as text, else the overlay's name."""
    return display_path(result.paths[i]) if result.paths is not None else Path(file).name


def overlay_figure(image, heatmap, title: str):
    """One overlay: the film in grey, the heat map in colour (jet, 40% opaque)."""
    fig, ax = plt.subplots(figsize=(3.2, 3.5))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def write_overlays(result: Explanation, out_dir, *, progress: bool = False) -> list:
    """Write one overlay PNG per image and ``index.html`` (all of them with their
    probabilities, side by side). Returns the PNG files."""
    import html
    from urllib.parse import quote

    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    n = len(result.heatmaps)
    for i in range(n):
        name = (Path(display_path(result.paths[i])).stem if result.paths is not None
                else f"image_{i:04d}")
        title = (f"{_shorten(name, 28)}\nP(PNEUMONIA)={result.probabilities[i]:.3f} -> "
                 f"{result.labels[i]}\n{result.target} evidence")
        fig = overlay_figure(result.images[i], result.heatmaps[i], title)
        file = out / f"{i:04d}_{name[:60]}_{result.target.lower()}.png"
        fig.savefig(file, dpi=100)
        plt.close(fig)
        files.append(str(file))
        if progress and ((i + 1) % 20 == 0 or i + 1 == n):
            print(f"  {i + 1}/{n} overlays written", flush=True)
    cells = "\n".join(
        f'<figure><img src="{html.escape(quote(Path(f).name))}" width="240"><figcaption>'
        f"{html.escape(_shown(result, i, f))}"
        f"<br>P(PNEUMONIA) = {result.probabilities[i]:.3f}: {result.labels[i]}"
        "</figcaption></figure>" for i, f in enumerate(files))
    mark_outputs(out, [*files, "index.html"])
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>pneumonia-cnn explanations</title>"
        "<style>body{font-family:sans-serif} figure{display:inline-block;margin:6px;"
        "font-size:12px;width:240px;vertical-align:top}</style>"
        f"<h1>{_METHOD_NAMES.get(result.method, result.method)}: {result.target} evidence "
        f"({html.escape(result.layer)})</h1>"
        "<p>Colour = regions whose features raised the score of "
        f"{result.target}. A map shows where the network looked, not that it is right.</p>"
        f"{cells}\n")
    return files


def error_gallery(estimator, X, per_image, threshold: float, n: int = 4, *,
                  data: str | None = None, synthetic: bool = False):
    """One figure of the most confident mistakes, with their PNEUMONIA-evidence maps.

    Rows: false positives (NORMAL films with the highest P(PNEUMONIA)), false negatives
    (PNEUMONIA films with the lowest), and for contrast the most confident true positives
    and true negatives; up to ``n`` films a row, each titled with its file name and
    probability. Returns None when there is nothing to show.

    Parameters
    ----------
    estimator : fitted PneumoniaCNN or SiteCalibratedCNN
    X : ndarray (n_images, h, w, 1)
        The evaluated images, in the order of ``per_image``.
    per_image : pandas.DataFrame
        :func:`pneumonia_cnn.analysis.evaluate`'s table (``true``, ``probability``,
        ``path``).
    threshold : float
    n : int, default=4
        Films a row.
    data : str, default=None
        Name of the evaluated data, for the title.
    synthetic : bool, default=False
        The built-in synthetic set: the title says SYNTHETIC DATA.
    """
    p = per_image["probability"].to_numpy()
    true = per_image["true"].to_numpy()
    pred = p >= threshold
    pos = true == "PNEUMONIA"
    rows = [
        ("false positives (NORMAL called PNEUMONIA)", np.flatnonzero(~pos & pred), -p),
        ("false negatives (PNEUMONIA called NORMAL)", np.flatnonzero(pos & ~pred), p),
        ("true positives, most confident", np.flatnonzero(pos & pred), -p),
        ("true negatives, most confident", np.flatnonzero(~pos & ~pred), p),
    ]
    rows = [(title, idx[np.argsort(key[idx], kind="stable")][:n]) for title, idx, key in rows]
    chosen = np.concatenate([idx for _, idx in rows]).astype(int)
    if chosen.size == 0:
        return None
    pixels = np.asarray(X[chosen])  # the few shown (X may be a stream on disk)
    result = explain(estimator, pixels)
    maps = dict(zip(chosen.tolist(), result.heatmaps))
    films = dict(zip(chosen.tolist(), pixels))
    fig, axes = plt.subplots(len(rows), n, figsize=(2.3 * n, 2.75 * len(rows)), squeeze=False)
    paths = per_image["path"].astype(str).to_numpy()
    for r, (title, idx) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                if c == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=10)
                continue
            i = int(idx[c])
            ax.imshow(films[i][..., 0], cmap="gray", vmin=0, vmax=255)
            ax.imshow(maps[i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.set_title(f"{_shorten(Path(display_path(paths[i])).name, 24)}\n"
                         f"P(PNEUMONIA)={p[i]:.3f}",
                         fontsize=7)
        axes[r, 0].text(-0.08, 0.5, title, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=8)
    head = "SYNTHETIC DATA (drawn images, not radiographs) - " if synthetic else ""
    where = f"{_shorten(display_path(data), 60)}, " if data else ""
    fig.suptitle(f"{head}Error gallery: {where}{len(p)} films, threshold {threshold:.3f}\n"
                 f"heat maps: PNEUMONIA evidence ({_METHOD_NAMES['hirescam']})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    scale = fig.add_axes((0.945, 0.25, 0.012, 0.5))
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1)), cax=scale,
                 label="PNEUMONIA evidence (each map scaled to its maximum)")
    return fig


#: Width of the film's border band, as a share of its side, in :func:`heat_on_border`.
BORDER_BAND = 0.125


def heat_on_border(heatmaps, band: float = BORDER_BAND) -> dict:
    """How much of the evidence maps lies on the film's border (an outer band of ``band``
    of its side: laterality markers, collimation edges, the corners) rather than inside,
    where the lungs are.

    Parameters
    ----------
    heatmaps : ndarray of shape (n, size, size)
        Maps of :func:`explain`.
    band : float, default=BORDER_BAND

    Returns
    -------
    dict
        ``share`` (mean share of the heat in the band over the films), ``area_share``
        (the band's share of the area: what a map spread evenly would put there),
        ``n_films``, ``band``.
    """
    h = np.clip(np.asarray(heatmaps, float), 0, None)
    n, rows, cols = h.shape
    b = max(1, int(round(band * min(rows, cols))))
    mask = np.ones((rows, cols), bool)
    mask[b:rows - b, b:cols - b] = False
    total = h.reshape(n, -1).sum(axis=1)
    shares = h[:, mask].sum(axis=1)[total > 0] / total[total > 0]
    return {"share": float(shares.mean()) if shares.size else None,
            "area_share": float(mask.mean()), "n_films": int(shares.size), "band": band}
