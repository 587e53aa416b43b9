"""Every modelling choice measured within distribution, on real acquisition batches and under
synthetic stress, with the operating-point rules and label-free adaptation side by side.

    python benchmarks/robustness.py [--data chest_xray_224/train] [--seeds 0,1]
                                    [--variants default,gap128,...] [--no-stress] [--out FILE]

Design (one split for every variant and seed, on the whole official training split):

- ``early`` / ``late``: the earliest and latest 20% of every Kaggle file-name family by
  acquisition number (:func:`pneumonia_cnn.batches.batch_masks`): batches acquired before
  and after the training films;
- ``indist``: 15% of the remaining patients (patient-grouped, stratified, seed 0);
- ``contrast_flipped``: unseen films that break the training split's contrast shortcut
  (NORMAL films of low contrast, PNEUMONIA films of high contrast);
- ``late_balanced``: the late batch with PNEUMONIA films subsampled to the NORMAL count
  (prevalence 0.5 instead of 0.74: adaptation must not assume the training mix);
- the model trains on the rest (its own 15% validation hold-out inside, as a user's fit).

Per (variant, seed): fit time; ROC AUC, the best specificity at sensitivity 0.95, and
sensitivity / specificity at the thresholds of five rules on each population:

- ``target_hd95``: the default (``threshold="target"``), the Harrell-Davis estimate of the
  0.05 quantile of the hold-out's PNEUMONIA scores
  (:func:`pneumonia_cnn.evaluation.threshold_for_sensitivity_hd`);
- ``conformal95``: the previous default, the split-conformal order statistic
  (:func:`pneumonia_cnn.evaluation.threshold_for_sensitivity`);
- ``kde95``: the same target read off a kernel density of their logits;
- ``youden``: maximal sensitivity + specificity on the hold-out;
- ``fixed0.5``;

the shift-stress test of the ``indist`` films (13 perturbations x severity 2, at most 600
films); and label-free adaptation (:func:`pneumonia_cnn.adaptation.adapt`, with and without
batch-norm re-estimation) on ``early`` and ``late`` with their labels hidden: estimated vs
true prevalence, sensitivity / specificity at the adapted threshold.

The summary gives means over seeds and each rule's threshold spread over seeds. Results are
merged into ``--out`` after each (variant, seed), so a long run keeps what it has.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import batch_design, data_224, machine, train_on_middle  # noqa: E402

#: Candidate defaults (PneumoniaCNN parameters on top of today's defaults).
VARIANTS = {
    "default": {},
    # the from-scratch network with its own defaults (the default before the backbone; its
    # rows of 2026-12-02 are "default" in results/robustness.json)
    "scratch": {"backbone": None},
    "previous_default": {"image_size": 96, "filters": (8, 16, 32, 64), "global_pooling": False,
                         "border_mask": 0.0},
    "gap128": {"image_size": 128, "filters": (8, 16, 32, 64, 128), "global_pooling": True},
    "mask10": {"border_mask": 0.1},
    "networks5": {"n_networks": 5},
    "single": {"n_networks": 1},
    # the pretrained backbone (its defaults: 128 px, one network, 8 epochs, lr 3e-4, the
    # first 8 of 16 blocks frozen) and its recipe's alternatives
    "lite0": {"backbone": "efficientnet-lite0"},
    "lite0_freeze12": {"backbone": "efficientnet-lite0", "freeze_blocks": 12},
    "lite0_freeze4": {"backbone": "efficientnet-lite0", "freeze_blocks": 4},
    "lite0_160": {"backbone": "efficientnet-lite0", "image_size": 160},
    "lite0_96": {"backbone": "efficientnet-lite0", "image_size": 96},
    "lite0_lr1e3": {"backbone": "efficientnet-lite0", "learning_rate": 1e-3},
    "lite0_light": {"backbone": "efficientnet-lite0", "augmentation": "light"},
    "lite0_noaug": {"backbone": "efficientnet-lite0", "augmentation": None},
    "lite0_noclahe": {"backbone": "efficientnet-lite0", "intensity_norm": None},
    "lite0_12ep": {"backbone": "efficientnet-lite0", "epochs": 12},
}
RULES = ("target_hd95", "conformal95", "kde95", "youden", "fixed0.5")


def rule_thresholds(val_labels, val_scores) -> dict:
    from sklearn.metrics import roc_curve

    from pneumonia_cnn.metrics import (
        ClassShape,
        logit,
        sigmoid,
        smooth_quantile,
        threshold_for_sensitivity,
        threshold_for_sensitivity_hd,
    )

    y = np.where(val_labels == 1, "PNEUMONIA", "NORMAL")
    fpr, tpr, thr = roc_curve(val_labels, val_scores)
    shape = ClassShape(logit(val_scores[val_labels == 1]))
    return {"target_hd95": threshold_for_sensitivity_hd(y, val_scores, 0.95),
            "conformal95": threshold_for_sensitivity(y, val_scores, 0.95),
            "kde95": float(sigmoid(smooth_quantile(shape, shape.loc, shape.scale, 0.95))),
            "youden": float(min(thr[int(np.argmax(tpr - fpr))], 1.0)),
            "fixed0.5": 0.5}


def contrast_flipped(X, y, among) -> np.ndarray:
    """Films of ``among`` that break the training split's contrast rule: NORMAL films below
    the NORMAL median of pixel sd, PNEUMONIA films above the PNEUMONIA median."""
    contrast = np.asarray(X).reshape(len(X), -1).std(axis=1)
    anti = np.zeros(len(X), bool)
    for cls, below in ((0, True), (1, False)):
        m = among & (y == cls)
        med = np.median(contrast[m])
        anti |= m & ((contrast < med) if below else (contrast > med))
    return anti


def rescore(results: dict, scores_dir: str) -> None:
    """Recompute every row's thresholds and per-population rule rows from the scores saved
    by ``--scores-dir`` (adaptation and stress rows are kept): a new rule without
    retraining."""
    for row in results["rows"]:
        f = os.path.join(scores_dir, f"{row['variant']}_seed{row['seed']}.npz")
        if not os.path.exists(f):
            continue
        d = np.load(f)
        thresholds = rule_thresholds(d["val_labels"], d["val_scores"])
        row["thresholds"] = {k: round(v, 4) for k, v in thresholds.items()}
        masks = {k: d[k] for k in ("indist", "early", "late")}
        # late_balanced as batch_design draws it (same films in the same order)
        late_rows = np.flatnonzero(d["late"])
        neg, pos = late_rows[d["y"][late_rows] == 0], late_rows[d["y"][late_rows] == 1]
        masks["late_balanced"] = np.zeros(len(d["y"]), bool)
        masks["late_balanced"][np.r_[neg, np.random.default_rng(0).choice(
            pos, neg.size, replace=False)]] = True
        if "contrast_flipped" in d:
            masks["contrast_flipped"] = d["contrast_flipped"]
        else:  # files of a run before the mask was saved: the films' contrast again
            from pneumonia_cnn import load_images

            size = results["params"][row["variant"]]["image_size"]
            X = load_images(list(d["paths"]), size).X
            masks["contrast_flipped"] = contrast_flipped(X, d["y"],
                                                         np.ones(len(d["y"]), bool))
        for key, m in masks.items():
            fresh = population(d["y"][m], d["scores"][m], thresholds)
            row[key] = {**{k: v for k, v in row[key].items() if k.startswith("adapt")},
                        **fresh}


def rates(y, s, t) -> dict:
    return {"sensitivity": round(float(np.mean(s[y == 1] >= t)), 4),
            "specificity": round(float(np.mean(s[y == 0] < t)), 4)}


def population(y, s, thresholds) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    out = {"n": int(len(y)), "roc_auc": round(float(roc_auc_score(y, s)), 4),
           "best_specificity_at_sensitivity_0.95": round(float(1 - fpr[tpr >= 0.95].min()), 4)}
    for rule, t in thresholds.items():
        out[rule] = rates(y, s, t)
    return out


def adaptation_rows(clf, X, y) -> dict:
    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn.analysis import adapt

    out = {}
    for bn in (False, True):
        model = adapt(clf, X, batch_norm=bn, n_bootstrap=50, track=False)
        s = model.predict_proba(X)[:, 1]
        a = model.adaptation_
        out["adapt_bn" if bn else "adapt"] = {
            "true_prevalence": round(float(np.mean(y)), 4),
            "estimated_prevalence": round(a["prevalence"], 4),
            "threshold": round(model.threshold_, 4),
            **rates(y, s, model.threshold_),
            "expected_sensitivity": round(a["expected_sensitivity"], 4),
            "expected_specificity": round(a["expected_specificity"], 4),
            "roc_auc": round(float(roc_auc_score(y, s)), 4),
        }
    return out


def run_one(name, params, seed, data, masks, y, stress: bool, scores_dir=None,
            adaptation: bool = True) -> dict:
    from pneumonia_cnn.analysis import PERTURBATIONS, stress_test

    clf, fit_s = train_on_middle(data, masks, seed, **params)
    row = {"variant": name, "seed": seed, "fit_time_s": round(fit_s, 1)}
    thresholds = rule_thresholds(clf.validation_labels_, clf.validation_scores_)
    row["thresholds"] = {k: round(v, 4) for k, v in thresholds.items()}
    unseen = masks["indist"] | masks["early"] | masks["late"]
    scores = np.full(len(data), np.nan)
    scores[unseen] = clf.predict_proba(data.X[unseen])[:, 1]
    pops = ("indist", "early", "late", "late_balanced")
    for key in pops:
        row[key] = population(y[masks[key]], scores[masks[key]], thresholds)
    for key in pops[1:] if adaptation else ():
        row[key].update(adaptation_rows(clf, data.X[masks[key]], y[masks[key]]))
    # the contrast shortcut: in the training split PNEUMONIA films have less contrast than
    # NORMAL ones (pixel sd 53 vs 61 at 224 px). Unseen films that break that rule: NORMAL
    # films of low contrast and PNEUMONIA films of high contrast (each below / above its
    # class's median). A model leaning on contrast ranks these worse.
    anti = contrast_flipped(data.X, y, unseen)
    row["contrast_flipped"] = population(y[anti], scores[anti], thresholds)
    if scores_dir:
        os.makedirs(scores_dir, exist_ok=True)
        np.savez_compressed(os.path.join(scores_dir, f"{name}_seed{seed}.npz"),
                            paths=data.paths[unseen], y=y[unseen], scores=scores[unseen],
                            **{k: masks[k][unseen] for k in ("indist", "early", "late")},
                            contrast_flipped=anti[unseen],
                            val_scores=clf.validation_scores_,
                            val_labels=clf.validation_labels_)
    if stress:
        rows = np.flatnonzero(masks["indist"])
        rows = np.sort(np.random.default_rng(0).choice(rows, min(600, rows.size),
                                                       replace=False))
        r = stress_test(clf, data.X[rows], data.y[rows], perturbations=list(PERTURBATIONS),
                        severities=(2,), random_state=0).summary
        row["stress"] = {k: round(float(r[k]), 4) for k in
                         ("stress_roc_auc", "stress_sensitivity", "stress_specificity",
                          "stress_min_specificity")}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def summarize(rows: list) -> dict:
    out = {"seeds": [r["seed"] for r in rows],
           "fit_time_s": round(float(np.mean([r["fit_time_s"] for r in rows])), 1)}
    for key in ("indist", "early", "late", "late_balanced", "contrast_flipped"):
        out[key] = {m: round(float(np.mean([r[key][m] for r in rows])), 4)
                    for m in ("roc_auc", "best_specificity_at_sensitivity_0.95")}
        for rule in RULES + ("adapt", "adapt_bn"):
            if all(rule in r[key] for r in rows):
                out[key][rule] = {m: round(float(np.mean([r[key][rule][m] for r in rows])), 4)
                                  for m in ("sensitivity", "specificity")}
                if rule.startswith("adapt"):
                    for m in ("estimated_prevalence", "true_prevalence", "roc_auc"):
                        out[key][rule][m] = round(float(np.mean([r[key][rule][m]
                                                                 for r in rows])), 4)
    out["threshold_spread_over_seeds"] = {
        rule: {"values": [r["thresholds"][rule] for r in rows],
               "range": round(float(np.ptp([r["thresholds"][rule] for r in rows])), 4)}
        for rule in RULES if all(rule in r["thresholds"] for r in rows)}
    if "stress" in rows[0]:
        out["stress"] = {k: round(float(np.mean([r["stress"][k] for r in rows])), 4)
                         for k in rows[0]["stress"]}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="chest_xray_224/train [$PNEUMONIA_CNN_DATA_224 or "
                                       "../shared/data/chest_xray_224/train]")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--no-stress", action="store_true")
    parser.add_argument("--no-adapt", action="store_true",
                        help="leave out the label-free adaptation rows (a quicker screen)")
    parser.add_argument("--rescore", action="store_true",
                        help="train nothing: recompute the threshold rules of the rows in "
                             "--out from the scores saved in --scores-dir")
    parser.add_argument("--scores-dir", metavar="DIR",
                        help="also save every unseen film's score here (one .npz per "
                             "variant and seed) for other measures after the fact")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "robustness.json"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from pneumonia_cnn import PneumoniaCNN, load_image_folder

    args.data = data_224(args.data)
    results = json.load(open(args.out)) if os.path.exists(args.out) else {}
    results.setdefault("rows", [])
    command = "python benchmarks/robustness.py " + " ".join(argv or sys.argv[1:])
    if args.rescore:  # the rows stay those of the training command; say what rescored them
        results["rescored_by"] = command
    else:
        results.update(machine=machine(), date=time.strftime("%Y-%m-%d"), command=command,
                       data=str(args.data))
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.rescore:
        rescore(results, args.scores_dir)
        for name in {r["variant"] for r in results["rows"]}:
            results["summary"][name] = summarize([r for r in results["rows"]
                                                  if r["variant"] == name])
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
        print(json.dumps(results["summary"], indent=1))
        return
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")
        params = VARIANTS[name]
        size = PneumoniaCNN(**params).input_size()
        data = load_image_folder(args.data, size, verbose=0)
        masks, y = batch_design(data)
        for seed in seeds:
            row = run_one(name, params, seed, data, masks, y, not args.no_stress,
                          args.scores_dir, adaptation=not args.no_adapt)
            results["rows"] = [r for r in results["rows"]
                               if (r["variant"], r["seed"]) != (name, seed)] + [row]
            results.setdefault("summary", {})[name] = summarize(
                [r for r in results["rows"] if r["variant"] == name])
            results.setdefault("params", {})[name] = {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in
                PneumoniaCNN(**params).get_params().items()
                if k in ("backbone", "freeze_blocks", "image_size", "filters", "global_pooling",
                         "border_mask", "n_networks", "augmentation", "intensity_norm",
                         "epochs", "learning_rate", "threshold")}
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "w") as fh:
                json.dump(results, fh, indent=1)
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
