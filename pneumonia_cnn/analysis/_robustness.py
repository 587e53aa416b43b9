"""Shift-stress validation: how a fitted model holds up under acquisition-like changes.

A model that is validated only on images of the same acquisition batch it was trained on
learns that batch's exposure, contrast, sharpness and framing; at a new site those change
and the errors move (on chest X-rays mostly towards false positives on NORMAL films). This
module perturbs **patient-held-out** images the way another machine, protocol or site would,
at graded severities, and reports per perturbation and averaged:

- ROC AUC (does the model still rank films?),
- sensitivity and specificity at the model's own decision threshold (does its operating point
  survive?), and
- how far the mean P(PNEUMONIA) of NORMAL films moves (the direction of the drift).

The perturbations follow what the literature on chest X-ray domain shift names as the
differences between sites and devices: exposure / gamma and contrast (detector response,
kVp / mAs, vendor look-up tables), blur and edge enhancement (detector and vendor
post-processing), quantum noise (dose), lossy compression and lower resolution (PACS export),
small rotations, zooms and shifts (patient positioning), and collimation: tighter crops or
wider fields of view with black borders. Graded severities (1 = mild, 3 = strong) follow
Hendrycks & Dietterich's corruption benchmarks.

They are implemented with **scikit-image** (``skimage.exposure``, ``skimage.filters``,
``skimage.util.random_noise``, ``skimage.transform``) and Pillow for JPEG: maintained,
deterministic given a NumPy generator, made for single-channel float images. albumentations
would pull OpenCV in for the same operations, and imagecorruptions is unmaintained and
expects RGB.

Everything is deterministic for a given ``random_state``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..estimator import FitHook
from ..metrics import POSITIVE, decision_threshold
from ..network import affine
from ._evaluate import image_arrays
from ._wrappers import network_of

__all__ = [
    "PERTURBATIONS",
    "SEVERITIES",
    "STRESS_MAX_IMAGES",
    "StressOnFit",
    "StressResult",
    "perturb",
    "stress_hold_out",
    "stress_scores",
    "stress_scoring",
    "stress_test",
    "summarize_stress",
]

#: Severities run by default (1 = mild, 2 = moderate, 3 = strong).
SEVERITIES = (1, 2, 3)


# ---------------------------------------------------------------------------------------------
# Perturbations: f(image float 0-1 of shape (h, w), severity 1-3, rng) -> float image
# ---------------------------------------------------------------------------------------------
def _gamma(gammas):
    def apply(img, s, rng):
        from skimage.exposure import adjust_gamma

        return adjust_gamma(img, gammas[s - 1])
    return apply


def _contrast_low(img, s, rng):
    from skimage.exposure import rescale_intensity

    keep = (0.75, 0.55, 0.4)[s - 1]   # the film's grey range shrinks around its mean
    m = float(img.mean())
    return rescale_intensity(img, in_range=(0.0, 1.0),
                             out_range=(m - keep * m, m + keep * (1 - m)))


def _contrast_high(img, s, rng):
    from skimage.exposure import adjust_sigmoid

    return adjust_sigmoid(img, cutoff=float(np.median(img)), gain=(4.0, 6.0, 9.0)[s - 1])


def _blur(img, s, rng):
    from skimage.filters import gaussian

    return gaussian(img, sigma=(0.6, 1.0, 1.5)[s - 1] * img.shape[0] / 96, preserve_range=True)


def _sharpen(img, s, rng):
    from skimage.filters import unsharp_mask

    return unsharp_mask(img, radius=1.5 * img.shape[0] / 96, amount=(0.7, 1.5, 3.0)[s - 1],
                        preserve_range=True)


def _noise(img, s, rng):
    from skimage.util import random_noise

    sd = (0.03, 0.06, 0.10)[s - 1]
    return random_noise(img, mode="gaussian", var=sd * sd, rng=rng, clip=True)


def _jpeg(img, s, rng):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img)).save(buf, format="JPEG", quality=(30, 15, 7)[s - 1])
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float64) / 255.0


def _low_resolution(img, s, rng):
    from skimage.transform import resize

    f = (0.6, 0.4, 0.28)[s - 1]
    h, w = img.shape
    small = resize(img, (max(int(h * f), 4), max(int(w * f), 4)), anti_aliasing=True)
    return resize(small, (h, w), order=1)


def _rotation(img, s, rng):
    angle = (4.0, 8.0, 12.0)[s - 1] * rng.choice((-1.0, 1.0))
    return affine(img, rotation_deg=angle)


def _position(img, s, rng):
    m = (0.04, 0.08, 0.12)[s - 1]        # zoom +-m and shift up to m of the side
    return affine(img, scale=1.0 + rng.uniform(-m, m), shift=tuple(rng.uniform(-m, m, 2)))


def _border_crop(img, s, rng):
    from skimage.transform import resize

    c = (0.06, 0.12, 0.18)[s - 1]          # tighter collimation: the outer c of each side goes
    h, w = img.shape
    dy, dx = int(round(h * c)), int(round(w * c))
    return resize(img[dy:h - dy, dx:w - dx], (h, w), order=1, anti_aliasing=True)


def _padding(img, s, rng):
    return affine(img, scale=1.0 - (0.08, 0.15, 0.25)[s - 1])  # wider field, black border


#: name -> (function, what it imitates)
PERTURBATIONS: dict = {
    "darker": (_gamma((1.3, 1.7, 2.2)), "gamma > 1: under-exposure / another detector curve"),
    "brighter": (_gamma((1 / 1.3, 1 / 1.7, 1 / 2.2)), "gamma < 1: over-exposure"),
    "low_contrast": (_contrast_low, "compressed grey range (scatter, soft technique)"),
    "high_contrast": (_contrast_high, "steeper look-up table (vendor processing)"),
    "blur": (_blur, "detector / motion blur"),
    "sharpen": (_sharpen, "vendor edge enhancement (unsharp masking)"),
    "noise": (_noise, "quantum noise of a lower dose"),
    "jpeg": (_jpeg, "lossy re-compression (PACS export)"),
    "low_resolution": (_low_resolution, "lower detector / export resolution"),
    "rotation": (_rotation, "patient rotation"),
    "position": (_position, "positioning: zoom and shift"),
    "border_crop": (_border_crop, "tighter collimation"),
    "padding": (_padding, "wider field of view, black border"),
}


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(img, np.float64) * 255.0), 0, 255).astype(np.uint8)


def perturb(X: np.ndarray, name: str, severity: int, random_state=0) -> np.ndarray:
    """Apply one perturbation to every image of a batch.

    Parameters
    ----------
    X : ndarray of uint8, shape (n, h, w) or (n, h, w, 1)
        Images, pixel values 0-255.
    name : str
        A key of :data:`PERTURBATIONS`.
    severity : {1, 2, 3}
        1 = mild, 3 = strong.
    random_state : int, default=0
        Seed of the per-image random draws (rotation sign, shift, noise).

    Returns
    -------
    ndarray of uint8, same shape as X
    """
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    fn = PERTURBATIONS[name][0]
    X = np.asarray(X)
    if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] != 1):
        raise ValueError(f"perturb needs grayscale images of shape (n, h, w) or (n, h, w, 1), "
                         f"got {X.shape}; convert RGB to grayscale first")
    if X.size and (X.min() < 0 or X.max() > 255):
        raise ValueError(f"perturb needs pixel values 0-255, got {X.min():g} to {X.max():g}")
    squeeze = X.ndim == 4
    imgs = X[..., 0] if squeeze else X
    # one generator per (perturbation, severity): the same seed gives the same perturbed set
    index = list(PERTURBATIONS).index(name)
    rng = np.random.default_rng([int(random_state), index, int(severity)])
    out = np.empty_like(imgs, dtype=np.uint8)
    for i, img in enumerate(imgs):
        out[i] = _to_uint8(fn(img.astype(np.float64) / 255.0, int(severity), rng))
    return out[..., None] if squeeze else out


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------
@dataclass
class StressResult:
    """Result of :func:`stress_test`.

    Attributes
    ----------
    table : list of dict
        One row per perturbation and severity (plus a ``clean`` row): ``perturbation``,
        ``severity``, ``roc_auc``, ``sensitivity``, ``specificity``, ``normal_mean_p``
        (mean P(PNEUMONIA) of the NORMAL films) and ``normal_shift`` (its change from clean).
    summary : dict
        ``clean_*`` metrics and the averages over all perturbed sets: ``stress_roc_auc``,
        ``stress_sensitivity``, ``stress_specificity``, ``stress_normal_shift`` (mean signed
        change of NORMAL films' P(PNEUMONIA)), and the worst cases ``stress_min_roc_auc``,
        ``stress_min_specificity``, ``stress_max_normal_shift``.
    by_perturbation : dict
        Per perturbation, the same averages over its severities.
    threshold : float
        The decision threshold used for sensitivity and specificity.
    """

    table: list
    summary: dict
    by_perturbation: dict
    threshold: float
    random_state: int = 0
    severities: tuple = SEVERITIES
    perturbations: tuple = field(default_factory=tuple)

    def to_frame(self):
        """The table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.table)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"summary": self.summary, "by_perturbation": self.by_perturbation,
                "table": self.table, "threshold": self.threshold,
                "random_state": self.random_state, "severities": list(self.severities)}


