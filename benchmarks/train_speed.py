"""Training time and validation quality: the default PneumoniaCNN vs the lab's reference CNN.

    python benchmarks/train_speed.py [--data chest_xray/train] [--folds 5] [--reference-epochs 30]

Prints one JSON object:
- ``cli_train``: wall time of ``pneumonia-cnn train DATA`` on all images, in a fresh process
  with an empty image cache (start-up, decoding, training, saving and MLflow logging included).
- ``folds``: patient-grouped 5-fold cross-validation (StratifiedGroupKFold, shuffled with seed
  0; no patient on both sides of any fold).  On each of the first ``--folds`` folds *both*
  models are trained on the 80% and scored on the unseen 20%: fit time, training images/s,
  ROC AUC, accuracy, sensitivity, specificity.  The reference is the lab's model (150x150 RGB,
  Conv 32-64-128-128, Dense 512, RMSprop 1e-4, batch 20, 30 epochs).
- ``default`` and ``reference``: mean and std of each metric over the folds.
- ``speedup``: total reference fit time / total default fit time, measured in this run.
- ``auc_gain``: mean over folds of (default AUC - reference AUC), its std, and on how many
  folds the default's AUC is higher.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine, reference_classifier, to_rgb  # noqa: E402


def scores(y_true, p_pneumonia, threshold=0.5):
    from pneumonia_cnn.metrics import metrics_from_scores

    m = metrics_from_scores(y_true, p_pneumonia, threshold)
    return {k: round(m[k], 4) for k in ("roc_auc", "accuracy", "sensitivity", "specificity")}


def cli_train(data) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PNEUMONIA_CNN_CACHE_DIR": os.path.join(tmp, "cache"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        exe = os.path.join(os.path.dirname(sys.executable), "pneumonia-cnn")
        cmd = [exe, "train", str(data), "--model-out", os.path.join(tmp, "model"), "--quiet",
               "--random-state", "0"]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            raise SystemExit(f"pneumonia-cnn train failed:\n{out.stderr}")
    return {"command": " ".join(["pneumonia-cnn", *cmd[1:3], "--model-out", "MODEL",
                                 *cmd[5:]]),
            "wall_s": round(wall, 1), "last_line": out.stdout.strip().splitlines()[-1]}


def summary(rows: list[dict]) -> dict:
    """Mean and std over folds of every numeric entry."""
    return {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                "std": round(float(np.std([r[k] for r in rows])), 4)}
            for k in rows[0] if k != "fold"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--folds", type=int, default=5, help="how many of the 5 folds to run")
    ap.add_argument("--reference-epochs", type=int, default=30)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    data = data_dir(args.data)

    from sklearn.model_selection import StratifiedGroupKFold

    from pneumonia_cnn import PneumoniaCNN, load_image_folder

    out = {"benchmark": "train_speed", "machine": machine(), "data": str(data),
           "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])}
    if not args.skip_cli:
        out["cli_train"] = cli_train(data)
        print(json.dumps({"cli_train": out["cli_train"]}), file=sys.stderr, flush=True)

    d = load_image_folder(data, PneumoniaCNN().input_size())
    r = None if args.skip_reference else load_image_folder(data, 150)
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    folds, default_rows, reference_rows = [], [], []
    for k, (tr, te) in enumerate(cv.split(d.X, d.y, d.groups)):
        if k >= args.folds:
            break
        fold = {"fold": k, "train_images": len(tr), "test_images": len(te),
                "shared_patients": len(set(d.groups[tr]) & set(d.groups[te]))}
        clf = PneumoniaCNN(random_state=k, tracking=False)
        start = time.perf_counter()
        clf.fit(d.X[tr], d.y[tr], groups=d.groups[tr])
        fit_s = time.perf_counter() - start
        epochs = len(clf.history_["loss"])
        default_rows.append({"fit_s": round(fit_s, 1), "epochs_run": epochs,
                             "train_images_per_s": round(clf.n_train_ * epochs / fit_s, 1),
                             **scores(d.y[te], clf.predict_proba(d.X[te])[:, 1])})
        fold["default"] = default_rows[-1]
        if r is not None:
            ref = reference_classifier(args.reference_epochs, random_state=k)
            start = time.perf_counter()
            ref.fit(to_rgb(r.X[tr]), r.y[tr])
            ref_s = time.perf_counter() - start
            proba = ref.predict_proba(to_rgb(r.X[te]))[:, list(ref.classes_).index("PNEUMONIA")]
            reference_rows.append({"fit_s": round(ref_s, 1), "epochs_run": args.reference_epochs,
                                   "train_images_per_s": round(
                                       len(tr) * args.reference_epochs / ref_s, 1),
                                   **scores(r.y[te], proba)})
            fold["reference"] = reference_rows[-1]
        folds.append(fold)
        print(json.dumps(fold), file=sys.stderr, flush=True)

    out["folds"] = folds
    out["default"] = summary(default_rows)
    if reference_rows:
        out["reference"] = summary(reference_rows)
        out["speedup"] = round(sum(x["fit_s"] for x in reference_rows)
                               / sum(x["fit_s"] for x in default_rows), 2)
        gains = [a["roc_auc"] - b["roc_auc"] for a, b in zip(default_rows, reference_rows)]
        out["auc_gain"] = {"mean": round(float(np.mean(gains)), 4),
                           "std": round(float(np.std(gains)), 4),
                           "default_higher_on": f"{sum(g > 0 for g in gains)}/{len(gains)} folds"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
