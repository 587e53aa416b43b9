"""How long explanations take: Grad-CAM maps and overlay files for 100 images.

    python benchmarks/explain_speed.py [--data chest_xray/train] [--n 100]

Fits the default network briefly (2 epochs on 400 images: the time of a map does not depend
on how well the weights are trained), then times, in the same process, on ``--n`` images at
the default input size (96 px):

- ``predict_s``: ``predict_proba`` (the baseline),
- ``heatmaps_s``: ``explain(...)`` (maps only; includes its own predict_proba and predict),
- ``overlays_s``: ``explain(..., out_dir=...)`` (maps plus one PNG per image and index.html),
for one network (``n_networks=1``) and for the default (an ensemble of 3, with CLAHE, which
``predict_proba`` and ``explain`` both apply).

Prints JSON; each time is the best of 3 runs after a warm-up.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402


def best_of(fn, repeats=3):
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args(argv)

    import numpy as np

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.analysis import explain

    data = load_image_folder(data_dir(args.data), 96, verbose=0)
    rng = np.random.default_rng(0)
    train = rng.choice(len(data), 400, replace=False)
    X = data.X[rng.choice(len(data), args.n, replace=False)]
    out = {"command": "python benchmarks/explain_speed.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(), "n_images": args.n,
        "date": time.strftime("%Y-%m-%d")}
    for name, params in (("one_network", {"n_networks": 1}), ("default_ensemble_of_3", {})):
        clf = PneumoniaCNN(epochs=2, random_state=0, tracking=False, **params).fit(
            data.X[train], data.y[train])
        with tempfile.TemporaryDirectory() as tmp:
            row = {"predict_s": best_of(lambda: clf.predict_proba(X)),
                   "heatmaps_s": best_of(lambda: explain(clf, X)),
                   "overlays_s": best_of(lambda: explain(clf, X, out_dir=tmp), repeats=1)}
        row["heatmaps_per_image_ms"] = round(1000 * row["heatmaps_s"] / args.n, 2)
        row["heatmaps_over_predict"] = round(row["heatmaps_s"] / row["predict_s"], 2)
        out[name] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
