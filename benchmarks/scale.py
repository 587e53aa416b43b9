"""Scale: decoding, training and memory for 5,216 to 100,000 images at 96 and 224 px.

    python benchmarks/scale.py [--data chest_xray/train] [--sizes 96,224]
                               [--counts 5216,20000,100000] [--steps 60]

The data sets are made by repeating the real images of ``--data`` (symbolic links named
``<original>_r<k>.jpeg``, so every copy keeps its patient id); each image is decoded and
resized to the size measured, as a larger data set would be. Every configuration runs in a
fresh process (its own peak memory), with an empty image cache, in this order per size:

- 5,216 images in memory (``stream=False``) and streamed from disk (``stream=True``, the
  cache of the run before: decoding is not measured twice) -- the in-memory reference;
- 20,000 and 100,000 images as the loaders choose (``stream="auto"``: in memory up to
  256 MiB of decoded pixels, streamed above).

Each configuration measures:

- ``decode_images_per_s``: first load of the folder (parallel decoding into the cache);
- ``train_images_per_s``: the default PneumoniaCNN (one network, CLAHE, acquisition
  augmentation, batch 32) trained for 2 epochs of ``--steps`` batches, without a validation
  hold-out; the throughput of the second epoch (the first includes tracing). ``fit_s`` is the
  whole fit, intensity normalisation of the data included;
- ``read_images_per_s`` (streams): one full shuffled epoch of the training input pipeline
  over all images (what an epoch reads from disk), without the network;
- ``predict_images_per_s``: ``predict_proba`` on 4,096 images;
- ``peak_rss_mib``: the process's peak resident memory (``VmHWM``) over all of the above.

Checks: peak memory under 4 GiB everywhere, and at 5,216 images the streamed training
throughput within 20% of the in-memory one (ratio >= 0.8), measured in the same run.
Prints one JSON object (also written to ``benchmarks/results/scale.json``).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, epoch_timer, machine  # noqa: E402

KAGGLE_TRAIN = 5216
GIB = 2**30


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_tree(source: Path, n: int, dest: Path) -> Path:
    """``n`` symbolic links to the images of ``source``, in its class folders."""
    from pneumonia_cnn.data import find_class_folders, image_files

    files = [(c, f) for c, folder in find_class_folders(source).items()
             for f in image_files(folder)]
    for c in {c for c, _ in files}:
        (dest / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c, f = files[i % len(files)]
        os.symlink(f, dest / c / f"{f.stem}_r{i // len(files)}{f.suffix}")
    return dest


def worker(args) -> dict:
    import warnings

    import numpy as np

    from pneumonia_cnn import PneumoniaCNN, load_image_folder, quiet_tensorflow
    from pneumonia_cnn.data import ImageStream, stream_batches

    quiet_tensorflow()
    warnings.simplefilter("ignore")  # the copies are duplicates by design
    stream = {"memory": False, "stream": True, "auto": "auto"}[args.mode]
    t = time.perf_counter()
    data = load_image_folder(args.tree, args.size, cache=args.cache, stream=stream)
    load_s = time.perf_counter() - t
    out = {"images": len(data), "size": args.size, "mode": args.mode,
           "streamed": isinstance(data.X, ImageStream),
           "decoded_mib": round(len(data) * args.size**2 / 2**20, 1),
           "load_s": round(load_s, 2), "rss_after_load_mib": round(peak_rss_mib())}
    if not args.warm_cache:
        out["decode_images_per_s"] = round(len(data) / load_s, 1)

    timer = epoch_timer()
    clf = PneumoniaCNN(image_size=args.size, n_networks=1, epochs=2, validation_fraction=0,
                       threshold=0.5, tracking=False, random_state=0, verbose=0,
                       callbacks=[timer])
    t = time.perf_counter()
    clf.fit(data, steps_per_epoch=args.steps)
    out["fit_s"] = round(time.perf_counter() - t, 2)
    out["train_images_per_s"] = round(args.steps * 32 / timer.times[1], 1)
    out["rss_after_fit_mib"] = round(peak_rss_mib())
    if isinstance(data.X, ImageStream):
        X = clf.feature_encoder_.transform(data.X)  # the normalised stream the fit read
        y = (data.y == "PNEUMONIA").astype(np.float32)
        t = time.perf_counter()
        n = sum(len(b[0]) for b in stream_batches(X, y, batch_size=32, shuffle=True, seed=0))
        out["read_images_per_s"] = round(n / (time.perf_counter() - t), 1)
    rows = np.arange(min(4096, len(data)))
    t = time.perf_counter()
    clf.predict_proba(data.X[rows])
    out["predict_images_per_s"] = round(len(rows) / (time.perf_counter() - t), 1)
    out["peak_rss_mib"] = round(peak_rss_mib())
    return out


def run_config(tree, size, mode, cache, steps, warm_cache=False) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--tree", str(tree), "--size", str(size),
           "--mode", mode, "--cache", str(cache), "--steps", str(steps)]
    if warm_cache:
        cmd.append("--warm-cache")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)  # progress
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data")
    p.add_argument("--sizes", default="96,224")
    p.add_argument("--counts", default=f"{KAGGLE_TRAIN},20000,100000")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--work", help="folder for the links and caches [a temporary folder]")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--warm-cache", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    source = data_dir(args.data)
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(c) for c in args.counts.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="scale-"))
    results = []
    started = time.time()
    try:
        for n in counts:
            tree = make_tree(source, n, work / f"tree{n}")
            for size in sizes:
                cache = work / f"cache{n}-{size}"
                if n == counts[0]:
                    results.append(run_config(tree, size, "memory", cache, args.steps))
                    results.append(run_config(tree, size, "stream", cache, args.steps,
                                              warm_cache=True))
                else:
                    results.append(run_config(tree, size, "auto", cache, args.steps))
                shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(tree, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    checks = {"peak_rss_under_4_gib": all(r["peak_rss_mib"] < 4 * 1024 for r in results)}
    for size in sizes:
        mem = next(r for r in results if r["size"] == size and r["mode"] == "memory")
        st = next(r for r in results if r["size"] == size and r["mode"] == "stream")
        ratio = st["train_images_per_s"] / mem["train_images_per_s"]
        checks[f"stream_vs_memory_train_throughput_{size}px"] = round(ratio, 3)
        checks[f"stream_within_20pct_{size}px"] = ratio >= 0.8
    report = {"benchmark": "scale", "command": "python benchmarks/scale.py " + " ".join(
        sys.argv[1:]), "machine": machine(), "source_images": str(source),
        "steps_per_epoch": args.steps, "wall_s": round(time.time() - started),
        "results": results, "checks": checks}
    out = Path(__file__).parent / "results" / "scale.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