def _row(y_pos, scores, threshold):
    from sklearn.metrics import roc_auc_score

    pred = scores >= threshold
    both = y_pos.any() and (~y_pos).any()
    return {
        "accuracy": float((pred == y_pos).mean()),
        "roc_auc": float(roc_auc_score(y_pos, scores)) if both else float("nan"),
        "sensitivity": float(pred[y_pos].mean()) if y_pos.any() else float("nan"),
        "specificity": float((~pred[~y_pos]).mean()) if (~y_pos).any() else float("nan"),
        "normal_mean_p": float(scores[~y_pos].mean()) if (~y_pos).any() else float("nan"),
    }


def stress_test(estimator, X, y=None, *, perturbations=None, severities=SEVERITIES,
                random_state: int = 0, threshold: float | None = None) -> StressResult:
    """Score a fitted model on perturbed copies of labelled, patient-held-out images.

    Parameters
    ----------
    estimator : fitted PneumoniaCNN (or any fitted classifier with ``predict_proba``,
        ``classes_`` and ``image_size``)
    X : str, path-like, ImageData or array of shape (n, h, w[, 1])
        Labelled images the model never trained on (a data folder, or arrays with ``y``).
        Use images of patients outside the training set; the perturbations are applied at
        the model's input size.
    y : array-like of str, default=None
        Labels (``"NORMAL"`` / ``"PNEUMONIA"``), unless X is a folder or ImageData.
    perturbations : list of str, default=None
        Keys of :data:`PERTURBATIONS`; default all.
    severities : tuple of int, default=(1, 2, 3)
    random_state : int, default=0
        Seed: the same seed gives the same perturbed images and the same numbers.
    threshold : float, default=None
        Decision threshold for sensitivity / specificity; default the model's own.

    Returns
    -------
    StressResult
    """
    X, y, _, _ = image_arrays(estimator, X, y)
    net = network_of(estimator)  # a site model's network (under one wrapper or two)
    if hasattr(net, "prepare_images"):  # RGB -> gray, resize, 0-255 uint8, as predict does
        X = net.prepare_images(X)
    names = list(perturbations) if perturbations is not None else list(PERTURBATIONS)
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; choose from "
                         f"{', '.join(PERTURBATIONS)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must be a non-empty subset of {SEVERITIES}, got "
                         f"{severities!r}")
    t = float(decision_threshold(estimator) if threshold is None else threshold)
    scores = stress_scores(estimator, X, names, severities, random_state)
    return summarize_stress(y, scores, t, random_state=random_state)


