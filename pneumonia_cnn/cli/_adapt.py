"""``pneumonia-cnn adapt``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    MODEL_HELP,
    CLIError,
    add_site_evaluation_options,
    add_tracking_options,
    check_model_arg,
    check_model_out,
    evaluate_fraction,
    evaluate_site_part,
    print_saved_json,
    print_site_evaluation,
    set_tracking_uri,
    site_films,
    split_by_patient,
)


def add_parser(sub) -> None:
    """Add the ``adapt`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "adapt", help="move a model's operating point to a new site from its unlabelled films",
        description="Label-free site adaptation: from at least 50 UNLABELLED films of the new "
                    "site, estimate the site's prevalence and its "
                    "score distributions (a two-class mixture fitted by EM), and move the "
                    "decision threshold to where the site's PNEUMONIA films keep "
                    "--target-sensitivity. Prints the estimated prevalence and the expected "
                    "sensitivity / specificity with 90% bootstrap intervals (estimates from "
                    "a model of the scores, not measurements), and saves the adapted model; "
                    "evaluate, predict, explain, calibrate, register and serving take it "
                    "like any model.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("site_dir", metavar="SITE_DIR",
                   help="folder of the site's films (searched recursively; class "
                        "sub-folders, if any, are ignored: no label is used)")
    p.add_argument("--model-out", required=True, metavar="PATH",
                   help="folder to save the adapted model to")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --model-out to be an existing folder that is not a saved model")
    p.add_argument("--target-sensitivity", type=float, default=0.95, metavar="X",
                   help="sensitivity the adapted threshold keeps on the site's estimated "
                        "PNEUMONIA score distribution [0.95]")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=False,
                   help="first re-estimate the network's batch-normalisation statistics on "
                        "the site's films (AdaBN); off by default: on real batch shifts it "
                        "lowered the default's ranking and specificity [off]")
    p.add_argument("--n-bootstrap", type=int, default=200, metavar="N",
                   help="resamples of the site's films for the 90%% intervals; 0 skips them "
                        "(faster, no intervals) [200]")
    add_site_evaluation_options(p, "adapt", "SITE_DIR, which then needs NORMAL/ and "
                                "PNEUMONIA/ (adapt itself does not read the labels)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_tracking_options(p, default_help="[the model's setting]")


def run(args) -> int:
    check_model_out(args.model_out, args.overwrite, inputs=(args.model, args.site_dir))
    if not 0 < args.target_sensitivity < 1:
        raise CLIError(f"--target-sensitivity must be in (0, 1), got {args.target_sensitivity}")
    if args.n_bootstrap < 0:
        raise CLIError(f"--n-bootstrap must be an int >= 0, got {args.n_bootstrap}")
    site = Path(args.site_dir)
    if not site.is_dir():
        raise CLIError(f"{site}: no such folder; SITE_DIR is a folder of the site's films")
    check_model_arg(args.model)
    fraction = evaluate_fraction(args)
    from ..analysis import adapt, load_model

    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    set_tracking_uri(clf, args.tracking_uri)
    held, name = None, str(site)
    if fraction is None:
        data = site_films(site, clf.input_size())
    else:  # labels to evaluate with: NORMAL/ and PNEUMONIA/ (adapt itself never reads them)
        from ..data import load_data

        data, held = split_by_patient(load_data(site, clf.input_size(), role=None), fraction)
        name = f"{site} (adaptation part)"
    model = adapt(clf, data, target_sensitivity=args.target_sensitivity,
                  batch_norm=args.batch_norm, n_bootstrap=args.n_bootstrap,
                  track=args.tracking, data_name=name)
    path = model.save(args.model_out)
    a = model.adaptation_
    site_eval = evaluate_site_part(model, clf, held, args) if held is not None else None
    if args.json:
        return print_saved_json({**a, **({"evaluation": site_eval} if site_eval else {})},
                                path, model)

    def ci(key):
        if a[key] is None:
            return "unknown (see the warning)"
        if not a[key + "_ci90"]:  # say why there is no interval (site issue, finding 16)
            why = ("no resamples were asked for" if not model.n_bootstrap else
                   "it was undefined in more than 1 in 20 resamples of the site's films")
            return f"{a[key]:.3f} (no interval: {why})"
        lo, hi = a[key + "_ci90"]
        return f"{a[key]:.3f} (90% interval {lo:.3f}-{hi:.3f})"

    layers = a.get("batch_norm_layers", 0)
    bn_note = (f" (batch-norm statistics of {layers} layers re-estimated on them)" if layers
               else " (batch norm not re-estimated: the network has none)"
               if args.batch_norm else " (batch norm left as trained: --no-batch-norm)")
    print(f"Adapted to {a['n_films']} unlabelled films of {site}{bn_note}")
    print(f"Estimated prevalence of PNEUMONIA: {ci('prevalence')} "
          f"(training hold-out: {a['holdout_prevalence']:.3f})")
    print(f"Threshold {ci('threshold')} (was {a['base_threshold']:.4f}), for sensitivity "
          f"{a['target_sensitivity']:g} on the site's estimated PNEUMONIA scores")
    print(f"Expected at this threshold: sensitivity {ci('expected_sensitivity')}, "
          f"specificity {ci('expected_specificity')}")
    print("These are estimates, not measurements: they assume that the site's NORMAL and "
          "PNEUMONIA films score like the training hold-out's, moved as a whole, which "
          "unlabelled films cannot check; the intervals are over resamples of the site's "
          "films at this threshold. Evaluate on labelled films of the site, or calibrate on "
          "20+ of each class")
    if site_eval:
        print_site_evaluation(site_eval)
    print(f"Adapted model saved to {path}"
          + (f"; MLflow run {model.mlflow_run_id_}, logged model "
             f"models:/{model.mlflow_model_id_}" if model.mlflow_run_id_ else ""))
    return 0
