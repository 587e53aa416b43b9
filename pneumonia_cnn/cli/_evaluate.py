"""``pneumonia-cnn evaluate``."""

from __future__ import annotations

import json

from ._common import (
    CLIError,
    DATA_HELP,
    MODEL_HELP,
    add_data_options,
    add_tracking_options,
    check_data_arg,
    check_model_arg,
    fmt,
    fmt_ci,
    load_data_arg,
    print_view_link,
    refuse_inside_inputs,
    set_tracking_uri,
)


def add_parser(sub) -> None:
    """Add the ``evaluate`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("evaluate", help="evaluate a saved model on a data folder",
                       description="Evaluate a saved model on a labelled data folder: "
                                   "metrics, confusion matrix, ROC and precision-recall "
                                   "curves.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", help="write plots, metrics.json and the "
                                                "classification report here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threshold", type=float, help="decision threshold [the model's]")
    add_data_options(p)
    add_tracking_options(p, default_help="[the model's setting]")


def run(args) -> int:
    check_model_arg(args.model)  # both checked before TensorFlow loads: errors at once
    check_data_arg(args, "evaluate")
    refuse_inside_inputs("--out", args.out, (args.data_dir, args.model))
    if args.threshold is not None and not 0 <= args.threshold <= 1:  # NaN too
        raise CLIError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    from ..analysis import evaluate, load_model
    from ..metrics import public_metrics

    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    set_tracking_uri(clf, args.tracking_uri)
    data = load_data_arg(args, clf.input_size(), "evaluate")
    result = evaluate(clf, data, out_dir=args.out, threshold=args.threshold,
                      track=args.tracking, data_name=str(data.root))
    metrics = public_metrics(result)
    if args.json:
        metrics.pop("classification_report_text", None)
        print(json.dumps(metrics))
        return 0
    print(f"{metrics['n_images']} images from {data.root} (threshold "
          f"{metrics['threshold']:.3f})")
    print(fmt(metrics))
    print(fmt_ci(metrics))
    print(metrics["classification_report_text"])
    border = metrics.get("heat_on_border")
    if border and border.get("share") is not None:
        print(f"PNEUMONIA evidence on the film's border (outer {border['band']:.1%}, "
              f"{border['area_share']:.0%} of the area), {border['n_films']} films called "
              f"PNEUMONIA: {border['share']:.0%} of it"
              + (" (more than an even spread would put there: see the warning)"
                 if border["share"] >
                 border["area_share"] else ""))
    if args.out:
        print(f"Plots and metrics written to {args.out}")
    if result.get("mlflow_run_id"):
        print(f"MLflow evaluation run {result['mlflow_run_id']}")
        print_view_link(result["mlflow_run_id"], clf.tracking_uri, "evaluations",
                        "evaluations, grouped by data (under 30 images or on training "
                        "images: left out)")
    return 0