def stress_scores(estimator, X, perturbations, severities=SEVERITIES, random_state: int = 0):
    """P(PNEUMONIA) of every image, clean and under each perturbation and severity.

    Returns
    -------
    dict
        ``("clean", 0)`` and ``(perturbation, severity)`` -> ndarray of shape (n,).
    """
    col = list(map(str, estimator.classes_)).index(POSITIVE)

    def scores_of(images):
        return np.asarray(estimator.predict_proba(images))[:, col]

    out = {("clean", 0): scores_of(X)}
    for name in perturbations:
        for s in severities:
            out[(name, int(s))] = scores_of(perturb(X, name, s, random_state))
    return out


def summarize_stress(y, scores: dict, threshold: float, random_state: int = 0) -> StressResult:
    """Metrics of :func:`stress_scores` output (or of an average of several models' scores,
    which is how an ensemble's stress result is computed)."""
    y_pos = np.asarray(y).astype(str) == POSITIVE
    t = float(threshold)
    clean = _row(y_pos, scores[("clean", 0)], t)
    table = [{"perturbation": "clean", "severity": 0, **clean, "normal_shift": 0.0}]
    for (name, s), sc in scores.items():
        if name == "clean":
            continue
        r = _row(y_pos, sc, t)
        r["normal_shift"] = r["normal_mean_p"] - clean["normal_mean_p"]
        table.append({"perturbation": name, "severity": int(s), **r})
    perturbed = table[1:]
    names = list(dict.fromkeys(r["perturbation"] for r in perturbed))
    severities = tuple(sorted({r["severity"] for r in perturbed}))

    def mean(rows, key):
        vals = np.array([r[key] for r in rows], float)
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    keys = ("accuracy", "roc_auc", "sensitivity", "specificity", "normal_shift")
    summary = {f"clean_{k}": clean[k] for k in ("accuracy", "roc_auc", "sensitivity",
                                                 "specificity", "normal_mean_p")}
    summary.update({f"stress_{k}": mean(perturbed, k) for k in keys})
    summary["stress_min_roc_auc"] = float(np.nanmin([r["roc_auc"] for r in perturbed]))
    summary["stress_min_specificity"] = float(np.nanmin([r["specificity"] for r in perturbed]))
    summary["stress_max_normal_shift"] = float(np.nanmax([abs(r["normal_shift"])
                                                          for r in perturbed]))
    by = {n: {k: mean([r for r in perturbed if r["perturbation"] == n], k) for k in keys}
          for n in names}
    return StressResult(table=table, summary=summary, by_perturbation=by, threshold=t,
                        random_state=int(random_state), severities=severities,
                        perturbations=tuple(names))


