"""Serving speed: `mlflow models serve` answering batches of real chest X-ray files.

    python benchmarks/serving.py [--data chest_xray/train] [--batch 64] [--repeats 10]

Fits the default model briefly (2 epochs on 400 images: speed does not depend on how well the
weights are trained) with tracking to a temporary sqlite store, registers it (champion),
starts ``mlflow models serve -m models:/bench@champion --env-manager local`` on a free port
-- the README's command -- and times, after a warm-up request:

- ``batch_latency_s``: one POST of ``--batch`` encoded files (base64 JPEG, dataframe_split),
  median and worst of ``--repeats``; ``images_per_s`` = batch / median latency;
- ``pixels_batch_latency_s``: the same images as a pixel array (``{"inputs": ...}``);
- ``single_latency_s``: one image per request (median of ``--repeats``);
- the baseline, in the same process and machine: ``in_process_s``, decoding the same files
  and ``predict_proba`` (``PneumoniaCNN.load`` of the same model), and the ratio
  ``serving_over_in_process``.

Prints JSON: the default (the pretrained Lite0 at 128 px, one network) and the from-scratch
network (``backbone=None``: its ensemble of 3 at 96 px), measured one after the other in
the same command, with each model's folder size.
"""

import argparse
import base64
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, payload) -> float:
    body = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        assert r.status == 200
        r.read()
    return time.perf_counter() - start


def _times(fn, repeats):
    fn()  # warm-up
    return [fn() for _ in range(repeats)]


def bench(model_params, data, files, args, tmp):
    import signal

    import numpy as np

    from pneumonia_cnn import PneumoniaCNN, load_images
    from pneumonia_cnn.tracking import register, start_server

    uri = f"sqlite:///{tmp}/mlflow.db"
    rng = np.random.default_rng(0)
    train = rng.choice(len(data), 400, replace=False)
    clf = PneumoniaCNN(epochs=2, random_state=0, tracking=True, tracking_uri=uri,
                       **model_params).fit(data.X[train], data.y[train])
    name = "bench" + str(len(model_params))
    folder = clf.save(os.path.join(tmp, "saved_" + name))
    folder_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    register(f"models:/{clf.mlflow_model_id_}", name, tracking_uri=uri)
    port = _free_port()
    proc = start_server(f"models:/{name}@champion", port, tracking_uri=uri,
                        log_file=os.path.join(tmp, f"serve{port}.log"))
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(open(os.path.join(tmp, f"serve{port}.log")).read())
                time.sleep(0.5)
        encoded = [base64.b64encode(open(f, "rb").read()).decode() for f in files]
        batch = {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}
        pixels = {"inputs": load_images(files, clf.input_size()).X[..., 0].tolist()}
        one = {"dataframe_split": {"columns": ["image"], "data": [[encoded[0]]]}}
        batch_t = _times(lambda: _post(url, batch), args.repeats)
        pixel_t = _times(lambda: _post(url, pixels), args.repeats)
        single_t = _times(lambda: _post(url, one), args.repeats)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    model = PneumoniaCNN.load(f"models:/{name}@champion", tracking_uri=uri)

    def in_process():
        start = time.perf_counter()
        model.predict_proba(load_images(files, model.input_size(), cache=False).X)
        return time.perf_counter() - start

    base_t = _times(in_process, args.repeats)
    med = statistics.median(batch_t)
    return {"batch_latency_s": {"median": round(med, 4), "max": round(max(batch_t), 4)},
            "images_per_s": round(len(files) / med, 1),
            "pixels_batch_latency_s": round(statistics.median(pixel_t), 4),
            "single_latency_s": round(statistics.median(single_t), 4),
            "in_process_s": round(statistics.median(base_t), 4),
            "serving_over_in_process": round(med / statistics.median(base_t), 2),
            "request_bytes": len(json.dumps(batch)),
            "model_folder_mb": round(folder_mb, 1), "parameters": int(clf.model_.count_params())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    import numpy as np

    from pneumonia_cnn import load_image_folder

    data = load_image_folder(data_dir(args.data), 96, verbose=0)
    rng = np.random.default_rng(1)
    files = [str(p) for p in data.paths[rng.choice(len(data), args.batch, replace=False)]]
    out = {"command": "python benchmarks/serving.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "batch": args.batch, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # the sqlite store's artifacts (./mlruns) stay in the temporary folder
        try:
            for label, params in (("default_pretrained_lite0", {}),
                                  ("from_scratch_ensemble_of_3", {"backbone": None})):
                out[label] = bench(params, data, files, args, tmp)
        finally:
            os.chdir(cwd)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
