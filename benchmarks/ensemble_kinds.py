"""Ensembles across kinds: the pretrained and the from-scratch network averaged, after the fact.

    python benchmarks/ensemble_kinds.py SCORES_A.npz SCORES_B.npz [--out FILE]

Each file is what ``robustness.py --scores-dir DIR`` saved for one (variant, seed): every
unseen film's score and the population masks of the batch design. The two must be of the
same design (same films). For each population (unseen patients, earliest and latest batch,
contrast-flipped films) it reports the ROC AUC of each network, of their averaged
probabilities and of their averaged ranks (each network's scores turned into ranks over all
unseen films first, so that a network with squashed probabilities does not count less).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    a, b = np.load(args.a), np.load(args.b)
    if not np.array_equal(a["paths"], b["paths"]):
        raise SystemExit("the two files hold different films: run both on the same design")
    y = a["y"]
    combos = {
        os.path.basename(args.a): a["scores"],
        os.path.basename(args.b): b["scores"],
        "mean_probability": (a["scores"] + b["scores"]) / 2,
        "mean_rank": (rankdata(a["scores"]) + rankdata(b["scores"])) / 2,
    }
    out = {"command": "python benchmarks/ensemble_kinds.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "date": time.strftime("%Y-%m-%d")}
    for pop in ("indist", "early", "late", "contrast_flipped"):
        m = a[pop].astype(bool)
        out[pop] = {k: round(float(roc_auc_score(y[m], s[m])), 4) for k, s in combos.items()}
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
