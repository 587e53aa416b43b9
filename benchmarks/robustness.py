"""Every robustness lever measured twice: within distribution and under shift.

    python benchmarks/robustness.py [--data chest_xray/train] [--folds 5] [--seeds 3]
                                    [--variants baseline,acquisition,...] [--out FILE]

For each variant (a set of ``PneumoniaCNN`` parameters) and each of the ``--folds``
patient-grouped folds (StratifiedGroupKFold, 5 splits, shuffled with seed 0: the folds of
``train_speed.py``), ``--seeds`` networks with random_state 0, 1, 2... are trained on the
fold's 80% and scored on its unseen 20%:

- within distribution: ROC AUC, accuracy, sensitivity, specificity at the model's threshold;
- under shift: :func:`pneumonia_cnn.robustness.stress_test` of the same unseen images (13
  acquisition-like perturbations x 3 severities, seed 0): averaged ROC AUC, sensitivity,
  specificity, the mean change of NORMAL films' P(PNEUMONIA), and the worst specificity;
- fit time.

From the same networks, at no extra training cost:

- ``ensemble``: the average of the ``--seeds`` networks' probabilities on each fold, which is
  exactly what ``n_networks=<seeds>`` predicts (same split, different seeds);
- ``tta``: the seed-0 network with ``tta=4`` test-time views (on the first ``--tta-folds``
  folds: scoring 39 perturbed sets x 5 views is slow).

Per variant the JSON has mean and std over all (fold, seed) networks, the seed-to-seed
spread (std over seeds within a fold, averaged over folds, and the largest range), and the
rows. Results are merged into ``--out`` after each variant, so a long run keeps what it has.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402

#: Today's default before this benchmark (no levers), and each lever on top of it.
OFF = dict(augmentation=None, intensity_norm=None, label_smoothing=0.0, n_networks=1, tta=0,
           global_pooling=False, threshold=0.5)
VARIANTS = {
    "baseline": OFF,
    "acquisition": {**OFF, "augmentation": "acquisition"},
    "clahe": {**OFF, "intensity_norm": "clahe"},
    "acquisition+clahe": {**OFF, "augmentation": "acquisition", "intensity_norm": "clahe"},
    # the classic Kaggle recipe's geometry (zoom 20%, shifts 10%, rotation ~10 degrees) with
    # the acquisition preset's intensity, blur, sharpness and noise changes
    "acquisition_wide": {**OFF, "augmentation": {
        "rotation": 0.03, "zoom": 0.2, "translation": 0.1, "contrast": 0.5, "brightness": 0.2,
        "sharpness": 0.5, "blur": 0.5, "noise": 0.03}},
    "standard_aug": {**OFF, "augmentation": "standard"},
    "standardize": {**OFF, "intensity_norm": "standardize"},
    "equalize": {**OFF, "intensity_norm": "equalize"},
    "label_smoothing": {**OFF, "label_smoothing": 0.1},
    "gap": {**OFF, "global_pooling": True},
    "threshold_auto": {**OFF, "threshold": "auto"},
    "target_sensitivity": {**OFF, "threshold": "target", "target_sensitivity": 0.95},
    "default": {},  # whatever PneumoniaCNN() is now
}
KEYS = ("roc_auc", "accuracy", "sensitivity", "specificity", "stress_roc_auc",
        "stress_sensitivity", "stress_specificity", "stress_normal_shift",
        "stress_min_specificity")


def per_perturbation(rows_results: list) -> dict:
    """Mean over networks of each perturbation's ROC AUC, specificity and NORMAL shift."""
    names = rows_results[0].by_perturbation
    return {n: {k: round(float(np.mean([r.by_perturbation[n][k] for r in rows_results])), 4)
                for k in ("roc_auc", "specificity", "sensitivity", "normal_shift")}
            for n in names}


def row_of(result, fit_time=None) -> dict:
    s = result.summary
    row = {"roc_auc": s["clean_roc_auc"], "accuracy": s["clean_accuracy"],
           "sensitivity": s["clean_sensitivity"], "specificity": s["clean_specificity"],
           **{k: s[k] for k in KEYS if k.startswith("stress_")}}
    if fit_time is not None:
        row["fit_time_s"] = fit_time
    return {k: round(float(v), 4) for k, v in row.items()}


def mean_std(rows: list) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    return {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                "std": round(float(np.std([r[k] for r in rows])), 4)} for k in keys}


