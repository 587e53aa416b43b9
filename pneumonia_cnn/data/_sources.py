"""Data sources: every form a chest X-ray data set comes in, loaded as one :class:`ImageData`.

:func:`load_data` takes

- a **class folder**: ``NORMAL/`` and ``PNEUMONIA/`` sub-folders (``chest_xray/train``);
- a **split root**: Kaggle's layout ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` (or the
  downsampled one with ``train/`` and ``val/`` only);
- a **MedMNIST file** (``pneumoniamnist.npz``, ``pneumoniamnist_224.npz``): arrays
  ``train_images``, ``train_labels``, ``val_*``, ``test_*``; label 0 = NORMAL, 1 = PNEUMONIA.
  Nothing is downloaded: the file is read where the user put it;
- a **CSV of labels** ``path,label[,patient]`` (the form NIH ChestX-ray14, CheXpert and RSNA
  ship theirs in), with ``label_map`` to turn their label strings into NORMAL / PNEUMONIA.

A split of a split root or a MedMNIST file is chosen with a suffix, ``chest_xray:test`` or
``pneumoniamnist.npz:val`` (``train+val`` joins two), or by the role of the command: data to
**train** on is ``train`` plus ``val`` where there is one, data to **evaluate** on is
``test``. The loaded :class:`ImageData` says which in ``root`` (``chest_xray/train+val``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ._folders import (
    find_class_folders,
    load_files,
    load_image_folder,
    load_image_folders,
    load_images,
    report_duplicates,
)
from ._images import CLASS_NAMES, DataError, ImageData, canonical_labels, is_path_list

__all__ = ["SPLITS", "is_data_file", "load_csv", "load_data", "parse_source", "source_kind",
           "evaluation_split", "load_any", "check_source"]

#: Split names of split roots and MedMNIST files.
SPLITS = ("train", "val", "test")
#: The split(s) each role reads when the source has several and none is named.
ROLE_SPLITS = {"train": ("train", "val"), "evaluate": ("test",)}

#: Column names recognised in a CSV header (lower case), most specific first.
PATH_COLUMNS = ("path", "image_path", "image index", "image", "filename", "file", "dicom")
LABEL_COLUMNS = ("label", "labels", "finding labels", "class", "target", "diagnosis")
PATIENT_COLUMNS = ("patient", "patient_id", "patient id", "patientid", "subject_id")


def parse_source(source) -> tuple[Path, tuple | None]:
    """Split ``"data.npz:test"`` into ``(Path("data.npz"), ("test",))``; a source without a
    split suffix gives ``(path, None)``. ``train+val`` gives ``("train", "val")``."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists() or ":" not in text:
        return path, None
    head, _, tail = text.rpartition(":")
    parts = tuple(p.strip().lower() for p in tail.split("+"))
    if not all(p in SPLITS for p in parts):
        raise DataError(f"{text}: the part after ':' must be a split ({', '.join(SPLITS)}, or "
                        f"two joined with '+'), got {tail!r}")
    return Path(head).expanduser(), parts


def _is_split_root(path: Path) -> bool:
    return path.is_dir() and any((path / s).is_dir() for s in SPLITS) and not any(
        p.name.lower() in {c.lower() for c in CLASS_NAMES} for p in path.iterdir() if p.is_dir())


def is_data_file(path) -> bool:
    """A file that holds a data set (a MedMNIST ``.npz``, a label CSV), not one image."""
    return Path(path).suffix.lower() in (".npz", ".csv", ".tsv")


