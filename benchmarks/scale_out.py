"""Scale-out: one grid search run sequentially and on a 2-worker Dask LocalCluster.

    python benchmarks/scale_out.py [--data chest_xray/train] [--image-size 64] [--epochs 4]
                                   [--cv 3] [--workers 2]

The same search -- a 2x2 grid (filters x dense units) of the default PneumoniaCNN at
``--image-size`` for ``--epochs`` epochs, ``--cv`` patient-grouped folds, no refit -- runs
twice in this process, with the same seed: sequentially (``cluster=None``: one fold fit at a
time, TensorFlow on every core) and on a ``LocalCluster`` of ``--workers`` worker processes
with one thread each (``cluster=client``). Both log to a temporary MLflow store.

Prints one JSON object (also written to ``benchmarks/results/scale_out.json``):

- ``sequential_s`` / ``cluster_s``: wall time of each search; ``speedup`` = their ratio;
- ``max_auc_difference``: largest difference of a candidate's mean CV ROC AUC between the two;
- ``fit_s_per_task``: mean fold fit + score time, as scikit-learn measured it, sequential and
  on the cluster (a fit on one thread is slower than on two);
- overheads: ``cluster_start_s`` (LocalCluster and client), ``tensorflow_start_s`` (the
  worker plugin: importing TensorFlow and sizing its pools, all workers at once),
  ``scatter_s`` and ``scatter_mib`` (the images sent to every worker), ``task_pickle_kib``
  (one task's estimator), and ``overhead_s_per_task``: (cluster wall time x workers - the
  summed task times) / tasks, i.e. what a task costs beyond its own fit: scheduling,
  transfers, waiting for the slowest task of a wave, and logging in this process.
"""

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import numpy as np

    from pneumonia_cnn import PneumoniaCNN, load_image_folder, quiet_tensorflow

    quiet_tensorflow()
    import distributed

    from pneumonia_cnn.cluster import TensorFlowThreads
    from pneumonia_cnn.tracking import search

    data = load_image_folder(data_dir(args.data), args.image_size)
    grid = {"filters": [(16, 32), (32, 64)], "dense_units": [32, 64]}
    base = PneumoniaCNN(image_size=args.image_size, epochs=args.epochs, n_networks=1,
                        random_state=0, verbose=0)
    common = dict(estimator=base, cv=args.cv, holdout=0, refit=False, verbose=0)
    out = {"benchmark": "scale_out", "command": "python benchmarks/scale_out.py " + " ".join(
        sys.argv[1:]), "machine": machine(), "images": len(data), "grid": {
        k: [list(v) if isinstance(v, tuple) else v for v in vs] for k, vs in grid.items()},
        "cv": args.cv, "image_size": args.image_size, "epochs": args.epochs,
        "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        t = time.perf_counter()
        seq = search(data, grid, tracking_uri=uri, name="sequential", **common)
        out["sequential_s"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        out["cluster_start_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        client.register_plugin(TensorFlowThreads())
        out["tensorflow_start_s"] = round(time.perf_counter() - t, 2)
        X = np.ascontiguousarray(data.X)
        t = time.perf_counter()
        client.scatter([X], broadcast=True)
        out["scatter_s"] = round(time.perf_counter() - t, 3)
        out["scatter_mib"] = round(X.nbytes / 2**20, 1)
        out["task_pickle_kib"] = round(len(pickle.dumps(base)) / 1024, 1)
        t = time.perf_counter()
        on_cluster = search(data, grid, tracking_uri=uri, name="cluster", cluster=client,
                            **common)
        out["cluster_s"] = round(time.perf_counter() - t, 1)
        client.close()
        cluster.close()

    def task_times(result):
        t = result.cv_results
        return (t["mean_fit_time"] + t["mean_score_time"]).to_numpy() * args.cv

    n_tasks = len(seq.cv_results) * args.cv
    out["tasks"] = n_tasks
    out["speedup"] = round(out["sequential_s"] / out["cluster_s"], 2)
    a = seq.cv_results.sort_values("candidate_key")["mean_test_roc_auc"].to_numpy()
    b = on_cluster.cv_results.sort_values("candidate_key")["mean_test_roc_auc"].to_numpy()
    out["max_auc_difference"] = round(float(np.max(np.abs(a - b))), 5)
    out["fit_s_per_task"] = {"sequential": round(task_times(seq).sum() / n_tasks, 2),
                             "cluster": round(task_times(on_cluster).sum() / n_tasks, 2)}
    busy = task_times(on_cluster).sum()
    out["overhead_s_per_task"] = round((out["cluster_s"] * args.workers - busy) / n_tasks, 2)
    path = Path(__file__).parent / "results" / "scale_out.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
