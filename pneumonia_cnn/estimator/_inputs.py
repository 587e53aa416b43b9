"""What ``fit`` and ``predict`` accept: image arrays, streams and labels, checked and brought to
the network's input (data sources and files are read by :mod:`pneumonia_cnn.data`)."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length

from ..data import ImageData, ImageStream, canonical_labels, load_any

__all__ = ["as_images", "load_source", "training_data", "validate_array", "validate_labels"]


def validate_array(X, image_size: int) -> np.ndarray:
    """Check an image array (or an :class:`ImageStream`) and bring it to ``image_size``
    grayscale uint8: shape ``(n, image_size, image_size, 1)``, pixel values 0-255; every
    ambiguity is refused, never guessed."""
    if isinstance(X, ImageStream):  # decoded by the loaders at a size: check it only
        if X.shape[1:] != (image_size, image_size, 1):
            raise ValueError(f"{X!r} holds images of {X.shape[1:3]}, but image_size is "
                             f"{image_size}: load the data at that size")
        return X
    if sp.issparse(X):
        raise TypeError("Sparse data was passed for X, but dense data is required: "
                        "PneumoniaCNN takes image arrays, folders or files")
    try:
        arr = np.asarray(X)
    except ValueError as exc:
        raise ValueError(f"X could not be turned into an image array: {exc}") from exc
    if arr.dtype.kind not in "uif" and arr.dtype != bool:
        raise ValueError(f"X must hold numeric pixel values 0-255, got dtype {arr.dtype}; "
                         "pass a data folder or a list of image files to load images")
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        # (h, w, 1 or 3) one image, or (n, h, w) images 1 or 3 pixels wide? never guess
        raise ValueError(
            f"X has shape {arr.shape}: one image of {arr.shape[0]}x{arr.shape[1]} pixels "
            f"with {arr.shape[2]} channel(s), or {arr.shape[0]} images of "
            f"{arr.shape[1]}x{arr.shape[2]} pixels? Pass one image as X[np.newaxis] "
            "(shape (1, height, width, channels)); 3-D arrays are read as (n, height, "
            "width) and images must be wider than 3 pixels")
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"X must be an image array of shape (n, height, width) or "
                         f"(n, height, width, 1 or 3), got shape {arr.shape}; pass a data "
                         "folder or a list of image files to load images")
    if arr.shape[0] == 0:
        raise ValueError("X holds no images (found array with 0 sample(s))")
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("X contains NaN or infinity; pixel values must be finite 0-255")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"X must hold pixel values 0-255, got values from {lo:g} to "
                             f"{hi:g}; rescale them (e.g. 16-bit images: X / 257)")
        if arr.dtype.kind == "f" and hi <= 1.0 and arr.size > 1:
            warnings.warn("X looks scaled to 0-1, but PneumoniaCNN expects raw pixel "
                          "values 0-255 (it rescales inside the model): multiply by 255",
                          UserWarning, stacklevel=3)
    if arr.shape[-1] == 3:  # RGB -> luminance, as the loader does (ITU-R 601-2)
        arr = (arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if arr.shape[1:3] != (image_size, image_size):
        arr = keras.ops.convert_to_numpy(keras.ops.image.resize(
            arr.astype(np.float32), (image_size, image_size), antialias=True))
    if arr.dtype != np.uint8:  # one dtype in and out: 8-bit pixels, 4x less memory
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def validate_labels(y) -> np.ndarray:
    """One label of two classes per image, as canonical class names."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per image (1-D), got shape {y.shape}")
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"Only binary classification is supported. PneumoniaCNN needs "
                         f"exactly 2 classes in y (NORMAL and PNEUMONIA), got "
                         f"{len(classes)}: {classes.tolist()[:5]}. A data folder needs "
                         "images in both its NORMAL/ and PNEUMONIA/ sub-folders.")
    return canonical_labels(y)  # NORMAL / PNEUMONIA in any case, or 0 / 1; else refused


def training_data(estimator, X, y, sample_weight, groups):
    """What ``fit`` trains on: ``(data_root, X, y, sample_weight, groups)``, every part
    checked (labels first: their errors are the clearest) and of one length; every image is
    its own patient when no patient ids are known."""
    if y is not None and not isinstance(X, (str, os.PathLike, ImageData)):
        y = validate_labels(y)  # labels first: their errors are the clearest
    data = load_source(estimator, X, y, role="train")  # a source with splits: its training split(s)
    X, y, groups = as_images(estimator, X if data is None else data, y, groups)
    if y is None:
        raise ValueError("y is required when X is an array or a list of files")
    y = validate_labels(y)
    check_consistent_length(X, y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        check_consistent_length(X, sample_weight)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    check_consistent_length(y, groups)
    return getattr(data, "root", None), X, y, sample_weight, groups


def load_source(estimator, X, y=None, role="evaluate"):
    """The images ``X`` names (a data source, whose splits of ``role`` are read, an
    :class:`ImageData` or image files), or None for an image array."""
    if isinstance(X, (str, os.PathLike)) and y is not None:
        raise ValueError("y must be None when X is a data folder: the labels come from "
                         "its class sub-folders")
    return load_any(X, estimator.input_size(), verbose=int(estimator.verbose > 0), role=role)

def as_images(estimator, X, y=None, groups=None):
    """A data source, a list of files or an array as ``(X uint8, y, groups)`` (X is an
    :class:`ImageStream` for data too large for memory)."""
    data = load_source(estimator, X, y)
    if data is None:
        return estimator.prepare_images(X), y, groups
    if data.y.size and y is None:
        y = data.y
    return data.X, y, data.groups if groups is None else groups
