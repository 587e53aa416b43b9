"""Small images: the network chosen for 28-px inputs against the 96-px design scaled down.

    python benchmarks/small_images.py [--data pneumoniamnist.npz] [--seeds 0] [--out FILE]

Trains on PneumoniaMNIST's ``train`` split and scores its ``val`` split (its ``test`` split,
the official Kaggle test films, is held back). Variants (all with ``image_size=28``, the
rest of the defaults):

- ``standard``: the 96-px architecture (filters 8-16-32-64, one convolution a block,
  flatten, dense 64, "acquisition" augmentation): the default before small images had their
  own;
- ``small``: today's default at 28 px (``ARCHITECTURES["small"]``: filters 32-64-128, two
  convolutions a block, global average pooling, no dense layer, "light" augmentation);
- the steps between them.

PneumoniaMNIST has no patient ids, and its splits are by image: ``val`` shares children with
``train``, so these numbers are optimistic for new patients (and far more for a new site).
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "pneumoniamnist.npz")
STANDARD = {"filters": (8, 16, 32, 64), "convs_per_block": 1, "global_pooling": False,
            "dense_units": 64, "augmentation": "acquisition"}
VARIANTS = {
    "standard": STANDARD,
    "small_net_acquisition_aug": {**STANDARD, "filters": (32, 64, 128), "convs_per_block": 2,
                                  "global_pooling": True, "dense_units": 0},
    "small_net_acquisition_aug_no_clahe": {**STANDARD, "filters": (32, 64, 128),
                                           "convs_per_block": 2, "global_pooling": True,
                                           "dense_units": 0, "intensity_norm": None},
    "small": {},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "small_images.json"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.data import load_data

    if not os.path.isfile(args.data):
        raise SystemExit(f"{args.data} not found: pass --data pneumoniamnist.npz")
    train = load_data(args.data + ":train", 28)
    val = load_data(args.data + ":val", 28)
    y = (val.y == "PNEUMONIA").astype(int)
    rows = []
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            clf = PneumoniaCNN(image_size=28, tracking=False, random_state=seed,
                               **VARIANTS[name])
            start = time.perf_counter()
            clf.fit(train.X, train.y)
            fit_s = time.perf_counter() - start
            s = clf.predict_proba(val.X)[:, 1]
            t = clf.threshold_
            row = {"variant": name, "seed": seed, "architecture": {
                       k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in clf.architecture().items()},
                   "intensity_norm": clf.intensity_norm, "fit_time_s": round(fit_s, 1),
                   "roc_auc": round(float(roc_auc_score(y, s)), 4),
                   "threshold": round(float(t), 4),
                   "accuracy": round(float(np.mean((s >= t) == y)), 4),
                   "sensitivity": round(float(np.mean(s[y == 1] >= t)), 4),
                   "specificity": round(float(np.mean(s[y == 0] < t)), 4),
                   "accuracy_at_0.5": round(float(np.mean((s >= 0.5) == y)), 4)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"command": "python benchmarks/small_images.py " + " ".join(argv or sys.argv[1:]),
           "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "data": os.path.abspath(args.data), "n_train": len(train), "n_val": len(val),
           "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
