"""Per-image intensity normalisation: the same film from two machines should look alike.

Sites differ most in how grey levels are mapped (exposure, detector response, vendor
look-up tables). Normalising every image on its own, before the network sees it, removes a
large part of that difference at training and at prediction time alike. The methods are
scikit-image's (``skimage.exposure``):

- ``"standardize"``: zero mean, unit variance per image (then mapped back to 0-255 around
  128 with 3 standard deviations of range);
- ``"equalize"``: global histogram equalisation (``equalize_hist``);
- ``"clahe"``: contrast-limited adaptive histogram equalisation (``equalize_adapthist``),
  the usual choice in chest X-ray work.

The output is uint8 0-255 again, so the rest of the pipeline is unchanged. As an estimator
parameter (``PneumoniaCNN(intensity_norm="clahe")``) it is applied by the estimator's
feature encoder (scikeras), so ``fit``, ``predict`` and saved models always agree.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..data import ImageStream, map_stream

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


def _clahe(img: np.ndarray) -> np.ndarray:
    from skimage.exposure import equalize_adapthist

    if img.min() == img.max():
        return np.zeros(img.shape, np.float32)
    return equalize_adapthist(img, kernel_size=_clahe_kernel(img.shape), clip_limit=0.01)


#: Fewest films a batch must hold for CLAHE to run in worker processes (scikit-image holds
#: the GIL, so threads do not help; below this, starting the work costs more than it saves).
PARALLEL_MIN = 64
_POOL: dict = {"enabled": False}


def clahe_in_processes(enabled: bool = True) -> None:
    """Run the CLAHE of large batches in worker processes, one per core, from now on in this
    process: the served model turns it on (a batch of 64 films in 65 ms instead of 118 on
    two cores, the same output). Off by default: the workers are spawned, and a spawned
    worker imports the main script again, which must then guard its work with
    ``if __name__ == "__main__":``."""
    _POOL["enabled"] = bool(enabled)


def _clahe_pool():
    """The process pool (spawned: safe beside TensorFlow) of one worker per core, started on
    first use and kept; None unless :func:`clahe_in_processes` is on, on one core, or where
    processes cannot start children (a daemon process, such as a Dask worker)."""
    if not _POOL["enabled"]:
        return None
    if "pool" not in _POOL:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        workers = _POOL["workers"] = os.cpu_count() or 1
        _POOL["pool"] = None
        if workers > 1 and not multiprocessing.current_process().daemon:
            _POOL["pool"] = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
    return _POOL["pool"]


def _clahe_batch(images: list) -> list | None:
    """scikit-image's CLAHE of every film in the worker processes (the same function with
    the same arguments, so the same output), or None when there is no pool."""
    from functools import partial

    from skimage.exposure import equalize_adapthist

    pool = _clahe_pool()
    if pool is None:
        return None
    fn = partial(equalize_adapthist, kernel_size=_clahe_kernel(images[0].shape),
                 clip_limit=0.01)
    try:
        chunk = max(1, len(images) // (4 * _POOL["workers"]))
        return list(pool.map(fn, images, chunksize=chunk))
    except Exception:  # a broken pool (a worker killed): this and later batches run here
        _POOL["pool"] = None
        return None


_METHODS = {"standardize": _standardize, "equalize": _equalize, "clahe": _clahe}


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
    fn = _METHODS[method]
    out = np.empty(X.shape, np.uint8)
    films = [X[i, ..., 0] for i in range(len(X))]
    if method != "standardize":
        films = [img.astype(np.uint8) if X.dtype == np.uint8
                 else np.clip(img, 0, 255).astype(np.uint8) for img in films]
    done = {}
    if method == "clahe" and len(films) >= PARALLEL_MIN:  # the slow one: on every core
        varied = [i for i, img in enumerate(films) if img.min() != img.max()]
        results = _clahe_batch([films[i] for i in varied]) if varied else None
        if results is not None:
            done = dict(zip(varied, results))
    for i, img in enumerate(films):
        value = done[i] if i in done else fn(img)
        out[i, ..., 0] = np.clip(np.rint(value * 255.0), 0, 255).astype(np.uint8)
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
