"""Decoding one image file (Pillow; pydicom for DICOM) to a square grayscale array, and a
list of them on all cores."""

from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._dicom import is_dicom, read_dicom
from ._limits import check_pixel_budget

#: Images decoded between two saves of a resumable decode's progress.
_DECODE_STEP = 512

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

    if is_dicom(path):  # pydicom: modality and VOI LUTs, MONOCHROME1 (see pneumonia_cnn.data)
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


def decode_into(X, ok, done, paths: Sequence[str], image_size: int, n_jobs, verbose,
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



_NOTE_TEXT = {
    "bit_depth": "deeper than 8 bits without a bit depth in the file (a PNG sBIT chunk or a "
                 "TIFF MaxSampleValue): each was scaled by the bit depth its largest value "
                 "needs; if that is wrong for your data, convert the files to 8 bits yourself",
    "elongated": "far from square (one side over 3 times the other): each was stretched to a "
                 "square; crop them to the chest first",
}


def report_notes(noted) -> None:
    """One warning per kind of guess the decoder made, with a few examples."""
    by_kind: dict = {}
    for path, kind, message in noted:
        by_kind.setdefault(kind, []).append(f"  {path}: {message}")
    for kind, lines in by_kind.items():
        more = f"\n  ... and {len(lines) - 5} more" if len(lines) > 5 else ""
        warnings.warn(f"{len(lines)} image(s) {_NOTE_TEXT.get(kind, kind)}:\n"
                      + "\n".join(lines[:5]) + more, UserWarning, stacklevel=4)


