"""How much the default's result depends on the epoch it stops at, and whether weight
averaging or test-time flips remove that dependence.

    python benchmarks/epoch_spread.py [--data chest_xray_224/train] [--seeds 0,1]
                                      [--variant default] [--out FILE]

The batch design of ``robustness.py`` (the network trains on the middle batches, with its
own validation hold-out). After every epoch the network scores every unseen population:
unseen patients (``indist``), the earliest and latest acquisition batches and the
contrast-flipped films. Reported per population, for each seed:

- ``per_epoch``: the ROC AUC after each epoch, and its range over the second half of
  training (what stopping one epoch earlier or later can change);
- ``chosen``: the epoch the estimator keeps (best validation ROC AUC) and its AUC;
- ``swa_last3``: the weights of the last three epochs averaged (stochastic weight
  averaging; batch-norm statistics averaged with them);
- ``snapshot_last3``: the probabilities of the last three epochs' networks averaged
  (three times the prediction cost);
- ``tta_flip``: the kept network's probability averaged with that of the left-right
  mirrored film.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import batch_design, data_224, machine  # noqa: E402
from robustness import VARIANTS, contrast_flipped  # noqa: E402

POPULATIONS = ("indist", "early", "late", "contrast_flipped")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="chest_xray_224/train [$PNEUMONIA_CNN_DATA_224 or "
                                       "../shared/data/chest_xray_224/train]")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variant", default="default", choices=sorted(VARIANTS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "epoch_spread.json"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import keras
    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn import PneumoniaCNN, load_image_folder

    params = VARIANTS[args.variant]
    data = load_image_folder(data_224(args.data), PneumoniaCNN(**params).input_size(),
                             verbose=0)
    masks, y = batch_design(data)
    unseen = masks["indist"] | masks["early"] | masks["late"]
    pops = {k: masks[k][unseen] for k in ("indist", "early", "late")}
    pops["contrast_flipped"] = contrast_flipped(data.X, y, unseen)[unseen]
    y_u, X_u = y[unseen], data.X[unseen]

    def aucs(scores):
        return {k: round(float(roc_auc_score(y_u[m], scores[m])), 4) for k, m in pops.items()}

    class EveryEpoch(keras.callbacks.Callback):
        """Scores the unseen films and keeps the weights after every epoch."""

        def __init__(self, clf):
            super().__init__()
            self.clf, self.scores, self.weights, self.X = clf, [], [], None

        def predict(self, X):
            return np.concatenate([np.asarray(self.model.predict_on_batch(X[i:i + 256]))
                                   for i in range(0, len(X), 256)]).ravel()

        def on_epoch_end(self, epoch, logs=None):
            if self.X is None:  # the estimator's own preprocessing, fitted by now
                self.X = self.clf.feature_encoder_.transform(X_u)
            self.scores.append(self.predict(self.X))
            self.weights.append(self.model.get_weights())

    command = "python benchmarks/epoch_spread.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "command": command,
               "variant": args.variant, "n_unseen": {k: int(m.sum()) for k, m in pops.items()},
               "rows": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        clf = PneumoniaCNN(**params, random_state=seed, tracking=False)
        cb = EveryEpoch(clf)
        clf.set_params(callbacks=[cb])
        tr = masks["train"]
        start = time.perf_counter()
        clf.fit(data.X[tr], data.y[tr], groups=data.groups[tr])
        fit_s = time.perf_counter() - start
        model = clf.model_
        per_epoch = [aucs(s) for s in cb.scores]
        half = len(per_epoch) // 2
        row = {"seed": seed, "fit_time_s": round(fit_s, 1), "epochs": len(per_epoch),
               "chosen_epoch": clf.best_epoch_,
               "per_epoch": {k: [e[k] for e in per_epoch] for k in POPULATIONS},
               "second_half_range": {k: round(max(e[k] for e in per_epoch[half:])
                                              - min(e[k] for e in per_epoch[half:]), 4)
                                     for k in POPULATIONS}}
        kept = model.get_weights()
        kept_scores = cb.predict(cb.X)
        row["chosen"] = aucs(kept_scores)
        row["snapshot_last3"] = aucs(np.mean(cb.scores[-3:], axis=0))
        model.set_weights([np.mean(ws, axis=0) for ws in zip(*cb.weights[-3:])])
        row["swa_last3"] = aucs(cb.predict(cb.X))
        model.set_weights(kept)
        row["tta_flip"] = aucs((kept_scores + cb.predict(cb.X[:, :, ::-1])) / 2)
        print(json.dumps(row), file=sys.stderr, flush=True)
        results["rows"].append(row)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
