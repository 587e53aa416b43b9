"""Shared command line of the experiment scripts in this folder."""

import argparse
import os
import sys
import time

#: Settings of --quick: small images, few epochs, 2 folds -- a few minutes on 2 cores.
QUICK = dict(image_size=64, epochs=4, patience=None, validation_fraction=0.15)


def run_experiment(name: str, grid: dict, quick_grid: dict, description: str,
                   stress: bool = False) -> None:
    """Parse ``--data``/``--quick``/... and run :func:`pneumonia_cnn.search.search`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=os.environ.get("PNEUMONIA_CNN_DATA"),
                        help="folder with NORMAL/ and PNEUMONIA/ (e.g. chest_xray/train) "
                             "[$PNEUMONIA_CNN_DATA]")
    parser.add_argument("--quick", action="store_true",
                        help="small grid, 64x64 images, 4 epochs, 2 folds: a few minutes")
    parser.add_argument("--cv", type=int, help="patient-grouped folds [3; 2 with --quick]")
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel fold fits")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run the fold fits on a Dask cluster: tcp://host:8786, or "
                             "local[:N] for N worker processes here (pip install "
                             "'pneumonia-cnn[cluster]')")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI [sqlite:///mlflow.db]")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="do not resume an interrupted run of this search")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data DIR is required (or set PNEUMONIA_CNN_DATA)")

    from pneumonia_cnn.utils import filter_native_stderr

    finish = filter_native_stderr()  # TensorFlow's C++ start-up lines, as the CLI does
    from pneumonia_cnn.cluster import ClusterError
    from pneumonia_cnn.data import DataError
    from pneumonia_cnn.tracking import (
        TrackingError,  # imports TensorFlow: after the filter
    )

    try:
        _search(name, grid, quick_grid, stress, args)
    except (DataError, TrackingError, ValueError, OSError,
            ClusterError) as exc:  # one line, no traceback
        error = exc
    else:
        error = None
    finally:
        finish()
    if error is not None:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def _search(name, grid, quick_grid, stress, args) -> None:
    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.tracking import search

    base = PneumoniaCNN(random_state=0, **(QUICK if args.quick else {}))
    start = time.perf_counter()
    result = search(args.data, quick_grid if args.quick else grid, estimator=base,
                    cv=args.cv or (2 if args.quick else 3), n_jobs=args.n_jobs,
                    name=name + ("-quick" if args.quick else ""), tracking_uri=args.tracking_uri,
                    resume=args.resume, scoring="stress" if stress else None,
                    cluster=args.cluster)
    table = result.cv_results.sort_values("mean_test_roc_auc", ascending=False)
    cols = [c for c in table.columns if c.startswith("param_")] + [
        "mean_test_roc_auc", "std_test_roc_auc", "mean_test_sensitivity",
        "mean_test_specificity", "mean_test_stress_roc_auc", "mean_test_stress_specificity",
        "mean_fit_time"]
    cols = [c for c in cols if c in table]
    print(table[cols].to_string(index=False, float_format="%.4f"))
    if result.holdout:
        h = result.holdout
        print(f"Best refit on held-out patients: roc_auc={h['roc_auc']:.4f} "
              f"accuracy={h['accuracy']:.4f} sensitivity={h['sensitivity']:.4f} "
              f"specificity={h['specificity']:.4f}")
    from pneumonia_cnn.tracking import get_client, ui_url

    exp_id = get_client(args.tracking_uri).get_run(result.parent_run_id).info.experiment_id
    print(f"Done in {time.perf_counter() - start:.0f} s. Compare the runs: `mlflow ui --port "
          f"5000` in this folder, then open {ui_url(exp_id)} ; the search's parent run is "
          f"{result.parent_run_id}, its winner has rank 1 and the tag best_candidate.")


if __name__ == "__main__":
    sys.exit("run one of the search_*.py scripts")
