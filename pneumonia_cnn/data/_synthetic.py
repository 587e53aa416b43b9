"""A small built-in SYNTHETIC chest-X-ray-like data set, for demos and tests.

These images are drawn, not photographed: a bright torso with two dark lung fields, a spine,
ribs and noise; "PNEUMONIA" images add soft bright opacities inside the lungs. They let the
whole pipeline run on a fresh machine with no data, and they say nothing about how a model
does on real radiographs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_synthetic_xray", "make_synthetic_dataset", "SYNTHETIC_MARKER", "is_synthetic"]

#: File written at the root of every synthetic data set, so that it cannot pass for real data.
SYNTHETIC_MARKER = "SYNTHETIC_DATA_README.txt"


def make_synthetic_xray(rng: np.random.Generator, size: int = 128,
                        pneumonia: bool = False, return_mask: bool = False,
                        opacity: float = 0.25):
    """Draw one synthetic chest-X-ray-like image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    size : int, default=128
        Side of the square image.
    pneumonia : bool, default=False
        Add 1-3 opacities inside the lung fields.

    opacity : float, default=0.25
        Peak brightness the opacities add (0-1 scale; the lung fields are about 0.22).
    return_mask : bool, default=False
        Also return where the opacities are: a boolean mask (empty for NORMAL) of the pixels
        where they add more than a fifth of their peak brightness, to check where an
        explanation looks.

    Returns
    -------
    ndarray of uint8, shape (size, size)
        And the mask, with ``return_mask``.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx = 0.5 + rng.normal(0, 0.02)
    img = np.full((size, size), 0.08, np.float32)
    torso = ((xx - cx) / 0.42) ** 2 + ((yy - 0.55) / 0.55) ** 2 < 1
    img[torso] = 0.55 + rng.normal(0, 0.03)
    lungs = np.zeros_like(img, dtype=bool)
    for side in (-1, 1):
        lx = cx + side * (0.17 + rng.normal(0, 0.01))
        lung = ((xx - lx) / (0.13 + rng.normal(0, 0.01))) ** 2 + \
               ((yy - 0.5) / (0.3 + rng.normal(0, 0.015))) ** 2 < 1
        lungs |= lung
    img[lungs] = 0.22 + rng.normal(0, 0.02)
    ribs = 0.05 * (np.sin(yy * 2 * np.pi * 9 + rng.uniform(0, 6)) > 0.6)
    img += ribs * lungs
    img[np.abs(xx - cx) < 0.035] += 0.25  # spine / mediastinum
    lesion = np.zeros_like(img)
    if pneumonia:
        ly, lx = np.nonzero(lungs)
        for _ in range(rng.integers(1, 4)):
            k = rng.integers(len(ly))
            oy, ox = ly[k] / size, lx[k] / size
            r = rng.uniform(0.05, 0.11)
            lesion += opacity * np.exp(-(((xx - ox) ** 2 + (yy - oy) ** 2) / (2 * r * r))) * lungs
    img += lesion
    img += rng.normal(0, 0.03, img.shape)
    out = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if return_mask:
        return out, lesion > 0.05
    return out


def make_synthetic_dataset(root, n_normal: int = 40, n_pneumonia: int = 80, size: int = 128,
                           random_state: int = 0, images_per_patient: int = 2,
                           opacity: float = 0.25) -> Path:
    """Write a synthetic data set in Kaggle's layout: ``root/NORMAL``, ``root/PNEUMONIA``.

    File names follow Kaggle's patterns (``IM-0001-0001.jpeg``,
    ``person1_bacteria_1.jpeg``) so that patient ids parse as for real data; a
    ``SYNTHETIC_DATA_README.txt`` at the root says the images are synthetic.

    Parameters
    ----------
    root : str or path-like
        Folder to create (or fill).
    n_normal, n_pneumonia : int, default=40, 80
        Images per class (the real data's ratio is about 1:3).
    size : int, default=128
        Image side.
    random_state : int, default=0
        Seed.
    images_per_patient : int, default=2
        Consecutive images share a patient id.
    opacity : float, default=0.25
        Peak brightness of the PNEUMONIA opacities (see :func:`make_synthetic_xray`): the
        demo of ``pneumonia-cnn run`` draws them brighter, so that it learns them quickly.

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(random_state)
    (root / "NORMAL").mkdir(parents=True, exist_ok=True)
    (root / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
    (root / SYNTHETIC_MARKER).write_text(
        "SYNTHETIC images drawn by pneumonia_cnn.data: not real radiographs.\n"
        "Results on them say nothing about real chest X-rays.\n")
    for i in range(n_normal):
        name = f"IM-{i // images_per_patient + 1:04d}-{i % images_per_patient + 1:04d}.jpeg"
        Image.fromarray(make_synthetic_xray(rng, size, False)).save(root / "NORMAL" / name,
                                                                     quality=92)
    for i in range(n_pneumonia):
        kind = "bacteria" if i % 3 else "virus"
        name = f"person{i // images_per_patient + 1}_{kind}_{i + 1}.jpeg"
        image = make_synthetic_xray(rng, size, True, opacity=opacity)
        Image.fromarray(image).save(root / "PNEUMONIA" / name, quality=92)
    return root


def is_synthetic(root) -> bool:
    """True if ``root`` (a data folder, or a class folder inside one) was written by
    :func:`make_synthetic_dataset`."""
    if root is None:
        return False
    path = Path(root)
    return any((p / SYNTHETIC_MARKER).is_file() for p in (path, *list(path.parents)[:2]))
