"""The data types every loader shares: :class:`ImageData`, labels, patient ids, errors."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ._dicom import dicom_patient_id, is_dicom
from ._streaming import iter_chunks

#: Class names, in the order of ``classes_`` (sorted, so PNEUMONIA is the positive class).
CLASS_NAMES = ("NORMAL", "PNEUMONIA")

#: File extensions that are read as images (lower case).
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".dcm", ".dicom"})



class DataError(ValueError):
    """A data folder or image list cannot be used; the message says what to do."""


class UnreadableImageWarning(UserWarning):
    """Some image files could not be decoded and were skipped."""


@dataclass
class ImageData:
    """Images loaded from a folder or a list of files.

    Attributes
    ----------
    X : ndarray of uint8, shape (n_images, size, size, 1), or ImageStream
        Grayscale pixel values 0-255; an :class:`~pneumonia_cnn.data.ImageStream` (the
        same shape, read from disk in batches) when the data is too large for memory.
    y : ndarray of str, shape (n_images,)
        Class name of every image (``"NORMAL"`` or ``"PNEUMONIA"``); empty strings when the
        images were given as a bare list of files.
    paths : ndarray of str, shape (n_images,)
        The file of every image.
    groups : ndarray of str, shape (n_images,)
        Patient id of every image, see :func:`patient_id`.
    skipped : list of (str, str)
        Files that could not be decoded, with the reason.
    root : str or None
        The data folder, when loaded from one.
    """

    X: np.ndarray
    y: np.ndarray
    paths: np.ndarray
    groups: np.ndarray
    skipped: list = field(default_factory=list)
    root: str | None = None

    def __len__(self) -> int:
        return len(self.X)

    def class_counts(self) -> dict:
        """Number of images per class, e.g. ``{"NORMAL": 447, "PNEUMONIA": 1291}``."""
        names, counts = np.unique(self.y, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def subset(self, rows) -> "ImageData":
        """The images of ``rows`` (indices or a boolean mask), same root."""
        return ImageData(X=self.X[rows], y=self.y[rows] if self.y.size else self.y,
                         paths=self.paths[rows], groups=self.groups[rows], root=self.root)

    @staticmethod
    def concat(parts: Sequence["ImageData"]) -> "ImageData":
        """One in-memory data set of several (their images must have one size; streams are
        read into memory: load large sets of files together instead, as one stream)."""
        return ImageData(X=np.concatenate([np.asarray(p.X) for p in parts]),
                         y=np.concatenate([p.y for p in parts]),
                         paths=np.concatenate([p.paths for p in parts]),
                         groups=np.concatenate([p.groups for p in parts]),
                         skipped=[s for p in parts for s in p.skipped])


# ---------------------------------------------------------------------------------------------
# Patient ids
# ---------------------------------------------------------------------------------------------
_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_IM = re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-", re.IGNORECASE)


def canonical_labels(y) -> np.ndarray:
    """Labels as ``"NORMAL"`` / ``"PNEUMONIA"``.

    Accepted: the two class names in any case (``normal``, ``Pneumonia``...), or the numbers
    0 (NORMAL) and 1 (PNEUMONIA), also as booleans. Anything else is refused: a model trained
    on ``cat`` / ``dog`` would score 0.0 and fail later, far from the cause.

    Raises
    ------
    ValueError
        Naming the labels found and what is accepted.
    """
    arr = np.asarray(y)
    if arr.dtype.kind in "biuf":
        values = set(np.unique(arr).tolist())
        if values <= {0, 1}:
            return np.where(arr.astype(float) == 1, CLASS_NAMES[1], CLASS_NAMES[0])
        found = sorted(values - {0, 1})[:5]
    else:
        upper = np.char.upper(np.char.strip(arr.astype(str)))
        if set(np.unique(upper).tolist()) <= set(CLASS_NAMES):
            return upper.astype(object).astype(str)
        found = [v for v in np.unique(arr.astype(str)).tolist()
                 if v.strip().upper() not in CLASS_NAMES][:5]
    raise ValueError(f"labels must be NORMAL and PNEUMONIA (any case) or 0 = NORMAL and 1 = "
                     f"PNEUMONIA; got {found}: rename the labels (or the class folders)")


def patient_id(path: str | os.PathLike) -> str:
    """Patient id of a Kaggle chest X-ray, parsed from its file name.

    ``person1005_bacteria_2936.jpeg`` and ``person1005_virus_1688.jpeg`` are both patient
    ``person1005``. NORMAL files are named ``IM-0511-0001-0002.jpeg`` or
    ``NORMAL2-IM-0041-0001.jpeg``: the patient is the ``IM-NNNN`` part with its batch prefix
    (``IM-0511``, ``NORMAL2-IM-0041``), so that the two views ``IM-0511-0001-0001`` and
    ``IM-0511-0001-0002`` of one child stay on the same side of a split. Any other name is its
    own patient (the file name without extension). A DICOM file's patient is its
    ``PatientID`` tag, else its ``StudyInstanceUID`` (see :func:`read_dicom`), whatever the
    file is called.

    Parameters
    ----------
    path : str or path-like
        File path or name.

    Returns
    -------
    str
    """
    if is_dicom(path) and os.path.isfile(path):
        try:
            tagged = dicom_patient_id(path)
        except ImportError:  # no pydicom: the file is reported unreadable when decoded
            tagged = None
        if tagged:
            return tagged
    stem = Path(path).stem
    for pattern in (_PERSON, _IM):
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def is_path_list(X) -> bool:
    """True for a non-empty list, tuple or 1-D array of file paths."""
    if isinstance(X, (str, os.PathLike, ImageData)):
        return False
    if isinstance(X, np.ndarray):
        return X.ndim == 1 and X.dtype.kind in "UO" and X.size > 0 and isinstance(
            X.flat[0], (str, os.PathLike))
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(isinstance(x, (str, os.PathLike)) for x in X)
    return False




def image_fingerprints(X) -> list:
    """Content hash of every image's pixels (12 hex digits each): to recognise training
    images among evaluation images."""
    return [hashlib.sha1(x.tobytes()).hexdigest()[:12]
            for chunk in iter_chunks(X) for x in np.ascontiguousarray(chunk)]




def display_path(path) -> str:
    """``path`` as text that any UTF-8 output takes (tables, JSON, HTML, plot titles): a
    file name that is not valid UTF-8 (read by Python as lone surrogates) shows its bad
    bytes as U+FFFD. For showing only: open files by their real ``path``."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


