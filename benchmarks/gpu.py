"""The default trained on a GPU: epoch time, images/s, device use, and agreement with the CPU.

    python benchmarks/gpu.py [--data ../shared/data/chest_xray_224/train] [--sizes 96,224]
                             [--seed 0] [--cpu-scores FILE] [--mixed-precision] [--xla]
                             [--backbone none|efficientnet-lite0]

With no GPU visible to TensorFlow it prints one JSON object saying so and exits 0 (the test
suite and CI run without one). With a GPU it trains the default ``PneumoniaCNN`` on the
whole training split at each ``--sizes`` (patient-grouped 15% hold-out of its own, seed
``--seed``) and reports, per size:

- ``epoch_s`` (median of the epochs after the first), ``images_per_s``;
- the device's utilisation and memory during training, sampled every 0.5 s from
  ``nvidia-smi`` (median and max);
- the ROC AUC on a patient-grouped 20% test part held out before training, and, given
  ``--cpu-scores`` (the scores a CPU run of the same seed saved with ``--save-scores``),
  the difference of the two ROC AUCs (the issue asks for agreement within 0.005).

``--mixed-precision`` sets Keras' ``mixed_float16`` policy and ``--xla`` turns on XLA
auto-clustering (``tf.config.optimizer.set_jit``): each is measured, not assumed to help.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import epoch_timer, machine  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "chest_xray_224", "train")


def gpus() -> list:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


class DeviceSampler:
    """Utilisation and memory of GPU 0 every ``every`` seconds, from ``nvidia-smi``."""

    def __init__(self, every: float = 0.5):
        self.every, self.util, self.mem, self._stop = every, [], [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        exe = shutil.which("nvidia-smi")
        while exe and not self._stop.is_set():
            out = subprocess.run([exe, "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True).stdout.strip()
            try:
                u, m = (float(v) for v in out.split(","))
                self.util.append(u)
                self.mem.append(m)
            except ValueError:
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.util:
            return {"utilisation_pct": None, "memory_mib": None}
        return {"utilisation_pct": {"median": statistics.median(self.util),
                                    "max": max(self.util)},
                "memory_mib": {"median": statistics.median(self.mem), "max": max(self.mem)}}


def run_size(data, size: int, seed: int, args) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.data import grouped_split

    films = load_image_folder(data, size)
    train, test = grouped_split(films.y, films.groups, 0.2, random_state=seed)
    timer = epoch_timer()
    backbone = None if args.backbone == "none" else args.backbone
    clf = PneumoniaCNN(backbone=backbone, image_size=size, n_networks=1, random_state=seed,
                       tracking=False, callbacks=[timer])
    start = time.perf_counter()
    with DeviceSampler() as sampler:
        clf.fit(films.subset(train))
    fit_s = time.perf_counter() - start
    scores = clf.predict_proba(films.X[test])[:, 1]
    labels = films.y[test] == "PNEUMONIA"
    steady = timer.times[1:] or timer.times
    out = {"image_size": size, "n_train": int(clf.n_train_), "epochs": len(timer.times),
           "fit_s": round(fit_s, 1), "epoch_s": round(statistics.median(steady), 2),
           "images_per_s": round(clf.n_train_ / statistics.median(steady), 1),
           "roc_auc": round(float(roc_auc_score(labels, scores)), 4), **sampler.summary()}
    if args.save_scores:
        np.save(f"{args.save_scores}_{size}.npy", scores)
    if args.cpu_scores:
        cpu = np.load(f"{args.cpu_scores}_{size}.npy")
        out["cpu_roc_auc"] = round(float(roc_auc_score(labels, cpu)), 4)
        out["roc_auc_gpu_minus_cpu"] = round(out["roc_auc"] - out["cpu_roc_auc"], 4)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("PNEUMONIA_CNN_DATA_224",
                                                         DEFAULT_DATA))
    parser.add_argument("--sizes", default="96,224")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="none",
                        help="none (the from-scratch network) or efficientnet-lite0")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--save-scores", metavar="PREFIX",
                        help="save the test part's scores (to compare a CPU and a GPU run)")
    parser.add_argument("--cpu-scores", metavar="PREFIX",
                        help="scores a CPU run of the same seed saved with --save-scores")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without a GPU (to save the CPU scores to compare with)")
    args = parser.parse_args(argv)
    out = {"command": "python benchmarks/gpu.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "date": time.strftime("%Y-%m-%d")}
    devices = gpus()
    out["gpus"] = devices
    if not devices and not args.allow_cpu:
        out["result"] = ("no GPU visible to TensorFlow: nothing measured (run it where a "
                         "device is lent; --allow-cpu runs on the CPU)")
        print(json.dumps(out, indent=1))
        return 0
    if args.mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    if args.xla:  # XLA auto-clustering of the TensorFlow graphs Keras builds
        import tensorflow as tf

        tf.config.optimizer.set_jit(True)
    if not os.path.isdir(args.data):
        raise SystemExit(f"data folder {args.data} not found: pass --data")
    out["mixed_precision"], out["xla"] = args.mixed_precision, args.xla
    out["backbone"] = args.backbone
    out["runs"] = [run_size(args.data, int(s), args.seed, args)
                   for s in args.sizes.split(",")]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
