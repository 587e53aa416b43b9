"""Training throughput vs what this CPU can do.

    python benchmarks/throughput.py [--data chest_xray/train]

Prints one JSON object: for the default PneumoniaCNN (fed as ``PneumoniaCNN.fit`` feeds it;
again fed by Keras' own NumPy pipeline; and with the "standard" augmentation) and for the
lab's reference CNN: forward FLOPs per image (convolutions and dense layers; multiply-add =
2), training FLOPs per image (3x forward: forward, input gradients, weight gradients),
steady-state training images/s (3 epochs over 1,024 images after a warm-up) and achieved
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


def train_rate(model, X, y, batch_size: int, pipeline: str = "memory",
               epochs: int = 3) -> float:
    """Steady-state training images/s over ``epochs`` epochs, after a warm-up that traces.

    ``pipeline="memory"`` feeds batches as ``PneumoniaCNN.fit`` does (its in-memory
    ``tf.data`` pipeline); ``"keras"`` passes the NumPy arrays to ``Model.fit`` directly."""
    from pneumonia_cnn.estimator import in_memory_batches

    if pipeline == "memory":
        data = {"x": in_memory_batches(X, y, batch_size=batch_size, shuffle=True)}
        warm = {"x": in_memory_batches(X[:256], y[:256], batch_size=batch_size)}
    else:
        data = {"x": X, "y": y, "batch_size": batch_size}
        warm = {"x": X[:256], "y": y[:256], "batch_size": batch_size}
    model.fit(**warm, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(**data, epochs=epochs, verbose=0)
    return epochs * len(X) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--images", type=int, default=1024)
    args = ap.parse_args()
    data = data_dir(args.data)

    import keras

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.network import build_model, count_flops

    peak = matmul_peak_gflops()
    out = {"benchmark": "throughput", "machine": machine(),
           "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
           "matmul_peak_gflops": round(peak, 1), "models": {}}
    p = PneumoniaCNN().get_params()
    d = load_image_folder(data, p["image_size"])
    X, y = d.X[:args.images], (d.y[:args.images] == "PNEUMONIA").astype("float32")
    arch = {k: p[k] for k in ("filters", "kernel_size", "convs_per_block", "pooling",
                              "batch_norm", "global_pooling", "dense_units", "dropout")}
    def default(augmentation=p["augmentation"]):
        return build_model(X.shape[1:], augmentation=augmentation, **arch)

    cases = {"default": (default, X, p["batch_size"], "memory"),
             "default_fed_by_keras_numpy": (default, X, p["batch_size"], "keras"),
             "default_with_standard_augmentation": (lambda: default("standard"), X,
                                                    p["batch_size"], "memory")}
    r = load_image_folder(data, 150)
    Xr = to_rgb(r.X[:args.images])
    cases["lab_reference"] = (build_reference_model, Xr, 20, "keras")
    for name, (make, Xc, bs, pipeline) in cases.items():
        keras.utils.set_random_seed(0)
        model = make()
        if not model.compiled:
            model.compile(optimizer="adam", loss="binary_crossentropy")
        fwd = count_flops(model)
        rate = train_rate(model, Xc, y, bs, pipeline)
        achieved = 3 * fwd * rate / 1e9
        out["models"][name] = {"input": list(Xc.shape[1:]), "pipeline": pipeline,
                               "forward_gflop_per_image":
                               round(fwd / 1e9, 4),
                               "train_gflop_per_image": round(3 * fwd / 1e9, 4),
                               "train_images_per_s": round(rate, 1),
                               "achieved_gflops": round(achieved, 1),
                               "fraction_of_matmul_peak": round(achieved / peak, 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
