"""Loading chest X-rays from a folder tree (or a list of files) into arrays.

A data folder holds one sub-folder per class (``NORMAL/`` and ``PNEUMONIA/``, matched
case-insensitively), as in Kaggle's ``chest_xray/train``. :func:`load_image_folder` turns it
into a :class:`ImageData`: a uint8 array ``X`` of shape ``(n, size, size, 1)``, the class
name of every image, its path and its patient id (for patient-grouped splits).

Images are decoded with Pillow (pydicom for DICOM) on all cores, once: the result is cached
on disk under a key made of the file list, their sizes and modification times and the image
size, so that a second load of the same folder is a single ``np.load``. Decoding saves its
progress every few hundred images, so an interrupted load of a large folder resumes where it
stopped. Data too large to hold in memory comfortably is returned as an
:class:`~pneumonia_cnn.streaming.ImageStream` over the memory-mapped cache (see
:mod:`pneumonia_cnn.streaming`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom import dicom_patient_id, is_dicom, read_dicom
from .limits import MAX_PIXELS, check_pixel_budget  # noqa: F401 (re-exported)
from .streaming import ImageStream, in_memory_limit, iter_chunks, release

__all__ = [
    "CLASS_NAMES",
    "DataError",
    "ImageData",
    "UnreadableImageWarning",
    "decode_image",
    "find_class_folders",
    "grouped_split",
    "image_fingerprints",
    "is_path_list",
    "load_any",
    "load_image_folder",
    "load_image_folders",
    "load_images",
    "patient_id",
]

#: Class names, in the order of ``classes_`` (sorted, so PNEUMONIA is the positive class).
CLASS_NAMES = ("NORMAL", "PNEUMONIA")

#: File extensions that are read as images (lower case).
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".dcm", ".dicom"})

#: Folder names that are never data (archive debris).
_IGNORED_DIRS = frozenset({"__macosx"})

_CACHE_VERSION = 3
#: Images decoded between two saves of a resumable decode's progress.
_DECODE_STEP = 512


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
        Grayscale pixel values 0-255; an :class:`~pneumonia_cnn.streaming.ImageStream` (the
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
    own patient (the file name without extension).

    Parameters
    ----------
    path : str or path-like
        File path or name.

    A DICOM file's patient is its ``PatientID`` tag, else its ``StudyInstanceUID`` (see
    :mod:`pneumonia_cnn.dicom`), whatever the file is called.

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


def _image_files(folder: Path) -> list[Path]:
    files, special = [], []
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
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            path = Path(dirpath) / name
            if not _regular_or_missing(path):  # a FIFO named x.png would block the read
                special.append(str(path))
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_EXTENSIONS or (not suffix and is_dicom(path)):
                files.append(path)
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


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def decode_image(path: str | os.PathLike, image_size: int, notes: list | None = None
                 ) -> np.ndarray:
    """Decode one image file into a ``(image_size, image_size)`` uint8 grayscale array.

    Any mode Pillow reads is accepted: 8-bit grayscale, RGB, RGBA (alpha dropped), palette,
    CMYK, 16-bit and 32-bit integer and floating-point grayscale. The EXIF orientation of a
    photo is applied. Deeper-than-8-bit pixels are scaled by the bit depth the data has:
    the file's own metadata (a PNG ``sBIT`` chunk, a TIFF ``MaxSampleValue``), else the
    smallest of 8, 10, 12, 14 or 16 bits that holds its largest value (so 12-bit data in a
    16-bit file is not shown nearly black); floating-point pixels 0-1 are scaled by 255. The
    whole image is resized to a square (aspect ratio is not kept, as is usual for chest
    X-rays); JPEGs are decoded at a reduced scale first when that is still larger than the
    target, which is several times faster.

    Parameters
    ----------
    notes : list, default=None
        If given, ``(kind, message)`` pairs are appended for every guess made (a bit depth
        taken from the values, a very elongated image): the loaders report them.

    Raises
    ------
    OSError, ValueError, PIL.UnidentifiedImageError, Image.DecompressionBombError
        If the file is not a readable image, or holds several frames (an animation, a
        multi-page TIFF): which frame was meant cannot be guessed.
    """
    from PIL import ImageOps

    def note(kind, message):
        if notes is not None:
            notes.append((kind, message))

    if is_dicom(path):  # pydicom: modality and VOI LUTs, MONOCHROME1 (see pneumonia_cnn.dicom)
        gray = Image.fromarray(read_dicom(path))
        return _to_square(gray, gray.size, image_size, note)
    with Image.open(path) as img:
        check_pixel_budget(*img.size)  # from the header, before any pixel is decoded
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            raise ValueError(f"{frames} frames (an animation or a multi-page file): one image "
                             "per file is expected; export the frame to use as its own file")
        stored_size = img.size  # as stored (a JPEG draft below decodes at a reduced size)
        if img.format == "JPEG":
            img.draft("L", (image_size, image_size))
        if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: as the photo is meant
            img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            if not np.isfinite(arr).all():
                raise ValueError("pixel values include NaN or infinity")
            top = _white_level(img, arr, path, note)
            img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
        elif img.mode != "L":
            img = img.convert("L")
        return _to_square(img, stored_size, image_size, note)


def _to_square(img, stored_size, image_size: int, note) -> np.ndarray:
    """An 8-bit grayscale image resized to ``image_size`` square (noting a very elongated
    one, of ``stored_size``, that gets stretched)."""
    w, h = stored_size
    if max(w, h) > 3 * max(min(w, h), 1):
        note("elongated", f"{w}x{h} pixels, stretched to a square")
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def _white_level(img, arr: np.ndarray, path, note) -> float:
    """The value that is white in a deeper-than-8-bit image: from the file's metadata, else
    from its values (noted)."""
    if img.mode == "F":
        hi = float(arr.max(initial=0.0))
        if hi <= 1.0:
            return 1.0
        if hi <= 255.0:
            return 255.0
    bits = _significant_bits(img, path)
    if bits:
        return float(2 ** bits - 1)
    hi = float(arr.max(initial=0.0))
    needed = max(int(np.ceil(np.log2(hi + 1))), 8) if hi > 0 else 8
    depth = next((d for d in (8, 10, 12, 14, 16) if d >= needed), needed)
    if depth < (16 if img.mode.startswith("I;16") else 32):
        note("bit_depth", f"no bit depth in the file: {depth}-bit assumed from its largest "
                          f"value {hi:g}")
    return float(2 ** depth - 1)


def _significant_bits(img, path) -> int | None:
    """Bits actually used, when the file says: PNG ``sBIT``, TIFF ``MaxSampleValue``."""
    if img.format == "TIFF":
        top = getattr(img, "tag_v2", {}).get(281)
        top = top[0] if isinstance(top, tuple) else top
        if top and int(top) < 65535:
            return int(np.ceil(np.log2(int(top) + 1)))
        return None
    if img.format != "PNG":
        return None
    import struct

    # the same reading for a file on disk and for request bytes (a file object): the
    # served model and the CLI must see the same pixels
    if isinstance(path, (str, os.PathLike)):
        source, close, back = open(path, "rb"), True, None
    elif hasattr(path, "read") and hasattr(path, "seek"):
        source, close, back = path, False, path.tell()
    else:
        return None
    try:  # chunks before the image data: read until IDAT
        source.seek(8)
        while True:
            head = source.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"sBIT":
                data = source.read(length)
                return int(data[0]) if data and 0 < data[0] < 16 else None
            if kind in (b"IDAT", b"IEND"):
                return None
            source.seek(length + 4, 1)
    finally:
        if close:
            source.close()
        else:
            source.seek(back)


def _decode_or_reason(path: str, image_size: int):
    notes: list = []
    try:
        return decode_image(path, image_size, notes), None, notes
    except (OSError, ValueError, SyntaxError, ImportError, UnidentifiedImageError,
            Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        return None, f"{type(exc).__name__}: {reason}", notes


class _PlainProgress:
    """Progress as plain lines (one per quarter of the work), for output that is not a
    terminal: Keras' progress bar writes ANSI colour and cursor codes into logs."""

    def __init__(self, n: int, start: int = 0):
        self.n, self.next = n, 0.25

    def update(self, k: int) -> None:
        if self.n and k / self.n >= self.next:
            print(f"  decoded {k} of {self.n} images", flush=True)
            while k / self.n >= self.next:
                self.next += 0.25


