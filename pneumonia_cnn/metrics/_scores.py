"""Score distributions in logit space: one class's scores as a shape that can be moved (a
kernel density), its quantiles and tail shares. Used by site adaptation
(:mod:`pneumonia_cnn.analysis`) and calibration with unlabelled films."""

from __future__ import annotations

import numpy as np

__all__ = ["ClassShape", "check_probabilities", "logit", "sigmoid", "smooth_quantile",
           "smooth_share"]

#: Logits are clipped to this range (probabilities 1e-7 .. 1 - 1e-7).
LOGIT_CLIP = 16.0


def check_probabilities(values, what: str) -> np.ndarray:
    """``values`` as a 1-D float array of probabilities, or ``ValueError`` naming ``what``
    (saved scores read back from a model folder: a damaged file is refused, not used)."""
    arr = np.asarray(values, float)
    if arr.ndim != 1 or not (np.isfinite(arr).all() and ((arr >= 0) & (arr <= 1)).all()):
        raise ValueError(f"'{what}' are not probabilities in [0, 1]")
    return arr


def logit(p) -> np.ndarray:
    """log(p / (1 - p)), with p kept in [1e-7, 1 - 1e-7] and the result in +-LOGIT_CLIP."""
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    return np.clip(np.log(p) - np.log1p(-p), -LOGIT_CLIP, LOGIT_CLIP)


def sigmoid(z) -> np.ndarray:
    """1 / (1 + exp(-z)): the inverse of :func:`logit`."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


def robust_moments(x) -> tuple:
    """Median and a robust spread (scaled MAD, floored) of a 1-D sample."""
    x = np.asarray(x, float)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    return med, max(mad, float(np.std(x)) * 0.5, 0.25)


class ClassShape:
    """One class's hold-out logits as a standardised shape that can be moved and scaled:
    its density is a Gaussian kernel estimate, so a component is ``loc + scale * shape``."""

    def __init__(self, logits):
        self.loc, self.scale = robust_moments(logits)
        self.z = (np.asarray(logits, float) - self.loc) / self.scale
        n = self.z.size
        self.bw = max(1.06 * float(np.std(self.z)) * n ** -0.2, 0.1)  # Silverman's rule

    def _density(self, z) -> np.ndarray:
        k = np.exp(-0.5 * ((np.asarray(z, float)[:, None] - self.z[None, :]) / self.bw) ** 2)
        return k.mean(axis=1) / (self.bw * np.sqrt(2 * np.pi))

    def pdf(self, x, loc, scale) -> np.ndarray:
        """Density of the moved shape at ``x``: the kernel density of the standardised
        scores, tabulated once on a fine grid and interpolated (EM evaluates it thousands of
        times); zero beyond 8 bandwidths of the outermost score, floored at 1e-300."""
        if not hasattr(self, "_grid"):
            lo, hi = self.z.min() - 8 * self.bw, self.z.max() + 8 * self.bw
            self._grid = np.linspace(lo, hi, 4001)
            self._table = self._density(self._grid)
        z = (np.asarray(x, float) - loc) / scale
        return np.interp(z, self._grid, self._table, left=0.0, right=0.0) / scale + 1e-300

    def moved(self, loc, scale) -> np.ndarray:
        return loc + scale * self.z


def smooth_quantile(shape: ClassShape, loc, scale, target: float) -> float:
    """The logit above which a share ``target`` of the moved component lies (its kernel
    density's quantile: smoother over seeds and films than an order statistic)."""
    from scipy.optimize import brentq

    lo, hi = -4 * LOGIT_CLIP, 4 * LOGIT_CLIP
    return float(brentq(lambda t: smooth_share(shape, loc, scale, t, above=True) - target,
                        lo, hi, xtol=1e-6))


def smooth_share(shape: ClassShape, loc, scale, t, above: bool) -> float:
    """Share of a moved component above (or below) ``t``, from its kernel density."""
    from scipy.stats import norm

    z = (t - loc) / scale
    p_above = float(np.mean(norm.sf((z - shape.z) / shape.bw)))
    return p_above if above else 1.0 - p_above