def source_kind(path: Path) -> str:
    """``"folder"``, ``"splits"`` (Kaggle's layout), ``"medmnist"`` or ``"csv"``."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "medmnist"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "splits" if _is_split_root(path) else "folder"


def check_source(source, role: str | None = "train", *, label_map=None, columns=None,
                 image_root=None) -> tuple:
    """Check a data source as :func:`load_data` reads it, without reading an image: it
    exists, its split(s) for ``role`` exist, CSV-only options go with a CSV, a class folder
    has its class sub-folders. Fast: the command line calls it before loading TensorFlow.

    Returns
    -------
    (pathlib.Path, str, tuple)
        The path, its kind (:func:`source_kind`) and the split(s) to read (empty for a
        folder or a CSV).

    Raises
    ------
    DataError
        What :func:`load_data` would raise for these reasons, with what to pass instead.
    """
    path, splits = parse_source(source)
    if not path.exists():
        raise DataError(f"{path} does not exist: pass a class folder (NORMAL/, PNEUMONIA/), "
                        "a split root (train/, test/), a MedMNIST .npz or a CSV of labels")
    kind = source_kind(path)
    if kind in ("folder", "csv") and splits:
        raise DataError(f"{source}: only a split root (train/, val/, test/ folders) or a "
                        f"MedMNIST .npz has splits; pass {path} without ':{'+'.join(splits)}'")
    csv_only = {"label_map (--label-map)": label_map, "columns (--columns)": columns,
                "image_root (--image-root)": image_root}
    unused = [name for name, value in csv_only.items() if value is not None]
    if kind != "csv" and unused:  # ignoring them would read the data another way than asked
        raise DataError(f"{', '.join(unused)} apply to CSV label files only, and {path} is "
                        "not one: drop them, or pass the CSV")
    if kind == "folder":
        find_class_folders(path)
        return path, kind, ()
    if kind == "csv":
        return path, kind, ()
    available = _available_splits(path, kind)
    splits = splits or _role_splits(path, role, available)
    missing = [s for s in splits if s not in available]
    if missing:
        raise DataError(f"{path} has no {' or '.join(missing)} split (it has "
                        f"{', '.join(available) or 'none'}): name one, e.g. {path}:"
                        f"{available[0] if available else 'train'}")
    if kind == "splits":
        for s in splits:
            find_class_folders(path / _split_dir(path, s))
    return path, kind, tuple(splits)


def load_data(source, image_size: int = 96, *, role: str | None = "train", label_map=None,
              columns=None, image_root=None, cache=True, n_jobs=None, strict: bool = False,
              verbose: int = 0, stream="auto") -> ImageData:
    """Load labelled chest X-rays from any supported source (see the module docstring).

    Parameters
    ----------
    source : str or path-like
        A class folder, a split root, a MedMNIST ``.npz`` or a CSV file, optionally with a
        split suffix: ``chest_xray:test``, ``pneumoniamnist.npz:train+val``.
    image_size : int, default=96
        Images are resized to ``image_size x image_size``.
    role : {"train", "evaluate"} or None, default="train"
        Which split(s) a source with several reads when none is named: ``train`` reads
        train + val, ``evaluate`` reads test. None: a split must be named.
    label_map : dict or None, default=None
        CSV only: label string -> ``"NORMAL"`` / ``"PNEUMONIA"``, e.g. ``{"No Finding":
        "NORMAL", "Pneumonia": "PNEUMONIA"}``. Multi-label strings (``"Pneumonia|Effusion"``,
        as NIH writes them) are PNEUMONIA when any part maps to PNEUMONIA and NORMAL when
        every part maps to NORMAL; other rows are left out, with a warning that counts them.
        None: the labels must already be NORMAL / PNEUMONIA (any case) or 0 / 1.
    columns : sequence of str or None, default=None
        CSV only: the path, label and (optional) patient column names. None: recognised
        from the header (``path``, ``Image Index``, ``label``, ``Finding Labels``,
        ``Patient ID``...), else the first two or three columns.
    image_root : str or path-like or None, default=None
        CSV only: the folder relative paths start from; default the CSV's folder.
    cache, n_jobs, strict, verbose, stream
        As in :func:`~pneumonia_cnn.data.load_image_folder`.

    Returns
    -------
    ImageData
        ``root`` names the source and split(s), e.g. ``chest_xray/train+val``.

    Raises
    ------
    DataError
        The source does not exist, lacks the split, or its labels cannot be read; the
        message says what to pass instead.
    """
    path, kind, splits = check_source(source, role, label_map=label_map, columns=columns,
                                      image_root=image_root)
    loader_args = dict(cache=cache, n_jobs=n_jobs, strict=strict, verbose=verbose,
                       stream=stream)
    if kind == "folder":
        return load_image_folder(path, image_size, **loader_args)
    if kind == "csv":
        return load_csv(path, image_size, label_map=label_map, columns=columns,
                        image_root=image_root, **loader_args)
    if kind == "splits":
        return load_image_folders([path / _split_dir(path, s) for s in splits], image_size,
                                  root=str(path / "+".join(splits)), **loader_args)
    parts = [_load_medmnist(path, s, image_size) for s in splits]
    data = parts[0] if len(parts) == 1 else ImageData.concat(parts)
    data.root = f"{path}:{'+'.join(splits)}"
    report_duplicates(data)
    warnings.warn(f"{path.name}: MedMNIST files carry no patient ids, so every image counts as "
                  "its own patient; PneumoniaMNIST holds several films of some children, so "
                  "a validation split of it can put one child on both sides and read "
                  "optimistic", UserWarning, stacklevel=2)
    return data


def evaluation_split(source) -> str | None:
    """The test split of a source that has one and was given without a split
    (``chest_xray`` -> ``chest_xray:test``), else None."""
    path, splits = parse_source(source)
    if splits or not path.exists():
        return None
    kind = source_kind(path)
    if kind not in ("splits", "medmnist"):
        return None
    return f"{path}:test" if "test" in _available_splits(path, kind) else None


def _split_dir(root: Path, split: str) -> str:
    return next(p.name for p in root.iterdir() if p.is_dir() and p.name.lower() == split)


def _available_splits(path: Path, kind: str) -> list:
    if kind == "medmnist":
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
        found = [s for s in SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
        if not found:
            raise DataError(f"{path} is not a MedMNIST file: expected arrays train_images, "
                            f"train_labels, val_*, test_*; found {', '.join(sorted(keys))}")
        return found
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    return [s for s in SPLITS if s in names]


def _role_splits(path: Path, role, available) -> tuple:
    if role not in ROLE_SPLITS:
        raise DataError(f"{path} holds several splits ({', '.join(available)}): name the one "
                        f"to use, e.g. {path}:{available[-1]}")
    wanted = ROLE_SPLITS[role]
    if wanted[0] not in available:
        raise DataError(f"{path} has no {wanted[0]} split to {role} on (it has "
                        f"{', '.join(available)}): name one, e.g. {path}:{available[0]}")
    return tuple(s for s in wanted if s in available)


# ---------------------------------------------------------------------------------------------
# MedMNIST
# ---------------------------------------------------------------------------------------------
def _load_medmnist(path: Path, split: str, image_size: int) -> ImageData:
    from PIL import Image

    with np.load(path, allow_pickle=False) as z:
        images, labels = z[f"{split}_images"], z[f"{split}_labels"]
    if len(labels) != len(images):  # joined splits would shift labels onto other images
        raise DataError(f"{path}: {split}_labels holds {len(labels)} labels for "
                        f"{len(images)} images in {split}_images; the file is damaged or not "
                        "a MedMNIST file: download it again")
    labels = np.asarray(labels).reshape(len(labels), -1)
    if labels.shape[1] != 1 or not set(np.unique(labels).tolist()) <= {0, 1}:
        raise DataError(f"{path}: {split}_labels must be one 0 (normal) or 1 (pneumonia) per "
                        f"image, got shape {labels.shape} with values "
                        f"{np.unique(labels).tolist()[:5]}: is this PneumoniaMNIST?")
    if images.ndim == 4 and images.shape[-1] == 3:  # an RGB MedMNIST set: luminance
        images = np.rint(images @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: {split}_images must be uint8 images (n, height, width), got "
                        f"{images.dtype} {images.shape}")
    X = np.empty((len(images), image_size, image_size, 1), np.uint8)
    for i, img in enumerate(images):  # Pillow's antialiased resize, as for image files
        X[i, :, :, 0] = np.asarray(Image.fromarray(img).resize(
            (image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None))
    names = np.array([f"{path}:{split}/{i}" for i in range(len(X))])
    return ImageData(X=X, y=canonical_labels(labels[:, 0]), paths=names, groups=names.copy(),
                     root=f"{path}:{split}")


# ---------------------------------------------------------------------------------------------
# CSV label files
# ---------------------------------------------------------------------------------------------
def _pick(header: list, wanted: tuple, given) -> str | None:
    if given:
        if given not in header:
            raise DataError(f"column {given!r} is not in the CSV (columns: "
                            f"{', '.join(header)})")
        return given
    lower = {h.lower().strip(): h for h in header}
    return next((lower[w] for w in wanted if w in lower), None)


def _read_csv(path: Path, columns):
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    header = [str(c) for c in table.columns]
    if columns is not None and len(columns) not in (2, 3):
        raise DataError(f"columns must name 2 or 3 CSV columns (path, label[, patient]), got "
                        f"{list(columns)}")
    given = list(columns or []) + [None] * 3
    names = [_pick(header, PATH_COLUMNS, given[0]), _pick(header, LABEL_COLUMNS, given[1]),
             _pick(header, PATIENT_COLUMNS, given[2])]
    if names[0] is None or names[1] is None:
        first = header[0] if header else ""
        if not Path(first).suffix:  # a header we do not know: the first columns, in order
            names = [header[0], header[1] if len(header) > 1 else None,
                     names[2] or (header[2] if len(header) > 2 else None)]
        else:  # no header at all: the first row is data
            table = pd.read_csv(path, sep=sep, dtype=str, header=None, keep_default_na=False)
            table.columns = [str(c) for c in table.columns]
            names = ["0", "1" if table.shape[1] > 1 else None,
                     "2" if table.shape[1] > 2 else None]
    if names[1] is None:
        raise DataError(f"{path}: a label CSV needs at least two columns, path and label "
                        "(and optionally patient)")
    return table, names


def _most_common(values, k: int) -> str:
    """``'a' (12), 'b' (3)``: the ``k`` most frequent values with their counts."""
    names, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return ", ".join(f"{str(v)!r} ({c})" for c, v in sorted(zip(counts, names),
                                                          reverse=True)[:k])


def _map_labels(raw: np.ndarray, label_map, path: Path) -> np.ndarray:
    """NORMAL / PNEUMONIA per row, or "" for rows the map leaves out."""
    if label_map is None:
        stripped = np.char.strip(raw.astype(str))
        if set(np.unique(stripped).tolist()) <= {"0", "1", "0.0", "1.0"}:  # a CSV's 0 / 1
            raw = stripped.astype(float)
        try:
            return canonical_labels(raw)
        except ValueError:
            top = _most_common(raw, 6)
            raise DataError(f"{path}: the labels are not NORMAL / PNEUMONIA or 0 / 1 (found "
                            f"{top}); map them with label_map (CLI: --label-map '{{\"No "
                            "Finding\": \"NORMAL\", \"Pneumonia\": \"PNEUMONIA\"}')") from None
    targets = {str(k): str(v).upper() for k, v in dict(label_map).items()}
    bad = {k: v for k, v in targets.items() if v not in CLASS_NAMES}
    if bad:
        raise DataError(f"label_map values must be NORMAL or PNEUMONIA, got {bad}")
    out = []
    for value in raw:
        parts = [targets.get(p.strip()) for p in str(value).split("|")]
        if "PNEUMONIA" in parts:
            out.append("PNEUMONIA")
        elif parts and all(p == "NORMAL" for p in parts):
            out.append("NORMAL")
        else:
            out.append("")
    return np.array(out, dtype=str)


def load_csv(path, image_size: int = 96, *, label_map=None, columns=None, image_root=None,
             cache=True, n_jobs=None, strict: bool = False, verbose: int = 0,
             stream="auto") -> ImageData:
    """Load the images a CSV of ``path,label[,patient]`` rows names (see :func:`load_data`).

    Relative paths start at ``image_root`` (default: the CSV's folder); a path without an
    extension that names no file is tried with ``.dcm`` (RSNA's ``patientId`` column). Rows
    repeating a path (one per finding box, as RSNA writes) count once; a path given two
    different labels is refused. Patient ids come from the patient column, else from the
    file names as for a folder.
    """
    path = Path(path)
    table, (path_col, label_col, patient_col) = _read_csv(path, columns)
    base = Path(image_root).expanduser() if image_root else path.parent
    labels = _map_labels(table[label_col].to_numpy(dtype=str), label_map, path)
    left_out = labels == ""
    if left_out.any():
        top = _most_common(table[label_col].to_numpy(dtype=str)[left_out], 5)
        if left_out.all():
            raise DataError(f"{path}: no label maps to NORMAL or PNEUMONIA with label_map="
                            f"{label_map}; labels found: {top}")
        warnings.warn(f"{path}: {int(left_out.sum())} of {len(labels)} rows have labels "
                      f"label_map does not map to NORMAL or PNEUMONIA and are left out: {top}",
                      UserWarning, stacklevel=2)
    files, keep_labels, patients, seen = [], [], [], {}
    for i in np.flatnonzero(~left_out):
        name = str(table[path_col].iloc[i]).strip()
        file = Path(name).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.suffix and not file.exists() and file.with_suffix(".dcm").exists():
            file = file.with_suffix(".dcm")
        key = str(file)
        if key in seen:
            if seen[key] != labels[i]:
                raise DataError(f"{path}: {name} is labelled both {seen[key]} and {labels[i]}; "
                                "a film has one label: fix the CSV")
            continue
        seen[key] = labels[i]
        files.append(key)
        keep_labels.append(labels[i])
        patients.append(str(table[patient_col].iloc[i]).strip() if patient_col else "")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing and len(missing) == len(files):
        raise DataError(f"{path}: none of its {len(files)} image files exist (first: "
                        f"{missing[0]}); relative paths start at {base}: pass image_root "
                        "(CLI: --image-root) if the images are elsewhere")
    data = load_files(files, keep_labels, image_size, cache=cache, n_jobs=n_jobs, verbose=verbose,
                 strict=strict, root=str(path), stream=stream)
    if len(data) == 0:
        raise DataError(f"none of the {len(files)} image files {path} names could be read "
                        "(see the warning above for the reasons)")
    if patient_col:
        by_file = dict(zip(files, patients))
        data.groups = np.array([by_file[p] or p for p in data.paths], dtype=str)
    if len(set(data.y.tolist())) < 2:
        warnings.warn(f"{path}: every loaded image is {data.y[0]}; training needs both "
                      "classes", UserWarning, stacklevel=2)
    report_duplicates(data)
    return data


def load_any(X, image_size: int, verbose: int = 0, role: str = "evaluate") -> ImageData | None:
    """Load ``X`` when it names images: an :class:`ImageData` as it is, a data source
    (folder, split root, MedMNIST ``.npz``, label CSV; see :func:`pneumonia_cnn.data.
    load_data`, which reads the splits of ``role``), one image file or a list of image
    files. Returns None for anything else (image arrays)."""
    if isinstance(X, ImageData):
        return X
    if isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if path.is_file() and not is_data_file(path):
            return load_images([path], image_size)
        return load_data(X, image_size, role=role, verbose=verbose)
    if is_path_list(X):
        return load_images(list(X), image_size)
    return None


