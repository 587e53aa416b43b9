"""Does `calibrate` on 40 images of a new site restore the operating point there?

    python benchmarks/site_calibration.py [--data chest_xray/train] [--folds 5] [--severity 2]

For each patient-grouped fold (the 5 folds of ``train_speed.py`` / ``robustness.py``), the
default ``PneumoniaCNN`` is trained on the fold's 80%. Each of the 13 shift-stress
perturbations at ``--severity`` applied to the fold's unseen 20% stands for one simulated
"site". On each site, 20 NORMAL + 20 PNEUMONIA images (seeded draw) calibrate the model with
``calibrate(target_sensitivity=0.95)``; the site's *other* images score it. Reported per site
and averaged: sensitivity and specificity before (the model's own threshold) and after
calibration, and how many sites meet sensitivity >= 0.95 and specificity >= 0.85 (the
project's targets).

The simulated sites differ from the training data only in the image (exposure, contrast,
sharpness, noise, compression, resolution, positioning, framing), not in patients or
disease mix: this checks the calibration mechanics under shift, not a real hospital.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402


def sens_spec(y, pred):
    pos = y == "PNEUMONIA"
    return float(np.mean(pred[pos] == "PNEUMONIA")), float(np.mean(pred[~pos] == "NORMAL"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--severity", type=int, default=2)
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "site_calibration.json"))
    args = parser.parse_args(argv)

    from sklearn.model_selection import StratifiedGroupKFold

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.calibration import calibrate
    from pneumonia_cnn.robustness import PERTURBATIONS, perturb

    data = load_image_folder(data_dir(args.data), PneumoniaCNN().image_size, verbose=0)
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(
        data.X, data.y, data.groups))[:args.folds]
    rows = []
    for f, (tr, te) in enumerate(folds):
        start = time.perf_counter()
        clf = PneumoniaCNN(random_state=f, tracking=False).fit(
            data.X[tr], data.y[tr], groups=data.groups[tr])
        fit_time = time.perf_counter() - start
        y = data.y[te]
        rng = np.random.default_rng(f)
        cal = np.r_[rng.choice(np.flatnonzero(y == "NORMAL"), args.n_per_class, replace=False),
                    rng.choice(np.flatnonzero(y == "PNEUMONIA"), args.n_per_class,
                               replace=False)]
        other = np.setdiff1d(np.arange(len(y)), cal)
        for site in ["none", *PERTURBATIONS]:
            X = data.X[te] if site == "none" else perturb(data.X[te], site, args.severity, f)
            before = sens_spec(y[other], clf.predict(X[other]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # 20 positives: CI warning
                site_model = calibrate(clf, X[cal], y[cal], target_sensitivity=0.95,
                                       track=False)
            after = sens_spec(y[other], site_model.predict(X[other]))
            row = {"fold": f, "site": site, "fit_time_s": round(fit_time, 1),
                   "sensitivity_before": round(before[0], 4),
                   "specificity_before": round(before[1], 4),
                   "sensitivity_after": round(after[0], 4),
                   "specificity_after": round(after[1], 4),
                   "threshold_after": round(site_model.threshold_, 4)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    def mean(key, sites):
        return round(float(np.mean([r[key] for r in rows if r["site"] in sites])), 4)

    def met(prefix, sites):
        sel = [r for r in rows if r["site"] in sites]
        return sum(r[f"sensitivity_{prefix}"] >= 0.95 and r[f"specificity_{prefix}"] >= 0.85
                   for r in sel), len(sel)

    shifted = list(PERTURBATIONS)
    summary = {}
    for name, sites in (("unshifted", ["none"]), ("shifted_sites", shifted)):
        summary[name] = {k: mean(k, sites) for k in ("sensitivity_before", "specificity_before",
                                                      "sensitivity_after", "specificity_after")}
        for prefix in ("before", "after"):
            n, total = met(prefix, sites)
            summary[name][f"targets_met_{prefix}"] = f"{n}/{total}"
    by_site = {s: {k: mean(k, [s]) for k in ("sensitivity_before", "specificity_before",
                                              "sensitivity_after", "specificity_after")}
               for s in ["none", *shifted]}
    result = {"command": "python benchmarks/site_calibration.py " + " ".join(
        argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        "default_params": {k: v for k, v in PneumoniaCNN().get_params().items()
                           if k in ("augmentation", "intensity_norm", "n_networks", "tta",
                                    "threshold", "target_sensitivity", "label_smoothing")},
        "severity": args.severity, "n_calibration": 2 * args.n_per_class,
        "summary": summary, "by_site": by_site, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
