"""``pneumonia-cnn search``."""

from __future__ import annotations

from ._common import (
    DATA_HELP,
    CLIError,
    add_data_options,
    add_estimator_options,
    fmt,
    json_object,
    load_data_arg,
    make_estimator,
    print_view_link,
)


def add_parser(sub) -> None:
    """Add the ``search`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("search", help="grid or random search with patient-grouped CV, "
                                      "logged to MLflow",
                       description="Search PneumoniaCNN hyperparameters with StratifiedGroupKFold "
                                   "on patient ids. Every candidate is a child run of one "
                                   "MLflow parent run; the best is refit and evaluated on "
                                   "held-out patients. Re-running an interrupted search with "
                                   "the same --name and grid resumes it.")
    p.add_argument("data_dir", metavar="DATA", help=DATA_HELP)
    p.add_argument("--grid", metavar="JSON", type=json_object,
                   help='parameter grid, e.g. \'{"filters": [[16,32],[32,64]], '
                        '"augmentation": [null, "standard"]}\'')
    p.add_argument("--random", metavar="JSON", type=json_object,
                   help="lists to sample from for a random search (with --n-iter)")
    p.add_argument("--n-iter", type=int, default=10, help="random-search candidates [10]")
    p.add_argument("--cv", type=int, default=3, help="patient-grouped CV folds [3]")
    p.add_argument("--name", default="search", help="search name (for resuming) [search]")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of patients held out to evaluate the refit best model [0.2]")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel fold fits [1]")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the fold fits on a Dask cluster: a scheduler address "
                        "(tcp://host:8786), or local[:N] for N worker processes on this "
                        "machine [off]; needs pip install 'pneumonia-cnn[cluster]'")
    p.add_argument("--stress", action="store_true",
                   help="also score every candidate under shift (stress_roc_auc, "
                        "stress_specificity...: slower)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start afresh even if an unfinished run of this search exists")
    p.add_argument("--register", metavar="NAME",
                   help="register the refit best model as a new version of NAME in the "
                        "MLflow model registry; the alias 'champion' moves to it only if its "
                        "hold-out ROC AUC beats the current champion's")
    p.add_argument("--quiet", action="store_true", help="less output")
    add_data_options(p)
    add_estimator_options(p)


def run(args) -> int:
    from ..tracking import search

    if (args.grid is None) == (args.random is None):
        raise CLIError("give exactly one of --grid and --random")
    base = make_estimator(args)
    base.set_params(verbose=0)
    tracking_uri = vars(args).get("tracking_uri")
    from ..tracking import check_space

    check_space(base, args.grid, args.random, args.n_iter, 0)  # before reading any image
    import contextlib

    with contextlib.ExitStack() as stack:
        cluster = None
        if args.cluster:  # connect first: a dead scheduler fails before the data is read
            from ..cluster import connect

            cluster = stack.enter_context(connect(args.cluster))
        data = load_data_arg(args, base.input_size(), "train", verbose=0 if args.quiet else 1)
        result = search(data, args.grid, param_distributions=args.random,
                        n_iter=args.n_iter, estimator=base, cv=args.cv, n_jobs=args.n_jobs,
                        name=args.name, tracking_uri=tracking_uri, resume=args.resume,
                        holdout=args.holdout, verbose=0 if args.quiet else 1,
                        scoring="stress" if args.stress else None, register=args.register,
                        cluster=cluster)
    cols = [c for c in result.cv_results.columns if c.startswith("param_")]
    scores = ["mean_test_roc_auc", "std_test_roc_auc", "mean_test_accuracy",
              "mean_test_sensitivity", "mean_test_specificity", "mean_test_stress_roc_auc",
              "mean_test_stress_specificity", "mean_fit_time"]
    table = result.cv_results.sort_values("mean_test_roc_auc", ascending=False)
    print(table[cols + [c for c in scores if c in table]].to_string(index=False,
                                                                     float_format="%.4f"))
    if result.holdout:
        print(f"Refit best on held-out patients: {fmt(result.holdout)}")
    print(f"MLflow parent run: {result.parent_run_id}")
    best = result.best_estimator
    if best is not None and getattr(best, "mlflow_model_id_", None):
        print(f"Refit best model: models:/{best.mlflow_model_id_} (run "
              f"{best.mlflow_run_id_}); register it: pneumonia-cnn register "
              f"models:/{best.mlflow_model_id_} NAME")
    print_view_link(result.parent_run_id, tracking_uri, "candidates",
                    "this search's candidates, best first",
                    f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    return 0
