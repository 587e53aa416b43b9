"""Per-image intensity normalisation: the same film from two machines should look alike.

Sites differ most in how grey levels are mapped (exposure, detector response, vendor
look-up tables). Normalising every image on its own, before the network sees it, removes a
large part of that difference at training and at prediction time alike. The methods are
scikit-image's (``skimage.exposure``):

- ``"standardize"``: zero mean, unit variance per image (then mapped back to 0-255 around
  128 with 3 standard deviations of range);
- ``"equalize"``: global histogram equalisation (``equalize_hist``);
- ``"clahe"``: contrast-limited adaptive histogram equalisation (``equalize_adapthist``),
  the usual choice in chest X-ray work. It runs as :func:`~._clahe.clahe_batch`, the same
  algorithm with the same output over a whole batch at once, on every core (about 0.3 ms a
  96 px film instead of 1.7).

The output is uint8 0-255 again, so the rest of the pipeline is unchanged. As an estimator
parameter (``PneumoniaCNN(intensity_norm="clahe")``) it is applied by the estimator's
feature encoder (scikeras), so ``fit``, ``predict`` and saved models always agree.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..data import ImageStream, map_stream

from ._clahe import clahe_batch

__all__ = ["INTENSITY_NORMS", "IntensityNormalizer", "clahe_in_processes", "normalize_intensity"]

#: Accepted values of ``intensity_norm`` (None: off).
INTENSITY_NORMS = (None, "standardize", "equalize", "clahe")


def _standardize(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    sd = float(img.std())
    z = (img - float(img.mean())) / (sd if sd > 1e-6 else 1.0)
    return np.clip(z / 6.0 + 0.5, 0.0, 1.0)  # +-3 sd -> 0-1


def _equalize(img: np.ndarray) -> np.ndarray:
    from skimage.exposure import equalize_hist

    if img.min() == img.max():
        return np.zeros(img.shape, np.float32)
    return equalize_hist(img, nbins=256)


def _clahe_kernel(shape) -> int:
    return max(shape[0] // 8, 4)


def _as_uint8(unit: np.ndarray) -> np.ndarray:
    """0-1 floats to grey levels 0-255 (rounded)."""
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def _clahe_uint8(films: np.ndarray) -> np.ndarray:
    """scikit-image's CLAHE of uint8 films (n, h, w) as grey levels, batched
    (:func:`~pneumonia_cnn.network._clahe.clahe_batch`, the same output); a film of one grey
    level is black."""
    varied = films.min(axis=(1, 2)) != films.max(axis=(1, 2))
    kernel = _clahe_kernel(films.shape[1:])
    if varied.all():
        return _as_uint8(clahe_batch(films, kernel))
    out = np.zeros(films.shape, np.uint8)
    if varied.any():
        out[varied] = _as_uint8(clahe_batch(films[varied], kernel))
    return out


#: Films per piece of work: bounds the memory of a large batch (a few MB a piece) and lets a
#: batch of 64 use two cores.
CHUNK = 32
_THREADS: dict = {}


def _threads():
    """One thread per core, started on first use and kept: numpy releases the GIL in the
    array operations that CLAHE spends its time in."""
    if "pool" not in _THREADS:
        from concurrent.futures import ThreadPoolExecutor

        _THREADS["pool"] = ThreadPoolExecutor(max(1, os.cpu_count() or 1),
                                              thread_name_prefix="pneumonia-cnn-clahe")
    return _THREADS["pool"]


def _clahe_films(films: np.ndarray) -> np.ndarray:
    """:func:`_clahe_uint8` of a batch, in pieces of :data:`CHUNK` films on every core."""
    if len(films) <= CHUNK:
        return _clahe_uint8(films)
    pieces = [films[i:i + CHUNK] for i in range(0, len(films), CHUNK)]
    return np.concatenate(list(_threads().map(_clahe_uint8, pieces)))


def clahe_in_processes(enabled: bool = True) -> None:
    """Deprecated, does nothing: CLAHE now runs batched on every core in threads, in every
    process (it ran in worker processes in a model server before)."""
    warnings.warn("clahe_in_processes() is no longer needed and does nothing: CLAHE runs "
                  "batched on every core in every process; remove the call",
                  FutureWarning, stacklevel=2)


_METHODS = {"standardize": _standardize, "equalize": _equalize}


def check_intensity_norm(method) -> None:
    """Raise a ValueError naming the parameter if ``method`` is not accepted."""
    if method not in INTENSITY_NORMS:
        raise ValueError(f"intensity_norm must be one of {INTENSITY_NORMS}, got {method!r}")


def normalize_intensity(X, method=None) -> np.ndarray:
    """Normalise the intensities of every image in a batch, each on its own.

    Parameters
    ----------
    X : ndarray, shape (n, h, w, 1), pixel values 0-255, or ImageStream
        A stream is normalised once into a file beside its cache entry, and a stream of
        that file is returned.
    method : {None, "standardize", "equalize", "clahe"}, default=None
        None returns X unchanged.

    Returns
    -------
    ndarray of uint8, shape of X
    """


    check_intensity_norm(method)
    if method is None:
        return X
    if isinstance(X, ImageStream):  # computed once for the whole cache entry, kept beside it
        return map_stream(X, lambda batch: normalize_intensity(batch, method), method)
    X = np.asarray(X)
    films = X[..., 0]
    if method != "standardize" and films.dtype != np.uint8:
        films = np.clip(films, 0, 255).astype(np.uint8)
    if method == "clahe":  # the default: all films of the batch at once, on every core
        return _clahe_films(np.ascontiguousarray(films))[..., None]
    out = np.empty(X.shape, np.uint8)
    for i, img in enumerate(films):
        out[i, ..., 0] = _as_uint8(_METHODS[method](img))
    return out


class IntensityNormalizer(TransformerMixin, BaseEstimator):
    """:func:`normalize_intensity` as a stateless scikit-learn transformer (the estimator's
    scikeras ``feature_encoder``). Unlike ``FunctionTransformer`` it never converts its input
    to an array, so an :class:`~pneumonia_cnn.data.ImageStream` stays on disk."""

    def __init__(self, method=None):
        self.method = method

    def fit(self, X=None, y=None):
        check_intensity_norm(self.method)
        return self

    def transform(self, X):
        return normalize_intensity(X, self.method)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
