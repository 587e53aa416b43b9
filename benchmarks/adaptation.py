"""Label-free site adaptation: does `adapt` on a site's unlabelled films move the operating
point where the site needs it?

    python benchmarks/adaptation.py [--data chest_xray_224/train] [--seed 0] [--out FILE]

The default ``PneumoniaCNN`` is trained (seed ``--seed``) on the middle acquisition batches
of the whole training split, as in ``robustness.py``. Each "site" is a set of films it never
saw, their labels hidden from ``adapt`` and used only to score it:

- ``early`` / ``late``: the earliest / latest acquisition batches (real shift, mild);
- ``late_balanced``: ``late`` at prevalence 0.5;
- ``stress:<perturbation>``: the within-distribution hold-out under each of the 13
  shift-stress perturbations at severity 2 (synthetic shift, some strong);

and each site is adapted from all of its films and from a random 50 and 100 of them (the
threshold found on a subset is scored on all of the site's films). Per site: sensitivity and
specificity at the model's own threshold and after adaptation (with and without
batch-norm re-estimation), true vs estimated prevalence, the expected sensitivity /
specificity ``adapt`` printed and whether the truth fell inside their 90% intervals.
"""

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_224, machine, site_benchmark  # noqa: E402


def rates(y, s, t):
    return float(np.mean(s[y == 1] >= t)), float(np.mean(s[y == 0] < t))


def inside(value, interval):
    return interval is not None and interval[0] - 1e-9 <= value <= interval[1] + 1e-9


def main(argv=None):
    from pneumonia_cnn.analysis import adapt

    start = time.perf_counter()
    args, clf, fit_s, sites = site_benchmark(
        __doc__.splitlines()[0], "adaptation.json",
        lambda p: p.add_argument("--sizes", default="50,100,all"), argv)

    rows = []
    for site, (X, ys) in sites.items():
        base = clf.predict_proba(X)[:, 1]
        row = {"site": site, "n": int(len(ys)), "true_prevalence": round(float(ys.mean()), 4)}
        row["own_threshold"] = dict(zip(("sensitivity", "specificity"),
                                        np.round(rates(ys, base, clf.threshold_), 4).tolist()))
        for size in args.sizes.split(","):
            n = len(ys) if size == "all" else int(size)
            if n > len(ys):
                continue
            pick = np.sort(np.random.default_rng(1).choice(len(ys), n, replace=False))
            for bn in (False, True):
                model = adapt(clf, X[pick], batch_norm=bn, n_bootstrap=100, track=False)
                s = model.predict_proba(X)[:, 1]
                sens, spec = rates(ys, s, model.threshold_)
                a = model.adaptation_
                row[f"adapt{'_bn' if bn else ''}_{size}"] = {
                    "estimated_prevalence": round(a["prevalence"], 4),
                    "prevalence_ci90": np.round(a["prevalence_ci90"], 4).tolist(),
                    "prevalence_in_ci": inside(float(ys.mean()), a["prevalence_ci90"]),
                    "threshold": round(model.threshold_, 4),
                    "sensitivity": round(sens, 4), "specificity": round(spec, 4),
                    "expected_sensitivity": round(a["expected_sensitivity"], 4),
                    "expected_specificity": (None if a["expected_specificity"] is None
                                             else round(a["expected_specificity"], 4)),
                    "specificity_in_ci": inside(spec, a["expected_specificity_ci90"]),
                }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def mean_of(key, metric, which):
        vals = [r[key][metric] for r in rows if which(r["site"]) and key in r]
        return round(float(np.mean(vals)), 4) if vals else None

    summary = {}
    for label, which in (("real_batches", lambda s: not s.startswith("stress")),
                         ("stress_sites", lambda s: s.startswith("stress"))):
        summary[label] = {"own_threshold": {m: mean_of("own_threshold", m, which)
                                            for m in ("sensitivity", "specificity")}}
        for key in [k for k in rows[0] if k.startswith("adapt")]:
            summary[label][key] = {m: mean_of(key, m, which)
                                   for m in ("sensitivity", "specificity")}
            summary[label][key]["prevalence_abs_error"] = round(float(np.mean(
                [abs(r[key]["estimated_prevalence"] - r["true_prevalence"])
                 for r in rows if which(r["site"])])), 4)
            summary[label][key]["sites_meeting_0.95_and_0.90"] = (
                f"{sum(r[key]['sensitivity'] >= 0.95 and r[key]['specificity'] >= 0.9 for r in rows if which(r['site']))}"
                f"/{sum(1 for r in rows if which(r['site']))}")
    out = {"command": "python benchmarks/adaptation.py " + " ".join(argv or sys.argv[1:]),
           "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "data": str(data_224(args.data)), "seed": args.seed,
           "fit_time_s": round(fit_s, 1), "model_threshold": round(clf.threshold_, 4),
           "summary": summary, "sites": rows,
           "wall_s": round(time.perf_counter() - start, 1)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