def _decode_into(X, ok, done, paths: Sequence[str], image_size: int, n_jobs, verbose,
                 skipped: list, noted: list, save=None) -> None:
    """Decode the images not yet ``done`` into ``X`` on all cores, ``_DECODE_STEP`` at a
    time; after each step ``save()`` records the progress (a resumable cache entry)."""
    n = len(paths)
    todo = np.flatnonzero(~done)
    workers = n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
    bar = None
    if verbose and len(todo):
        import keras  # local: keep `import pneumonia_cnn.data` light

        resumed = n - len(todo)
        print(f"Decoding {len(todo)} images at {image_size}x{image_size}"
              + (f" ({resumed} of {n} were decoded before: resuming)" if resumed else ""))
        if sys.stdout.isatty():
            bar = keras.utils.Progbar(n, unit_name="image")
            bar.update(resumed)
        else:  # a log file or a pipe: plain lines, no terminal control codes
            bar = _PlainProgress(n, resumed)
    # Pillow releases the GIL while decoding and resizing, so threads use every core
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(todo), _DECODE_STEP):
            rows = todo[start:start + _DECODE_STEP]
            for i, (arr, reason, notes) in zip(rows, pool.map(
                    lambda i: _decode_or_reason(paths[i], image_size), rows)):
                noted += [(paths[i], kind, msg) for kind, msg in notes]
                if arr is None:
                    skipped.append((paths[i], reason))
                else:
                    X[i, :, :, 0] = arr
                    ok[i] = True
            done[rows] = True
            if save is not None:
                save()
            if bar is not None:
                bar.update(int(done.sum()))


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """Where decoded images are cached: ``$PNEUMONIA_CNN_CACHE_DIR`` or
    ``~/.cache/pneumonia-cnn``."""
    env = os.environ.get("PNEUMONIA_CNN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pneumonia-cnn"


def display_path(path) -> str:
    """``path`` as text that any UTF-8 output takes (tables, JSON, HTML, plot titles): a
    file name that is not valid UTF-8 (read by Python as lone surrogates) shows its bad
    bytes as U+FFFD. For showing only: open files by their real ``path``."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _cache_key(paths: Sequence[str], image_size: int) -> str:
    """The cache entry of these files at this size.

    Each file counts by its **resolved** path (the same relative folder name in two working
    directories is two entries), as bytes (a name that is not valid UTF-8 is still a name),
    and by its size, modification time, inode and **change time**: a file rewritten in
    place with the same size and the same modification time (``cp -p``, ``rsync -t``, an
    archive extracted again, ``touch -r``) gets a new change time, which no tool can set
    back, so its stale pixels are never served. A ``chmod`` or rename also changes it: that
    costs a new decode, never a wrong image.
    """
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{image_size}".encode())
    for p in paths:
        real = os.fsencode(os.path.realpath(p))
        try:
            st = os.stat(p)
            h.update(b"|" + real + f"|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|"
                                   f"{st.st_dev}:{st.st_ino}".encode())
        except OSError:
            h.update(b"|" + real + b"|missing")
    return h.hexdigest()[:32]


def _atomic_save(path: Path, arr) -> None:
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


@contextlib.contextmanager
def _entry_lock(entry: Path):
    """One process decodes an entry at a time; the others wait, then read its result."""
    try:
        import fcntl
    except ImportError:  # not POSIX: entries are still written atomically step by step
        yield
        return
    with open(entry / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_entry(entry: Path, n: int, image_size: int):
    """A finished cache entry: ``(X memory-mapped, ok, skipped)``; raises if damaged."""
    meta = json.loads((entry / "complete.json").read_text())
    X = np.load(entry / "X.npy", mmap_mode="r")
    ok = np.load(entry / "ok.npy")
    if len(ok) != n or X.shape != (n, image_size, image_size, 1):
        raise ValueError(f"it holds {X.shape} images for {n} files")
    _report_notes(meta["noted"])  # the guesses of the first decoding, again
    return X, ok, [tuple(s) for s in meta["skipped"]]


def _cached_decode(paths: Sequence[str], image_size: int, cache, n_jobs, verbose):
    """Decoded images ``(X, ok, skipped)``: X is memory-mapped from the cache entry (a
    folder ``<key>/`` with ``X.npy``), or an in-memory array without a cache."""
    n = len(paths)
    if not cache:
        X = np.zeros((n, image_size, image_size, 1), dtype=np.uint8)
        ok, skipped, noted = np.zeros(n, bool), [], []
        _decode_into(X, ok, np.zeros(n, bool), paths, image_size, n_jobs, verbose, skipped,
                     noted)
        _report_notes(noted)
        return X, ok, skipped
    entry = (default_cache_dir() if cache is True else Path(cache)) / _cache_key(paths,
                                                                                  image_size)
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(f"could not create the image cache {entry}: {exc}; decoding without it",
                      stacklevel=3)
        return _cached_decode(paths, image_size, False, n_jobs, verbose)
    with _entry_lock(entry):
        if (entry / "complete.json").is_file():
            try:
                return _read_entry(entry, n, image_size)
            except Exception as exc:  # truncated file, bad header, wrong content: rebuild it
                warnings.warn(f"the image cache entry {entry} is damaged ({type(exc).__name__}"
                              f": {exc}); it is dropped and rebuilt", stacklevel=3)
                for f in entry.glob("*"):
                    if f.name != "lock":
                        f.unlink()
        return _decode_to_entry(entry, paths, image_size, n_jobs, verbose)


def _reserve(path: Path) -> None:
    """Allocate a cache file's blocks now. A memory map writes into a sparse file lazily:
    on a full disk that write is a SIGBUS that kills the process without a word (and the
    half-written entry crashed every retry); reserved, a full disk is an OSError here."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _decode_to_entry(entry: Path, paths, image_size: int, n_jobs, verbose):
    n = len(paths)
    shape = (n, image_size, image_size, 1)
    skipped, noted = [], []
    done = ok = None
    if (entry / "done.npy").is_file():  # an interrupted decode: go on from its last step
        try:
            done, ok = np.load(entry / "done.npy"), np.load(entry / "ok.npy")
            progress = json.loads((entry / "progress.json").read_text())
            skipped = [tuple(x) for x in progress["skipped"]]
            noted = [tuple(x) for x in progress["noted"]]
            X = np.lib.format.open_memmap(entry / "X.npy", mode="r+")
            if X.shape != shape or len(done) != n or len(ok) != n:
                raise ValueError("sizes differ")
        except Exception:  # half-written state: start again, from nothing
            done = ok = None
            skipped, noted = [], []
    try:
        if done is None:
            done, ok = np.zeros(n, bool), np.zeros(n, bool)
            X = np.lib.format.open_memmap(entry / "X.npy", mode="w+", dtype=np.uint8,
                                          shape=shape)
        _reserve(entry / "X.npy")
    except OSError as exc:  # a full disk: no entry, decode in memory
        X = None
        warnings.warn(f"could not write the image cache {entry}: {exc}; decoding without it",
                      stacklevel=4)
        for f in entry.glob("*"):
            if f.name != "lock":
                f.unlink(missing_ok=True)
        return _cached_decode(paths, image_size, False, n_jobs, verbose)

    def save():
        X.flush()  # the pixels reach the file before the progress that counts them
        release(X)
        _atomic_json(entry / "progress.json", {"skipped": skipped, "noted": noted})
        _atomic_save(entry / "ok.npy", ok)
        _atomic_save(entry / "done.npy", done)

    try:
        _decode_into(X, ok, done, paths, image_size, n_jobs, verbose, skipped, noted, save)
        save()
        _atomic_json(entry / "complete.json", {"skipped": skipped, "noted": noted})
        for name in ("done.npy", "progress.json"):
            (entry / name).unlink(missing_ok=True)
    except OSError as exc:  # a full or read-only disk: keep going in memory
        warnings.warn(f"could not write the image cache {entry}: {exc}", stacklevel=4)
        X = np.array(X)
        if not done.all():
            _decode_into(X, ok, done, paths, image_size, n_jobs, verbose, skipped, noted)
        _report_notes(noted)
        return X, ok, skipped
    X = None  # closes the writable map before the entry is read back read-only
    _report_notes(noted)
    return np.load(entry / "X.npy", mmap_mode="r"), ok, skipped


# ---------------------------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------------------------
_NOTE_TEXT = {
    "bit_depth": "deeper than 8 bits without a bit depth in the file (a PNG sBIT chunk or a "
                 "TIFF MaxSampleValue): each was scaled by the bit depth its largest value "
                 "needs; if that is wrong for your data, convert the files to 8 bits yourself",
    "elongated": "far from square (one side over 3 times the other): each was stretched to a "
                 "square; crop them to the chest first",
}


def _report_notes(noted) -> None:
    """One warning per kind of guess the decoder made, with a few examples."""
    by_kind: dict = {}
    for path, kind, message in noted:
        by_kind.setdefault(kind, []).append(f"  {path}: {message}")
    for kind, lines in by_kind.items():
        more = f"\n  ... and {len(lines) - 5} more" if len(lines) > 5 else ""
        warnings.warn(f"{len(lines)} image(s) {_NOTE_TEXT.get(kind, kind)}:\n"
                      + "\n".join(lines[:5]) + more, UserWarning, stacklevel=4)


def _report_skipped(skipped, strict: bool):
    if not skipped:
        return
    listing = "\n".join(f"  {p}: {why}" for p, why in skipped)
    if strict:
        raise DataError(f"{len(skipped)} image file(s) could not be read:\n{listing}\n"
                        "Remove or replace them, or load without strict=True to skip them.")
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s):\n{listing}",
                  UnreadableImageWarning, stacklevel=3)


