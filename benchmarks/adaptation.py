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

Other label-free methods, on all of each site's films (``--no-others`` leaves them out):

- ``em_prior``: EM prior correction alone (Saerens et al. 2002): the site's prevalence
  re-estimated from the network's probabilities (trained with balanced class weights:
  training prior 0.5), the probabilities re-weighted to it, the model's own threshold;
- ``normal_mode``: the threshold moved in logit space by how far the site's NORMAL mode
  (the kernel-density mode of the site's logits below the model's threshold) sits from the
  hold-out's NORMAL mode;
- ``tent``: test-time entropy minimisation (Wang et al. 2021): batch-norm statistics
  re-estimated on the site, then one pass of Adam (1e-3, batches of 32) on the trainable
  batch-norm scales and offsets minimising the mean binary entropy of the site's
  predictions; the model's own threshold.
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


def em_prior(p, train_prior=0.5, iters=200):
    """Saerens-Latinne-Decaestecker EM: the site's prior and the re-weighted posteriors."""
    pi = train_prior
    post = p
    for _ in range(iters):
        a = pi / train_prior * p
        b = (1 - pi) / (1 - train_prior) * (1 - p)
        post = a / (a + b)
        new = float(post.mean())
        if abs(new - pi) < 1e-7:
            break
        pi = new
    return pi, post


def kde_mode(z):
    from scipy.stats import gaussian_kde

    grid = np.linspace(z.min(), z.max(), 512)
    return float(grid[np.argmax(gaussian_kde(z)(grid))])


def normal_mode_threshold(clf, site_scores):
    from pneumonia_cnn.metrics import logit

    t = logit(clf.threshold_)
    v, lab = np.asarray(clf.validation_scores_), np.asarray(clf.validation_labels_)
    z = logit(site_scores)
    below = z[z < t]
    if below.size < 10:
        return float(clf.threshold_)
    delta = kde_mode(below) - kde_mode(logit(v[lab == 0]))
    return float(1 / (1 + np.exp(-(t + delta))))


def tent(clf, X, lr=1e-3, batch=32):
    """The network after TENT on the site's films ``X`` (a copy; see the module docstring)."""
    import keras
    import tensorflow as tf

    from pneumonia_cnn.analysis import recalibrate_batch_norm
    from pneumonia_cnn.network import flat_layers

    X = clf.prepare_images(X)
    net = recalibrate_batch_norm(clf, X)
    model = net.model_
    Xp = np.asarray(net.feature_encoder_.transform(X), "float32")
    bns = [layer for layer in flat_layers(model)
           if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    params = [v for layer in bns for v in (layer.gamma, layer.beta) if v is not None]
    opt = keras.optimizers.Adam(lr)
    order = np.random.default_rng(0).permutation(len(Xp))
    for i in range(0, len(Xp), batch):
        xb = tf.constant(Xp[order[i:i + batch]])
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(tf.cast(model(xb, training=False), "float32"), 1e-6, 1 - 1e-6)
            loss = -tf.reduce_mean(p * tf.math.log(p) + (1 - p) * tf.math.log(1 - p))
        grads = tape.gradient(loss, [v.value for v in params])
        opt.apply_gradients(zip(grads, params))
    return net


def main(argv=None):
    from pneumonia_cnn.analysis import adapt

    start = time.perf_counter()
    args, clf, fit_s, sites = site_benchmark(
        __doc__.splitlines()[0], "adaptation.json",
        lambda p: (p.add_argument("--sizes", default="50,100,all"),
                   p.add_argument("--no-others", action="store_true")), argv)

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
        if not args.no_others:
            _, post = em_prior(base)
            row["em_prior"] = dict(zip(("sensitivity", "specificity"), np.round(
                rates(ys, post, clf.threshold_), 4).tolist()))
            t = normal_mode_threshold(clf, base)
            row["normal_mode"] = dict(zip(("sensitivity", "specificity"), np.round(
                rates(ys, base, t), 4).tolist()))
            s = tent(clf, X).predict_proba(X)[:, 1]
            row["tent"] = dict(zip(("sensitivity", "specificity"), np.round(
                rates(ys, s, clf.threshold_), 4).tolist()))
            from sklearn.metrics import roc_auc_score

            row["tent"]["roc_auc"] = round(float(roc_auc_score(ys, s)), 4)
            row["own_threshold"]["roc_auc"] = round(float(roc_auc_score(ys, base)), 4)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def mean_of(key, metric, which):
        vals = [r[key][metric] for r in rows if which(r["site"]) and key in r]
        return round(float(np.mean(vals)), 4) if vals else None

    summary = {}
    for label, which in (("real_batches", lambda s: not s.startswith("stress")),
                         ("stress_sites", lambda s: s.startswith("stress"))):
        if not any(which(r["site"]) for r in rows):  # --sites real
            continue
        summary[label] = {"own_threshold": {m: mean_of("own_threshold", m, which)
                                            for m in ("sensitivity", "specificity")}}
        for key in ("em_prior", "normal_mode", "tent"):
            if key in rows[0]:
                summary[label][key] = {m: mean_of(key, m, which)
                                       for m in ("sensitivity", "specificity")}
                summary[label][key]["sites_meeting_0.95_and_0.90"] = (
                    f"{sum(r[key]['sensitivity'] >= 0.95 and r[key]['specificity'] >= 0.9 for r in rows if which(r['site']))}"
                    f"/{sum(1 for r in rows if which(r['site']))}")
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
