"""Class folders and image lists: finding the files and loading them (through the cache)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._cache import cached_decode
from ._dicom import is_dicom
from ._images import (
    CLASS_NAMES,
    IMAGE_EXTENSIONS,
    DataError,
    ImageData,
    UnreadableImageWarning,
    image_fingerprints,
    patient_id,
)
from ._streaming import ImageStream, in_memory_limit, release

#: Folder names that are never data (archive debris).
_IGNORED_DIRS = frozenset({"__macosx"})

#: The file that lists, one name a line, the files pneumonia-cnn wrote into its folder
#: (plots, heat maps): never read back as films (site issue, finding 7).
OUTPUT_MARKER = ".pneumonia-cnn-outputs"


def mark_outputs(folder, names) -> None:
    """Record ``names`` (files in ``folder``) as pneumonia-cnn's own outputs, so that no
    data loader reads them as films (a report written into a data folder used to become
    six more "films" of the next evaluation)."""
    marker = Path(folder) / OUTPUT_MARKER
    known = set(marker.read_text().splitlines()) if marker.is_file() else set()
    marker.write_text("".join(f"{n}\n" for n in sorted(known | {Path(n).name for n in names})))

# ---------------------------------------------------------------------------------------------
# Finding files
# ---------------------------------------------------------------------------------------------
def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _IGNORED_DIRS


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list data folder {folder}: {exc.strerror or exc}") from exc
    return [p for p in entries if p.is_dir() and not _is_hidden(p.name)]


def find_class_folders(root: str | os.PathLike, classes: Sequence[str] = CLASS_NAMES) -> dict:
    """Locate the class sub-folders of a data folder.

    Class folders are matched case-insensitively (``normal/`` is ``NORMAL``). If ``root`` has
    no class folders but exactly one ordinary sub-folder (Kaggle's nested
    ``chest_xray/chest_xray/``, or a folder that was unpacked one level deeper), that
    sub-folder is searched instead. ``__MACOSX/`` and hidden folders are ignored. Extra
    folders beside the class folders are ignored with a warning.

    Parameters
    ----------
    root : str or path-like
        The data folder.
    classes : sequence of str, default=("NORMAL", "PNEUMONIA")
        Expected class names.

    Returns
    -------
    dict
        Class name -> folder, in the order of ``classes``.

    Raises
    ------
    DataError
        If ``root`` does not exist, is not a folder, or holds no class folder.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: pass the folder that holds "
                        f"{'/, '.join(classes)}/ sub-folders (e.g. chest_xray/train)")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: pass the folder that holds "
                        f"{'/, '.join(classes)}/ sub-folders (e.g. chest_xray/train)")
    wanted = {c.lower(): c for c in classes}
    folder = root
    for _ in range(3):  # descend through at most a few single-child wrappers
        subdirs = _subdirs(folder)
        found = {wanted[p.name.lower()]: p for p in subdirs if p.name.lower() in wanted}
        if found:
            extra = [p.name for p in subdirs if p.name.lower() not in wanted]
            if extra:
                warnings.warn(f"{folder}: ignoring folder(s) {', '.join(extra)} that are not "
                              f"classes ({', '.join(classes)})", UserWarning, stacklevel=3)
            return {c: found[c] for c in classes if c in found}
        if len(subdirs) != 1:
            break
        folder = subdirs[0]
    names = ", ".join(p.name for p in _subdirs(root)) or "none"
    raise DataError(f"{root} has no class folders: expected sub-folders named "
                    f"{' and '.join(classes)} (any case), found sub-folders: {names}")


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (any depth, sorted; hidden files and folders,
    archive debris and symbolic-link loops skipped; FIFOs and devices never opened)."""
    files, special, reports = [], [], []
    top = os.path.realpath(folder)
    seen = {top}
    # symlinked sub-folders are followed (a data set assembled with links is common), each
    # real folder once: a link back to an ancestor (a loop) is not entered
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            ancestor = top.startswith(real.rstrip(os.sep) + os.sep)
            if not _is_hidden(d) and real not in seen and not ancestor:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        ours = set()
        if OUTPUT_MARKER in filenames:
            try:
                ours = set((Path(dirpath) / OUTPUT_MARKER).read_text().splitlines())
            except (OSError, UnicodeDecodeError):
                ours = set()
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            if name in ours:
                reports.append(str(Path(dirpath) / name))
                continue
            path = Path(dirpath) / name
            if not _regular_or_missing(path):  # a FIFO named x.png would block the read
                special.append(str(path))
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_EXTENSIONS or (not suffix and is_dicom(path)):
                files.append(path)
    if reports:
        warnings.warn(f"skipped {len(reports)} file(s) that pneumonia-cnn wrote as reports "
                      f"(listed in {OUTPUT_MARKER}), first: {reports[0]}; keep reports out of "
                      "data folders", UnreadableImageWarning, stacklevel=3)
    if special:
        warnings.warn(f"skipped {len(special)} entr{'y' if len(special) == 1 else 'ies'} that "
                      f"are not regular files (FIFO, socket or device), first: {special[0]}",
                      UnreadableImageWarning, stacklevel=3)
    return files


def _regular_or_missing(path: Path) -> bool:
    """False for an existing entry that is not a regular file (FIFO, socket, device); a
    broken link stays in the list, to be reported as unreadable with the other files."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _report_skipped(skipped, strict: bool):
    if not skipped:
        return
    listing = "\n".join(f"  {p}: {why}" for p, why in skipped)
    if strict:
        raise DataError(f"{len(skipped)} image file(s) could not be read:\n{listing}\n"
                        "Remove or replace them, or load without strictness (CLI: leave out "
                        "--strict; Python: strict=False) to skip them.")
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s):\n{listing}",
                  UnreadableImageWarning, stacklevel=3)


