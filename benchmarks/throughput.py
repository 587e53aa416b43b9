"""Training throughput vs what this CPU can do.

    python benchmarks/throughput.py [--data chest_xray/train]

Prints one JSON object: for the default PneumoniaCNN (with and without its augmentation) and
for the lab's reference CNN, the forward FLOPs per image (convolutions and dense layers;
multiply-add = 2), training FLOPs per image (3x forward: forward, input gradients, weight
gradients), steady-state training images/s (second epoch over 1,024 images) and achieved
GFLOP/s; and the machine's dense float32 matrix-multiply peak (2048x2048 tf.matmul, best of
3 runs of 2 s) measured in the same process, with each model's fraction of it.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import build_reference_model, data_dir, machine, to_rgb  # noqa: E402


def matmul_peak_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda: tf.matmul(a, b))
    f().numpy()
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            f().numpy()
            count += 1
        best = max(best, count * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def train_rate(model, X, y, batch_size: int) -> float:
    model.fit(X[:256], y[:256], batch_size=batch_size, epochs=1, verbose=0)  # warm-up / trace
    start = time.perf_counter()
    model.fit(X, y, batch_size=batch_size, epochs=1, verbose=0)
    return len(X) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--images", type=int, default=1024)
    args = ap.parse_args()
    data = data_dir(args.data)

    import keras

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.model import build_model, count_flops

    peak = matmul_peak_gflops()
    out = {"benchmark": "throughput", "machine": machine(),
           "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
           "matmul_peak_gflops": round(peak, 1), "models": {}}
    p = PneumoniaCNN().get_params()
    d = load_image_folder(data, p["image_size"])
    X, y = d.X[:args.images], (d.y[:args.images] == "PNEUMONIA").astype("float32")
    arch = {k: p[k] for k in ("filters", "kernel_size", "convs_per_block", "pooling",
                              "batch_norm", "global_pooling", "dense_units", "dropout")}
    cases = {"default": (lambda: build_model(X.shape[1:], augmentation=p["augmentation"],
                                             **arch), X, p["batch_size"]),
             "default_no_augmentation": (lambda: build_model(X.shape[1:], augmentation=None,
                                                             **arch), X, p["batch_size"])}
    r = load_image_folder(data, 150)
    Xr = to_rgb(r.X[:args.images])
    cases["lab_reference"] = (build_reference_model, Xr, 20)
    for name, (make, Xc, bs) in cases.items():
        keras.utils.set_random_seed(0)
        model = make()
        if not model.compiled:
            model.compile(optimizer="adam", loss="binary_crossentropy")
        fwd = count_flops(model)
        rate = train_rate(model, Xc, y, bs)
        achieved = 3 * fwd * rate / 1e9
        out["models"][name] = {"input": list(Xc.shape[1:]), "forward_gflop_per_image":
                               round(fwd / 1e9, 4),
                               "train_gflop_per_image": round(3 * fwd / 1e9, 4),
                               "train_images_per_s": round(rate, 1),
                               "achieved_gflops": round(achieved, 1),
                               "fraction_of_matmul_peak": round(achieved / peak, 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