def _load(paths: list[str], labels: list[str], image_size: int, *, cache, n_jobs, verbose,
          strict, root=None, stream="auto") -> ImageData:
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise DataError(f"image_size must be an integer >= 8, got {image_size!r}")
    if stream not in ("auto", True, False):
        raise DataError(f"stream must be 'auto', True or False, got {stream!r}")
    if stream is True and not cache:
        raise DataError("stream=True reads images from the on-disk cache: keep cache on")
    X, ok, skipped = _cached_decode(paths, int(image_size), cache, n_jobs, verbose)
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
        Return the images as an :class:`~pneumonia_cnn.streaming.ImageStream` over the
        memory-mapped cache instead of an array: "auto" does when they take more than
        :func:`~pneumonia_cnn.streaming.in_memory_limit` (256 MiB by default).

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
            files = _image_files(folder)
            paths += [str(f) for f in files]
            labels += [name] * len(files)
    if not paths:
        raise DataError(f"{root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                        f"in its class folders {', '.join(where)}")
    data = _load(paths, labels, image_size, root=str(root), **load_args)
    if len(data) == 0:
        raise DataError(f"none of the {len(paths)} image files in {root} could be read "
                        "(see the warning above for the reasons)")
    _report_duplicates(data)
    return data


def _report_duplicates(data: "ImageData") -> None:
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
    paths = [os.fspath(p) for p in paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing and strict:
        raise DataError(f"{len(missing)} image file(s) do not exist or are not files, "
                        f"first: {missing[0]}")
    return _load(paths, [], image_size, cache=cache, n_jobs=n_jobs, verbose=verbose,
                 strict=strict, stream=stream)


# ---------------------------------------------------------------------------------------------
# Patient-grouped splits
# ---------------------------------------------------------------------------------------------
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


def load_any(X, image_size: int, verbose: int = 0, role: str = "evaluate") -> ImageData | None:
    """Load ``X`` when it names images: an :class:`ImageData` as it is, a data source
    (folder, split root, MedMNIST ``.npz``, label CSV; see :func:`pneumonia_cnn.sources.
    load_data`, which reads the splits of ``role``), one image file or a list of image
    files. Returns None for anything else (image arrays)."""
    from .sources import is_data_file, load_data

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


def image_fingerprints(X) -> list:
    """Content hash of every image's pixels (12 hex digits each): to recognise training
    images among evaluation images."""
    return [hashlib.sha1(x.tobytes()).hexdigest()[:12]
            for chunk in iter_chunks(X) for x in np.ascontiguousarray(chunk)]


def grouped_split(y, groups, test_size: float = 0.2, random_state=None):
    """Split indices into two patient-disjoint parts, stratified by class.

    Uses scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold` with
    ``round(1 / test_size)`` folds and keeps its first fold as the held-out part, so no
    patient has images on both sides and both sides keep the class ratio.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,)
        Patient ids.
    test_size : float, default=0.2
        Approximate fraction held out, in (0, 0.5].
    random_state : int, RandomState or None, default=None
        Seeds the shuffle of the patients.

    Returns
    -------
    train_idx, test_idx : ndarray of int
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < test_size <= 0.5:
        raise ValueError(f"test_size must be in (0, 0.5], got {test_size!r}")
    y = np.asarray(y)
    groups = np.asarray(groups)
    n_splits = max(2, int(round(1 / test_size)))
    if len(np.unique(groups)) < n_splits:
        raise DataError(f"a patient-grouped split with test_size={test_size} needs at least "
                        f"{n_splits} patients, got {len(np.unique(groups))}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    train_idx, test_idx = next(cv.split(np.zeros(len(y)), y, groups))
    return train_idx, test_idx
