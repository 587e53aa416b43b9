"""Are the heat maps honest? Localisation on synthetic opacities and Adebayo's sanity check.

    python benchmarks/explain_sanity.py

Trains a small network (64 px, 8-16-32 filters, one network, no augmentation) on 360
synthetic films whose opacities are known (``make_synthetic_xray(return_mask=True)``) and,
on 120 held-out films, reports for the correctly classified PNEUMONIA films, for HiResCAM
(the default) and plain Grad-CAM: the share of the map's mass on the opacities, within 4 px
of them, the opacities' share of the image, and how often the map's peak is on them. Then
randomises the dense, output and last convolution layers' weights and reports the Spearman
rank correlation between the trained and randomised maps (Adebayo et al., 2018). Prints JSON.
The tests in tests/test_explain.py assert the same properties.
"""

import json
import sys

import numpy as np
from scipy import ndimage
from scipy.stats import spearmanr


def main():
    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.analysis import explain, last_conv_layer
    from pneumonia_cnn.data import make_synthetic_xray

    rng = np.random.default_rng(0)
    imgs, masks, y = [], [], []
    for i in range(480):
        im, m = make_synthetic_xray(rng, 64, i % 2 == 1, return_mask=True)
        imgs.append(im)
        masks.append(m)
        y.append("PNEUMONIA" if i % 2 else "NORMAL")
    X, M, y = np.array(imgs)[..., None], np.array(masks), np.array(y)
    clf = PneumoniaCNN(image_size=64, filters=(8, 16, 32), dense_units=16, epochs=20,
                       batch_size=16, validation_fraction=0.2, random_state=0,
                       augmentation=None, intensity_norm=None, n_networks=1, threshold=0.5,
                       tracking=False).fit(X[:360], y[:360])
    Xt, Mt, yt = X[360:], M[360:], y[360:]
    out = {"command": "python benchmarks/explain_sanity.py"}
    for method in ("hirescam", "gradcam"):
        e = explain(clf, Xt, method=method)
        hit = np.flatnonzero((yt == "PNEUMONIA") & (e.probabilities >= 0.5))
        near = [ndimage.binary_dilation(Mt[i], iterations=4) for i in hit]
        out[method] = {
            "n_films": int(hit.size),
            "mass_on_opacity": round(float(np.mean(
                [e.heatmaps[i][Mt[i]].sum() / e.heatmaps[i].sum() for i in hit])), 4),
            "mass_within_4px": round(float(np.mean(
                [e.heatmaps[i][m].sum() / e.heatmaps[i].sum() for i, m in zip(hit, near)])), 4),
            "opacity_share_of_image": round(float(np.mean([Mt[i].mean() for i in hit])), 4),
            "peak_within_4px": round(float(np.mean(
                [m.flat[e.heatmaps[i].argmax()] for i, m in zip(hit, near)])), 4),
        }
    before = explain(clf, Xt[:40]).heatmaps
    model = clf.model_
    r = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name in ("pneumonia", "dense", last_conv_layer(model).replace("relu", "conv")):
            layer.set_weights([r.normal(0, np.std(w) + 1e-3, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    after = explain(clf, Xt[:40]).heatmaps
    rho = [spearmanr(b.ravel(), a.ravel())[0] for b, a in zip(before, after)
           if b.std() > 0 and a.std() > 0]
    out["randomised_top_layers_spearman"] = {"mean": round(float(np.nanmean(rho)), 4),
                                             "median": round(float(np.nanmedian(rho)), 4),
                                             "n_maps": len(rho)}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
