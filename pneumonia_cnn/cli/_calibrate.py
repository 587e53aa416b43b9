"""``pneumonia-cnn calibrate``."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    MODEL_HELP,
    CLIError,
    add_data_options,
    add_site_evaluation_options,
    add_tracking_options,
    check_data_arg,
    check_model_arg,
    check_model_out,
    evaluate_fraction,
    evaluate_site_part,
    load_data_arg,
    print_saved_json,
    print_site_evaluation,
    refuse_split_root,
    set_tracking_uri,
    site_films,
    split_by_patient,
)


def add_parser(sub) -> None:
    """Add the ``calibrate`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "calibrate", help="set a model's operating point on a new site's labelled images",
        description="Site calibration without retraining: with a small labelled set of the "
                    "new site (NORMAL/ and PNEUMONIA/, at least 10 of each, better 20+), "
                    "choose the decision threshold that keeps --target-sensitivity (or "
                    "use --threshold), optionally re-map the probabilities (--method), and "
                    "save the calibrated model. evaluate and predict then use its operating "
                    "point. It prints its promise: sensitivity >= --target-sensitivity on "
                    "the site's next films with probability --confidence, and how many "
                    "PNEUMONIA films that needs; --unlabelled adds the site's unlabelled "
                    "films. An adapted model (adapt) can be calibrated.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA",
                   help="the site's labelled images: a folder with NORMAL/ and PNEUMONIA/, a "
                        "CSV of path,label[,patient], or one split of a split root or "
                        "MedMNIST file (pneumoniamnist.npz:val)")
    p.add_argument("--model-out", required=True, metavar="PATH",
                   help="folder to save the calibrated model to")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --model-out to be an existing folder that is not a saved model "
                        "(its model files are replaced; a saved model is always replaced)")
    p.add_argument("--target-sensitivity", type=float, default=0.95, metavar="X",
                   help="the most specific threshold that keeps sensitivity X on the "
                        "site's next films (split-conformal rule on DATA's PNEUMONIA "
                        "images) [0.95]")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="a fixed threshold instead of --target-sensitivity")
    p.add_argument("--method", choices=["sigmoid", "isotonic", "temperature"],
                   help="also calibrate the probabilities (scikit-learn CalibratedClassifierCV)"
                        " [off: keep the network's]")
    p.add_argument("--confidence", type=float, default=0.9, metavar="C",
                   help="the promise: sensitivity >= X on the site's next films with "
                        "probability C [0.9]")
    p.add_argument("--unlabelled", metavar="DIR",
                   help="more films of the site without labels (searched recursively): the "
                        "threshold then comes from the site's score distributions, anchored "
                        "by the labelled films")
    add_site_evaluation_options(p, "calibrate", "DATA")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_options(p)
    add_tracking_options(p, default_help="[the model's setting]")


def run(args) -> int:
    check_model_out(args.model_out, args.overwrite, inputs=(args.model, args.data_dir))
    check_model_arg(args.model)  # checked before TensorFlow loads: errors at once
    refuse_split_root(args.data_dir)
    check_data_arg(args, None)
    fraction = evaluate_fraction(args)
    # every argument is checked before TensorFlow loads (6-8 s): a typo is refused at once
    if args.target_sensitivity is not None and not 0 < args.target_sensitivity <= 1:
        raise CLIError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    if not 0 < args.confidence < 1:
        raise CLIError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CLIError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    if args.unlabelled is not None and not Path(args.unlabelled).is_dir():
        raise CLIError(f"--unlabelled {args.unlabelled}: no such folder")
    if args.unlabelled is not None and args.threshold is not None:
        raise CLIError("--threshold fixes the operating point, so --unlabelled would be "
                       "ignored: give one of them")
    from ..analysis import calibrate, load_model

    # an adapted model is calibrated with its adaptation; a calibrated one is refused
    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    set_tracking_uri(clf, args.tracking_uri)
    data = load_data_arg(args, clf.input_size(), None)  # a source with splits: name the one
    held, name = None, str(data.root)
    if fraction is not None:
        data, held = split_by_patient(data, fraction)
        name = f"{data.root} (calibration part)"
    unlabelled = site_films(args.unlabelled, clf.input_size()) if args.unlabelled else None
    model = calibrate(clf, data, target_sensitivity=args.target_sensitivity,
                      threshold=args.threshold, method=args.method, track=args.tracking,
                      confidence=args.confidence, unlabelled=unlabelled, data_name=name)
    path = model.save(args.model_out)
    c = model.calibration_
    site = evaluate_site_part(model, clf, held, args) if held is not None else None
    if args.json:
        return print_saved_json({**c, **({"evaluation": site} if site else {})}, path, model)
    print(f"Calibrated on {c['n_NORMAL']} NORMAL and {c['n_PNEUMONIA']} PNEUMONIA images of "
          f"{name}" + (f" (probabilities: {args.method})" if args.method else ""))
    print(f"Threshold {c['threshold']:.4f} (was {c['base_threshold']:.4f})"
          + (f", chosen for sensitivity >= {c['target_sensitivity']:g}"
             if c["target_sensitivity"] is not None else ""))
    if c["rule"] == "conformal":
        print(f"Promise: sensitivity >= {c['target_sensitivity']:g} on the site's next films "
              f"with probability {c['promise_confidence']:.2f} (asked: {c['confidence']:g}); "
              f"{c['confidence']:g} lower bound on that sensitivity: "
              f"{c['sensitivity_lower_bound']:.3f}")
    elif c["rule"] == "mixture":
        print(f"Threshold from the site's score distributions ({c['n_unlabelled']} unlabelled "
              f"films, anchored by the labelled ones), at the {1 - c['confidence']:.2f} "
              "bootstrap quantile: an estimate from a model of the scores, not a guarantee")
    lo, hi = c["sensitivity_ci95"]
    print(f"On the calibration set: sensitivity {c['sensitivity']:.3f} (95% CI {lo:.3f}-"
          f"{hi:.3f}), specificity {c['specificity']:.3f} (95% CI "
          f"{c['specificity_ci95'][0]:.3f}-{c['specificity_ci95'][1]:.3f})")
    if site:
        print_site_evaluation(site)
    print(f"Calibrated model saved to {path}"
          + (f"; MLflow run {model.mlflow_run_id_}, logged model "
             f"models:/{model.mlflow_model_id_}" if model.mlflow_run_id_ else ""))
    return 0