def stress_scoring(estimator, X, y) -> dict:
    """A multi-metric scikit-learn scorer: within-distribution and shift-stress scores.

    Use it as ``scoring=`` of ``GridSearchCV`` / ``cross_validate`` (a callable returning a
    dict), or through ``search(..., stress=True)``. Returns ``roc_auc``, ``accuracy``,
    ``sensitivity``, ``specificity`` on the fold's held-out images as they are, and
    ``stress_roc_auc``, ``stress_sensitivity``, ``stress_specificity`` and
    ``stress_normal_shift`` averaged over :data:`PERTURBATIONS` at all severities
    (seed 0).
    """
    result = stress_test(estimator, X, y)
    s = result.summary
    return {"roc_auc": s["clean_roc_auc"], "accuracy": result.table[0]["accuracy"],
            "sensitivity": s["clean_sensitivity"], "specificity": s["clean_specificity"],
            **{k: s[k] for k in ("stress_roc_auc", "stress_sensitivity", "stress_specificity",
                                 "stress_normal_shift")}}


#: Largest hold-out stress-tested whole; above it, a class-stratified sample of this size
#: (the stress test predicts every image 40 times).
STRESS_MAX_IMAGES = 2000


def _stress_rows(y) -> np.ndarray | None:
    """Rows of a class-stratified sample of ``STRESS_MAX_IMAGES`` (fixed seed), or None when
    the hold-out is small enough to test whole."""
    if len(y) <= STRESS_MAX_IMAGES:
        return None
    from sklearn.model_selection import train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=STRESS_MAX_IMAGES, stratify=y,
                               random_state=0)
    return np.sort(rows)


def stress_hold_out(estimator, X, y) -> tuple:
    """Shift-stress test of labelled held-out images in one pass (clean and perturbed
    scores); a large hold-out is tested on a class-stratified sample.

    Returns
    -------
    (StressResult, ndarray, int or None)
        The result, the clean P(PNEUMONIA) of every image of ``X`` (for headline metrics),
        and the size of the sample (None when tested whole).
    """
    y = np.asarray(y)
    rows = _stress_rows(y)
    if rows is None:
        all_scores = stress_scores(estimator, np.asarray(X), list(PERTURBATIONS))
        clean = all_scores[("clean", 0)]
    else:
        clean = estimator.predict_proba(X)[:, 1]
        all_scores = stress_scores(estimator, np.asarray(X[rows]), list(PERTURBATIONS))
        y = y[rows]
    result = summarize_stress(y, all_scores, decision_threshold(estimator))
    return result, clean, (None if rows is None else len(rows))


class StressOnFit(FitHook):
    """Fit hook: stress-test the validation hold-out when the fit ends and keep the summary
    in ``estimator.stress_`` (and the result in the fit context, for the MLflow logger).
    ``tracking=True`` plugs it in; ``PneumoniaCNN(fit_hooks=[StressOnFit()])`` without
    tracking. A failure is warned about and never loses the fitted model."""

    def on_fit_end(self, estimator, context) -> None:
        if context.validation is None or len(np.unique(context.validation[1])) != 2:
            return
        try:
            result, clean, sample = stress_hold_out(estimator, *context.validation)
        except Exception as exc:
            warnings.warn(f"the fit finished but its shift-stress test failed ({exc}); the "
                          "trained model is kept (run `pneumonia-cnn stress` on it)",
                          stacklevel=4)
            return
        estimator.stress_ = result.summary
        context.results["stress"] = (result, clean, sample)