def load_files(paths: list[str], labels: list[str], image_size: int, *, cache, n_jobs, verbose,
          strict, root=None, stream="auto") -> ImageData:
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise DataError(f"image_size must be an integer >= 8, got {image_size!r}")
    if stream not in ("auto", True, False):
        raise DataError(f"stream must be 'auto', True or False, got {stream!r}")
    if stream is True and not cache:
        raise DataError("stream=True reads images from the on-disk cache: keep cache on")
    X, ok, skipped = cached_decode(paths, int(image_size), cache, n_jobs, verbose)
    _report_skipped(skipped, strict)
    rows = np.flatnonzero(ok)
    mapped = isinstance(X, np.memmap)
    if mapped and (stream is True or (stream == "auto" and len(rows) * int(image_size) ** 2
                                      > in_memory_limit())):
        images = ImageStream(X, None if ok.all() else rows)
    else:
        images = np.array(X) if ok.all() else np.asarray(X)[rows]
        if mapped:
            release(X)
    paths_arr = np.array(paths, dtype=str)[ok]
    return ImageData(
        X=images,
        y=np.array(labels, dtype=str)[ok] if labels else np.array([], dtype=str),
        paths=paths_arr,
        groups=np.array([patient_id(p) for p in paths_arr], dtype=str),
        skipped=skipped,
        root=root,
    )


def load_image_folder(root: str | os.PathLike, image_size: int = 96, *,
                      classes: Sequence[str] = CLASS_NAMES, cache=True, n_jobs: int | None = None,
                      strict: bool = False, verbose: int = 0, stream="auto") -> ImageData:
    """Load every image of a class-per-sub-folder data folder.

    Parameters
    ----------
    root : str or path-like
        Folder with one sub-folder per class, e.g. ``chest_xray/train`` holding ``NORMAL/``
        and ``PNEUMONIA/`` (any case; images may be nested deeper inside them).
    image_size : int, default=96
        Images are resized to ``image_size x image_size``.
    classes : sequence of str, default=("NORMAL", "PNEUMONIA")
        Class folder names to read.
    cache : bool or path-like, default=True
        Cache decoded arrays on disk (in :func:`default_cache_dir`, or in the folder given).
        The cache key covers the file list, file sizes, modification times and image size.
    n_jobs : int or None, default=None
        Decoding threads; None uses every core.
    strict : bool, default=False
        If True an unreadable file is an error; by default it is skipped with one
        :class:`UnreadableImageWarning` listing every skipped file and the reason.
    verbose : int, default=0
        If > 0, print a progress bar while decoding.
    stream : {"auto", True, False}, default="auto"
        Return the images as an :class:`~pneumonia_cnn.data.ImageStream` over the
        memory-mapped cache instead of an array: "auto" does when they take more than
        :func:`~pneumonia_cnn.data.in_memory_limit` (256 MiB by default).

    Returns
    -------
    ImageData

    Raises
    ------
    DataError
        The folder does not exist, has no class folders, or holds no readable image.
    """
    return load_image_folders([root], image_size, root=str(root), classes=classes,
                              cache=cache, n_jobs=n_jobs, strict=strict, verbose=verbose,
                              stream=stream)


