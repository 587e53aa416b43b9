"""Small data: the from-scratch network against the pretrained one at 100, 400, 1,600 films and
the whole training pool, within distribution and on the real batch shifts.

    python benchmarks/learning_curve.py [--data chest_xray_224/train] [--sizes 100,400,1600,all]
                                        [--seeds 0] [--backbones none,efficientnet-lite0]
                                        [--out FILE]

The design is ``robustness.py``'s (``_common.batch_design``): the earliest and latest
acquisition batches (``early``, ``late``) and 15% of the other patients (``indist``) are held
out; ``contrast_flipped`` are unseen films that break the training split's contrast
shortcut. Each backbone, with its defaults, trains on ``n`` films drawn from the rest, half
of each class where there are enough (the PNEUMONIA-rich remainder otherwise), and
``all`` is the whole remaining pool (about 3,700 films). Each row gives the ROC AUC on each
population and the fit time; rows are merged into ``--out`` as they finish.

How much a model gains from more films of this one batch is a sign of how much it learns
the batch rather than the disease: a model whose curve is flat from 400 films leans less on
this batch's quirks than one that needs all of them.
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


def draw(y, pool, n, rng) -> np.ndarray:
    """``n`` rows of ``pool``: half of each class where there are enough."""
    if n >= pool.size:
        return np.sort(pool)
    neg, pos = pool[y[pool] == 0], pool[y[pool] == 1]
    n_neg = min(n // 2, neg.size)
    n_pos = n - n_neg
    return np.sort(np.r_[rng.choice(neg, n_neg, replace=False),
                         rng.choice(pos, n_pos, replace=False)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--sizes", default="100,400,1600,all")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--backbones", default="none,efficientnet-lite0")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "learning_curve.json"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn import PneumoniaCNN, load_image_folder
    from robustness import contrast_flipped

    results = json.load(open(args.out)) if os.path.exists(args.out) else {"rows": []}
    results.update(machine=machine(), date=time.strftime("%Y-%m-%d"),
                   command="python benchmarks/learning_curve.py " + " ".join(
                       argv if argv is not None else sys.argv[1:]))
    for name in args.backbones.split(","):
        backbone = None if name == "none" else name
        size = PneumoniaCNN(backbone=backbone).input_size()
        data = load_image_folder(data_224(args.data), size, verbose=0)
        masks, y = batch_design(data)
        unseen = masks["indist"] | masks["early"] | masks["late"]
        pops = {k: masks[k] for k in ("indist", "early", "late")}
        pops["contrast_flipped"] = contrast_flipped(data.X, y, unseen)
        pool = np.flatnonzero(masks["train"])
        for seed in (int(s) for s in args.seeds.split(",")):
            for n in args.sizes.split(","):
                rows = draw(y, pool, pool.size if n == "all" else int(n),
                            np.random.default_rng(seed))
                clf = PneumoniaCNN(backbone=backbone, random_state=seed, tracking=False)
                start = time.perf_counter()
                clf.fit(data.X[rows], data.y[rows], groups=data.groups[rows])
                fit_s = time.perf_counter() - start
                scores = np.full(len(y), np.nan)
                scores[unseen] = clf.predict_proba(data.X[unseen])[:, 1]
                row = {"backbone": name, "seed": seed, "n_films": int(rows.size),
                       "n_pneumonia": int(y[rows].sum()), "fit_time_s": round(fit_s, 1),
                       **{k: round(float(roc_auc_score(y[m], scores[m])), 4)
                          for k, m in pops.items()}}
                print(json.dumps(row), flush=True)
                results["rows"] = [r for r in results["rows"] if (
                    r["backbone"], r["seed"], r["n_films"]) != (name, seed, row["n_films"])]
                results["rows"].append(row)
                os.makedirs(os.path.dirname(args.out), exist_ok=True)
                with open(args.out, "w") as fh:
                    json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