def run_variant(name, params, data, folds, n_seeds, tta_folds=2) -> dict:
    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.robustness import PERTURBATIONS, stress_scores, summarize_stress

    singles, ensembles, ttas = [], [], []
    single_results, ensemble_results = [], []
    for f, (tr, te) in enumerate(folds):
        Xte, yte = data.X[te], data.y[te]
        fold_scores, thresholds = [], []
        for seed in range(n_seeds):
            clf = PneumoniaCNN(**params, random_state=seed, tracking=False)
            start = time.perf_counter()
            clf.fit(data.X[tr], data.y[tr], groups=data.groups[tr])
            fit_time = time.perf_counter() - start
            scores = stress_scores(clf, Xte, list(PERTURBATIONS))
            fold_scores.append(scores)
            thresholds.append(clf.threshold_)
            result = summarize_stress(yte, scores, clf.threshold_)
            single_results.append(result)
            row = row_of(result, fit_time)
            singles.append({"fold": f, "seed": seed, **row})
            print(f"  {name} fold {f} seed {seed}: {row}", file=sys.stderr, flush=True)
            if seed == 0 and f < tta_folds and not clf.tta and clf.n_networks == 1:
                clf.set_params(tta=4)
                r = summarize_stress(yte, stress_scores(clf, Xte, list(PERTURBATIONS)),
                                     clf.threshold_)
                ttas.append({"fold": f, **row_of(r)})
        if n_seeds > 1 and clf.n_networks == 1:
            mean_scores = {k: np.mean([s[k] for s in fold_scores], axis=0)
                           for k in fold_scores[0]}
            r = summarize_stress(yte, mean_scores, float(np.mean(thresholds)))
            ensembles.append({"fold": f, **row_of(r)})
            ensemble_results.append(r)
    by_fold = {}
    for r in singles:
        by_fold.setdefault(r["fold"], []).append(r)
    spread = {}
    for k in ("accuracy", "roc_auc", "specificity", "stress_specificity"):
        stds = [np.std([r[k] for r in rs]) for rs in by_fold.values()]
        ranges = [np.ptp([r[k] for r in rs]) for rs in by_fold.values()]
        spread[k] = {"mean_std_over_seeds": round(float(np.mean(stds)), 4),
                     "max_range_over_seeds": round(float(np.max(ranges)), 4)}
    from pneumonia_cnn.augmentation import augmentation_factors

    used = PneumoniaCNN(**params)
    out = {"params": params, "augmentation_factors": augmentation_factors(used.augmentation),
           "single": mean_std(singles), "seed_spread": spread,
           "single_by_perturbation": per_perturbation(single_results), "rows": singles}
    if ensembles:
        out[f"ensemble_of_{n_seeds}"] = {**mean_std(ensembles), "rows": ensembles,
                                         "by_perturbation": per_perturbation(ensemble_results)}
    if ttas:
        out["tta_4"] = {**mean_std(ttas), "rows": ttas}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=5, help="folds to run (of 5)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tta-folds", type=int, default=2,
                        help="folds on which the seed-0 network is also scored with tta=4")
    parser.add_argument("--variants", default="baseline,acquisition,clahe,acquisition+clahe,"
                                              "label_smoothing,standardize")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "robustness.json"))
    parser.add_argument("--as", dest="as_name", metavar="NAME",
                        help="store the (single) variant under this name, e.g. default-3seeds")
    args = parser.parse_args(argv)

    from sklearn.model_selection import StratifiedGroupKFold

    from pneumonia_cnn import PneumoniaCNN, load_image_folder

    data = load_image_folder(data_dir(args.data), PneumoniaCNN().image_size, verbose=0)
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(
        data.X, data.y, data.groups))[:args.folds]
    results = {}
    if os.path.exists(args.out):
        results = json.load(open(args.out))
    results.setdefault("variants", {})
    results.update({"machine": machine(), "n_images": len(data),
                    "date": time.strftime("%Y-%m-%d")})
    command = "python benchmarks/robustness.py " + " ".join(argv or sys.argv[1:])
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")
        start = time.perf_counter()
        key = args.as_name or name
        results["variants"][key] = run_variant(name, VARIANTS[name], data, folds, args.seeds,
                                               args.tta_folds)
        results["variants"][key]["wall_s"] = round(time.perf_counter() - start, 1)
        results["variants"][key].update(command=command, folds=args.folds, seeds=args.seeds)
        if name == "default":
            results["variants"][key]["params"] = {
                k: v for k, v in PneumoniaCNN().get_params().items()
                if k in ("augmentation", "intensity_norm", "label_smoothing", "n_networks",
                         "tta", "threshold", "epochs")}
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                      for k, v in results["variants"].items()}, indent=1))


if __name__ == "__main__":
    main()
