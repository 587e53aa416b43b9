"""``pneumonia-cnn stress``."""

from __future__ import annotations

import json

from ._common import (
    DATA_HELP,
    MODEL_HELP,
    CLIError,
    add_data_options,
    check_data_arg,
    check_model_arg,
    int_tuple,
    load_data_arg,
)


def add_parser(sub) -> None:
    """Add the ``stress`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "stress", help="shift-stress test: a model under acquisition-like perturbations",
        description="Score a saved model on a labelled folder of images it never trained on, "
                    "clean and under 13 acquisition-like perturbations (exposure, contrast, "
                    "blur, sharpening, noise, JPEG, resolution, rotation, positioning, "
                    "cropping, padding) at severities 1-3: ROC AUC, sensitivity and "
                    "specificity at the model's threshold, and the shift of NORMAL films' "
                    "mean P(PNEUMONIA).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA", help=DATA_HELP)
    p.add_argument("--severities", type=int_tuple, default=(1, 2, 3), metavar="1,2,3",
                   help="severities to run [1,2,3]")
    p.add_argument("--perturbations", metavar="NAME,...",
                   help="comma-separated subset [all]")
    p.add_argument("--random-state", type=int, default=0, help="seed [0]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_options(p)


def run(args) -> int:
    check_model_arg(args.model)
    check_data_arg(args, "evaluate")
    # the severities before TensorFlow loads (analysis.SEVERITIES; the perturbation names
    # need the analysis package, which imports it)
    if not args.severities or any(v not in (1, 2, 3) for v in args.severities):
        raise CLIError(f"--severities must be a subset of 1,2,3, got {args.severities}")
    from ..analysis import PERTURBATIONS, load_model, stress_test

    names = args.perturbations.split(",") if args.perturbations else None
    unknown = [n for n in names or [] if n not in PERTURBATIONS]
    if unknown:
        raise CLIError(f"--perturbations: unknown {', '.join(unknown)}; choose from "
                       f"{', '.join(PERTURBATIONS)}")
    clf = load_model(args.model)
    data = load_data_arg(args, clf.input_size(), "evaluate")
    result = stress_test(clf, data, perturbations=names, severities=tuple(args.severities),
                         random_state=args.random_state)
    if args.json:  # strict JSON: an undefined ROC AUC (one class) is null
        from ..metrics import strict_json

        print(json.dumps(strict_json(result.to_dict()), allow_nan=False))
        return 0
    table = result.to_frame()
    print(table.to_string(index=False, float_format="%.3f"))
    s = result.summary
    print(f"\nClean: ROC AUC {s['clean_roc_auc']:.3f}, sensitivity {s['clean_sensitivity']:.3f}"
          f", specificity {s['clean_specificity']:.3f} at threshold {result.threshold:.3f}")
    print(f"Under shift (mean of {len(table) - 1}): ROC AUC {s['stress_roc_auc']:.3f}, "
          f"sensitivity {s['stress_sensitivity']:.3f}, specificity "
          f"{s['stress_specificity']:.3f} (worst {s['stress_min_specificity']:.3f}); NORMAL "
          f"films' mean P(PNEUMONIA) moves by {s['stress_normal_shift']:+.3f} on average")
    return 0
