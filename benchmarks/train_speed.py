"""Training time and validation quality: the default PneumoniaCNN vs the lab's reference CNN.

    python benchmarks/train_speed.py [--data chest_xray/train] [--reference-epochs 30]

Prints one JSON object:
- ``cli_train``: wall time of ``pneumonia-cnn train DATA`` on all images, in a fresh process
  with an empty image cache (start-up, decoding, training, saving and MLflow logging included).
- ``default`` and ``reference``: the same patient-grouped 80/20 split (no patient on both
  sides); each model is trained on the 80% and scored on the unseen 20%: fit time, training
  images/s, ROC AUC, accuracy, sensitivity, specificity. The reference is the lab's model
  (150x150 RGB, Conv 32-64-128-128, Dense 512, RMSprop 1e-4, batch 20, 30 epochs).
- ``speedup``: reference fit time / default fit time, measured in this run.
- ``default_cv``: the default model's patient-grouped 5-fold cross-validation
  (StratifiedGroupKFold) on all images, mean and std of each metric.
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
    from pneumonia_cnn.evaluation import metrics_from_scores

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--reference-epochs", type=int, default=30)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--cv-folds", type=int, default=5, help="0 to skip the CV")
    args = ap.parse_args()
    data = data_dir(args.data)

    from sklearn.model_selection import StratifiedGroupKFold

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from pneumonia_cnn.data import grouped_split

    out = {"benchmark": "train_speed", "machine": machine(), "data": str(data),
           "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])}
    out["cli_train"] = cli_train(data)
    print(json.dumps({"cli_train": out["cli_train"]}), file=sys.stderr, flush=True)

    d = load_image_folder(data, PneumoniaCNN().image_size)
    tr, te = grouped_split(d.y, d.groups, 0.2, random_state=0)
    out["split"] = {"train_images": len(tr), "test_images": len(te),
                    "train_patients": len(set(d.groups[tr])),
                    "test_patients": len(set(d.groups[te])),
                    "shared_patients": len(set(d.groups[tr]) & set(d.groups[te]))}

    clf = PneumoniaCNN(random_state=0, tracking=False)
    start = time.perf_counter()
    clf.fit(d.X[tr], d.y[tr], groups=d.groups[tr])
    fit_s = time.perf_counter() - start
    epochs = len(clf.history_["loss"])
    out["default"] = {"fit_s": round(fit_s, 1), "epochs_run": epochs,
                      "best_epoch": clf.best_epoch_,
                      "train_images_per_s": round(clf.n_train_ * epochs / fit_s, 1),
                      **scores(d.y[te], clf.predict_proba(d.X[te])[:, 1])}
    print(json.dumps({"default": out["default"]}), file=sys.stderr, flush=True)

    if not args.skip_reference:
        r = load_image_folder(data, 150)
        ref = reference_classifier(args.reference_epochs)
        start = time.perf_counter()
        ref.fit(to_rgb(r.X[tr]), r.y[tr])
        ref_s = time.perf_counter() - start
        proba = ref.predict_proba(to_rgb(r.X[te]))[:, list(ref.classes_).index("PNEUMONIA")]
        out["reference"] = {"fit_s": round(ref_s, 1), "epochs_run": args.reference_epochs,
                            "train_images_per_s": round(len(tr) * args.reference_epochs / ref_s,
                                                        1),
                            **scores(r.y[te], proba)}
        out["speedup"] = round(ref_s / fit_s, 2)
        out["auc_gain"] = round(out["default"]["roc_auc"] - out["reference"]["roc_auc"], 4)
        print(json.dumps({"reference": out["reference"]}), file=sys.stderr, flush=True)

    if args.cv_folds:
        rows = []
        cv = StratifiedGroupKFold(args.cv_folds, shuffle=True, random_state=0)
        for k, (a, b) in enumerate(cv.split(d.X, d.y, d.groups)):
            m = PneumoniaCNN(random_state=k, tracking=False)
            t = time.perf_counter()
            m.fit(d.X[a], d.y[a], groups=d.groups[a])
            rows.append({"fit_s": time.perf_counter() - t,
                         **scores(d.y[b], m.predict_proba(d.X[b])[:, 1])})
        keys = rows[0].keys()
        out["default_cv"] = {"folds": args.cv_folds, **{
            k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                "std": round(float(np.std([r[k] for r in rows])), 4)} for k in keys}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