def load_image_folders(roots: Sequence[str | os.PathLike], image_size: int = 96, *, root: str,
                       classes: Sequence[str] = CLASS_NAMES, **load_args) -> ImageData:
    """Several class folders (e.g. Kaggle's ``train/`` and ``val/``) loaded as one data set
    (one cache entry), named ``root``; arguments as in :func:`load_image_folder`."""
    paths, labels, where = [], [], []
    for folder_root in roots:
        folders = find_class_folders(folder_root, classes)
        where += [str(f) for f in folders.values()]
        for name, folder in folders.items():
            files = image_files(folder)
            paths += [str(f) for f in files]
            labels += [name] * len(files)
    if not paths:
        raise DataError(f"{root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                        f"in its class folders {', '.join(where)}")
    data = load_files(paths, labels, image_size, root=str(root), **load_args)
    if len(data) == 0:
        raise DataError(f"none of the {len(paths)} image files in {root} could be read "
                        "(see the warning above for the reasons)")
    report_duplicates(data)
    return data


def report_duplicates(data: "ImageData") -> None:
    """Warn about identical images (same decoded pixels: copies, links) in both classes --
    a film cannot be NORMAL and PNEUMONIA -- and, apart, within one class (where copies
    with different patient ids can land on both sides of a validation split)."""
    groups: dict = {}
    for i, f in enumerate(image_fingerprints(data.X)):
        groups.setdefault(f, []).append(i)
    dups = [g for g in groups.values() if len(g) > 1]
    if not dups:
        return
    both = [g for g in dups if len(set(data.y[g])) > 1]
    if both:
        pairs = "\n".join("  " + " = ".join(f"{data.paths[i]} ({data.y[i]})" for i in g)
                          for g in both[:5])
        more = f"\n  ... and {len(both) - 5} more" if len(both) > 5 else ""
        warnings.warn(f"{len(both)} image(s) appear in more than one class (identical pixels: "
                      f"copies or links); a film cannot be both, so the labels are wrong for "
                      f"one copy: remove it\n{pairs}{more}", UserWarning, stacklevel=3)
    same = [g for g in dups if len(set(data.y[g])) == 1]
    if same:
        example = " = ".join(str(data.paths[i]) for i in same[0])
        crossing = [g for g in same if len(set(data.groups[g])) > 1]
        risk = (f"; {len(crossing)} of them under different patient ids, which can put one "
                "film on both sides of a validation split: give copies one patient id or "
                "remove them" if crossing else " (each within one patient: the splits stay "
                "clean)")
        warnings.warn(f"{sum(len(g) - 1 for g in same)} duplicate image(s) within a class "
                      f"(identical pixels, e.g. {example}): they count more than once{risk}",
                      UserWarning, stacklevel=3)


def load_images(paths: Iterable[str | os.PathLike], image_size: int = 96, *, cache=True,
                n_jobs: int | None = None, strict: bool = True, verbose: int = 0,
                stream="auto") -> ImageData:
    """Load a list of image files (no labels).

    Parameters
    ----------
    paths : iterable of str or path-like
        Image files.
    image_size : int, default=96
        Images are resized to ``image_size x image_size``.
    cache, n_jobs, verbose, stream
        As in :func:`load_image_folder`.
    strict : bool, default=True
        Unlike a folder load, an unreadable file is an error by default, so that the output
        rows always match the input list. With False, unreadable files are skipped with a
        warning and ``ImageData.paths`` tells which rows remain.

    Returns
    -------
    ImageData
    """
    if isinstance(paths, (str, bytes, os.PathLike)):  # not a list: one name, char by char
        hint = ("for a folder of class sub-folders use load_image_folder(...)"
                if os.path.isdir(paths) else "pass a list, e.g. load_images([path])")
        raise TypeError(f"load_images takes a list of image files, got one path {paths!r}: "
                        f"{hint}")
    paths = [os.fspath(p) for p in paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing and strict:
        raise DataError(f"{len(missing)} image file(s) do not exist or are not files, "
                        f"first: {missing[0]}")
    return load_files(paths, [], image_size, cache=cache, n_jobs=n_jobs, verbose=verbose,
                 strict=strict, stream=stream)


