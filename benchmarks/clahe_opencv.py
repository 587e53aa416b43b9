"""Can OpenCV's CLAHE replace scikit-image's (20x faster) without moving predictions?

    python benchmarks/clahe_opencv.py [--data chest_xray/train] [--n 400]

Prints one JSON object, measured in this process:

- ``ms_per_film``: scikit-image's ``equalize_adapthist`` one film at a time, the package's
  batched CLAHE (what ``intensity_norm="clahe"`` runs: the same output, checked here too,
  ``batched_equal``) on all films at once, and OpenCV's ``createCLAHE`` with the same tiles
  and clip (1 count per bin, as scikit-image's ``clip_limit=0.01`` gives on 12 x 12 tiles),
  one at a time; all on 96-px films;
- ``pixels``: how far OpenCV's output is from scikit-image's, in grey levels (mean, 99th
  percentile, max), plain and with both of scikit-image's min-max stretches added around it;
- ``predictions``: a default-architecture network (one network, 4 epochs on 600 films of
  the first 70% of patients) scores ``--n`` films of the other patients with its own
  scikit-image CLAHE, then again with OpenCV's in its place: mean and max |change| of
  P(PNEUMONIA), labels flipped at its threshold, and both ROC AUCs.

A saved model's inputs must not move beyond a stated tolerance when the library changes;
this says whether they do.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    from sklearn.metrics import roc_auc_score

    import pneumonia_cnn.network._preprocessing as pre
    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.data import grouped_split

    def stretch(img):
        lo, hi = int(img.min()), int(img.max())
        if hi == lo:
            return np.zeros_like(img)
        return ((img.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)

    def opencv(img, stretched=True):
        k = max(img.shape[0] // 8, 4)
        tiles = (int(np.ceil(img.shape[1] / k)), int(np.ceil(img.shape[0] / k)))
        clahe = cv2.createCLAHE(clipLimit=0.01, tileGridSize=tiles)
        return stretch(clahe.apply(stretch(img))) if stretched else clahe.apply(img)

    out = {"command": "python benchmarks/clahe_opencv.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "date": time.strftime("%Y-%m-%d"), "opencv": cv2.__version__}
    data = load_image_folder(data_dir(args.data), 96)
    films = [data.X[i, ..., 0] for i in range(min(args.n, len(data)))]
    from skimage.exposure import equalize_adapthist

    start = time.perf_counter()
    ref = np.stack([np.clip(np.rint(equalize_adapthist(x, kernel_size=12, clip_limit=0.01)
                                    * 255), 0, 255).astype(np.uint8) for x in films])
    sk_ms = (time.perf_counter() - start) / len(films) * 1e3
    start = time.perf_counter()
    batched = pre.normalize_intensity(np.stack(films)[..., None], "clahe")[..., 0]
    batched_ms = (time.perf_counter() - start) / len(films) * 1e3
    start = time.perf_counter()
    fast = np.stack([opencv(x) for x in films])
    cv_ms = (time.perf_counter() - start) / len(films) * 1e3
    plain = np.stack([opencv(x, stretched=False) for x in films])
    out["ms_per_film"] = {"scikit_image": round(sk_ms, 3), "batched": round(batched_ms, 3),
                          "opencv": round(cv_ms, 3)}
    out["batched_equal"] = bool(np.array_equal(batched, ref))
    out["pixels"] = {}
    for name, arr in (("plain", plain), ("stretched", fast)):
        d = np.abs(arr.astype(int) - ref.astype(int))
        out["pixels"][name] = {"mean": round(float(d.mean()), 2),
                               "p99": float(np.percentile(d, 99)), "max": int(d.max())}

    train, test = grouped_split(data.y, data.groups, 0.3, random_state=0)
    clf = PneumoniaCNN(n_networks=1, epochs=4, random_state=0, tracking=False)
    clf.fit(data.subset(train[:600]))
    X, y = data.X[test[:args.n]], data.y[test[:args.n]] == "PNEUMONIA"
    before = clf.predict_proba(X)[:, 1]
    original = pre._clahe_uint8
    pre._clahe_uint8 = lambda batch: np.stack([
        np.zeros(img.shape, np.uint8) if img.min() == img.max() else opencv(img)
        for img in batch])
    try:
        after = clf.predict_proba(X)[:, 1]
    finally:
        pre._clahe_uint8 = original
    t = clf.threshold_
    out["predictions"] = {
        "n": int(len(y)), "mean_abs_change": round(float(np.abs(after - before).mean()), 4),
        "max_abs_change": round(float(np.abs(after - before).max()), 4),
        "labels_flipped": int(((before >= t) != (after >= t)).sum()),
        "roc_auc_scikit_image": round(float(roc_auc_score(y, before)), 4),
        "roc_auc_opencv": round(float(roc_auc_score(y, after)), 4)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
