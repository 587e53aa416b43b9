"""Where an epoch of the default goes on the whole training split: input pipeline or compute.

    python benchmarks/train_profile.py [--data ../shared/data/chest_xray_224/train]
                                       [--image-size 96] [--epochs 3]

Prints one JSON object, every time measured in this process on this machine:

- ``decode_s``: loading the films (from the image cache when it is warm);
- ``normalize_s``: CLAHE of every film (``intensity_norm="clahe"``), which ``fit`` runs once
  per fit (once for the ensemble: its networks share it);
- ``pipeline_epoch_s``: one epoch of the ``tf.data`` input pipeline alone (batches drawn, no
  training);
- ``compute_epoch_s``: the same number of training steps of the default network on one
  batch held in memory (no input pipeline);
- ``fit_epoch_s`` (median of the epochs after the first) and ``images_per_s``: the network
  trained by Keras on the pipeline, as ``PneumoniaCNN.fit`` feeds it;
- ``pipeline_share``: pipeline_epoch_s / fit_epoch_s (near 0: compute-bound; the pipeline
  prefetches, so its time overlaps the compute).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_224, epoch_timer, machine  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="[../shared/data/chest_xray_224/train]")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.estimator import in_memory_batches
    from pneumonia_cnn.network import normalize_intensity

    out = {"command": "python benchmarks/train_profile.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "date": time.strftime("%Y-%m-%d")}
    data_path = data_224(args.data)
    start = time.perf_counter()
    data = load_image_folder(data_path, args.image_size)
    out["decode_s"] = round(time.perf_counter() - start, 2)
    out["n_images"] = len(data)
    start = time.perf_counter()
    X = normalize_intensity(np.asarray(data.X), "clahe")
    out["normalize_s"] = round(time.perf_counter() - start, 2)
    y = (data.y == "PNEUMONIA").astype("float32")

    batch = 32
    ds = in_memory_batches(X, y, batch_size=batch, shuffle=True)
    start = time.perf_counter()
    steps = sum(1 for _ in ds)
    out["pipeline_epoch_s"] = round(time.perf_counter() - start, 2)

    clf = PneumoniaCNN(n_networks=1, epochs=args.epochs, tracking=False, random_state=0,
                       validation_fraction=0.0, intensity_norm=None)
    clf.initialize(X[:2], data.y[:2])
    model = clf.model_
    one = (tf.constant(X[:batch]), tf.constant(y[:batch]))
    model.train_on_batch(*one)  # trace the step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*one)
    out["compute_epoch_s"] = round(time.perf_counter() - start, 2)

    timer = epoch_timer()
    clf = PneumoniaCNN(n_networks=1, epochs=args.epochs, tracking=False, random_state=0,
                       validation_fraction=0.0, intensity_norm=None, callbacks=[timer])
    clf.fit(X, data.y)
    steady = statistics.median(timer.times[1:] or timer.times)
    out["fit_epoch_s"] = round(steady, 2)
    out["images_per_s"] = round(len(X) / steady, 1)
    out["pipeline_share"] = round(out["pipeline_epoch_s"] / steady, 3)
    out["compute_share"] = round(out["compute_epoch_s"] / steady, 3)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
