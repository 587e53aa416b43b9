"""Peak memory of training the default PneumoniaCNN on a full-Kaggle-size training set.

    python benchmarks/memory.py [--data chest_xray/train] [--images 5216] [--epochs 2]

The 1,738 images are repeated to 5,216 (the size of Kaggle's full training split). Each
measurement runs in a fresh child process and reports its peak resident memory
(``ru_maxrss``): ``baseline`` imports TensorFlow and loads the images; ``training`` also trains
the default model (its patient-grouped validation split included) for ``--epochs`` epochs.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402

CHILD = r"""
import sys, time, numpy as np
from pneumonia_cnn import PneumoniaCNN, load_image_folder
data, n, epochs, train = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
d = load_image_folder(data, PneumoniaCNN().input_size())
reps = -(-n // len(d))
X = np.concatenate([d.X] * reps)[:n]
y = np.concatenate([d.y] * reps)[:n]
g = np.concatenate([np.char.add(d.groups, f"#{r}") for r in range(reps)])[:n]
t = time.perf_counter()
if train:
    PneumoniaCNN(epochs=epochs, patience=None, random_state=0, tracking=False).fit(X, y, groups=g)
print(len(X), time.perf_counter() - t)
"""


def measure(data, n, epochs, train):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(n), str(epochs),
                          "1" if train else "0"], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    n_images, seconds = out.stdout.split()
    # ru_maxrss of children is the max over all children so far: run baseline first
    return {"images": int(n_images), "seconds": round(float(seconds), 1),
            "peak_rss_gib": round(max(peak_kib, before) / 2 ** 20, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--images", type=int, default=5216)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    data = data_dir(args.data)
    out = {"benchmark": "memory", "machine": machine(),
           "command": "python benchmarks/memory.py " + " ".join(sys.argv[1:])}
    out["baseline"] = measure(data, args.images, args.epochs, False)
    out["training"] = measure(data, args.images, args.epochs, True)
    out["training"]["epochs"] = args.epochs
    out["training_minus_baseline_gib"] = round(
        out["training"]["peak_rss_gib"] - out["baseline"]["peak_rss_gib"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
