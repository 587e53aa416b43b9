"""DICOM chest X-rays, read with pydicom (optional extra: ``pip install 'pneumonia-cnn[dicom]'``).

A DICOM file (``.dcm``, ``.dicom``, or any file whose 128-byte preamble is followed by
``DICM``) becomes an 8-bit grayscale image the way a viewer shows it:

1. the pixel data is decoded by pydicom (compressed transfer syntaxes through the decoders
   pydicom supports; a missing decoder is named in the error);
2. the modality LUT (rescale slope / intercept) is applied (``apply_modality_lut``);
3. the file's VOI LUT or window is applied (``apply_voi_lut``, first window); without one, the
   image's own range is used;
4. the result is scaled to 0-255, and MONOCHROME1 (white = low values) is inverted to
   MONOCHROME2.

Refused, with the reason (the loaders report them like other unreadable files): files
without pixel data (reports, structured reports), multi-frame files, and modalities that are
not radiographs (anything but CR, DX, DR, RG, or no Modality at all).

Patient ids come from the ``PatientID`` tag, else ``StudyInstanceUID``.
"""

from __future__ import annotations

import os

import numpy as np

from ._limits import check_pixel_budget

__all__ = ["DICOM_EXTENSIONS", "is_dicom", "read_dicom", "dicom_patient_id"]

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
#: Modalities of projection radiographs (computed, digital, radiographic).
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading DICOM files needs pydicom: pip install "
                          "'pneumonia-cnn[dicom]' (or pip install pydicom)") from None
    return pydicom


def is_dicom(path) -> bool:
    """A ``.dcm`` / ``.dicom`` file, or a file without extension whose 128-byte preamble is
    followed by ``DICM`` (as scanners and PACS exports often name them); for an open binary
    file (e.g. the bytes of a serving request), the preamble decides."""
    if hasattr(path, "read") and hasattr(path, "seek"):  # bytes sent to the served model
        pos = path.tell()
        head = path.read(132)
        path.seek(pos)
        return len(head) == 132 and head[128:] == b"DICM"
    if not isinstance(path, (str, os.PathLike)):
        return False
    ext = os.path.splitext(str(path))[1].lower()
    if ext in DICOM_EXTENSIONS:
        return True
    if ext:  # .jpeg, .png...: not worth opening
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom(path) -> np.ndarray:
    """The displayed image of a DICOM file as a 2-D uint8 array (see the module docstring).

    Raises
    ------
    ImportError
        pydicom is not installed (the message says how to install it).
    ValueError
        No pixel data, several frames, not a radiograph, or pixel data that no installed
        decoder can read (the transfer syntax is named).
    """
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ValueError(f"DICOM without pixel data ({ds.get('Modality', 'no modality')}, "
                         f"SOP class {ds.get('SOPClassUID', '?')}): a report, not an image")
    modality = str(ds.get("Modality", "") or "")
    if modality and modality.upper() not in XRAY_MODALITIES:
        raise ValueError(f"DICOM modality {modality} is not a projection radiograph "
                         f"({', '.join(sorted(XRAY_MODALITIES))} expected)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"DICOM with {frames} frames: one image per file is expected")
    check_pixel_budget(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0))
    _check_embedded_size(ds)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError / NotImplementedError / ...
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise ValueError(f"cannot decode its pixel data (transfer syntax {name}): "
                         f"{str(exc).splitlines()[0][:200]}; install a decoder pydicom "
                         "supports (e.g. pip install pylibjpeg pylibjpeg-libjpeg "
                         "pylibjpeg-openjpeg)") from None
    if arr.ndim != 2:
        raise ValueError(f"DICOM pixel array of shape {arr.shape}: one grayscale image is "
                         "expected (colour or multi-frame data)")
    values = apply_modality_lut(arr, ds).astype(np.float64)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        values = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
    # without a VOI the image's own range is shown; with one, the VOI's output range (the
    # window maps into it, so a film lying inside the window is not stretched beyond it)
    lo, hi = _voi_output_range(ds) if has_voi else (float(values.min()), float(values.max()))
    # a negative RescaleSlope makes the VOI's output range run downwards (hi < lo): the
    # division keeps its sign (high rescaled values bright, as for a positive slope); only
    # a zero-width range is guarded
    span = hi - lo
    scaled = (values - lo) / (span if abs(span) > 1e-12 else 1e-12) * 255.0
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        out = 255 - out  # white = low values: show as MONOCHROME2
    return out


def _check_embedded_size(ds) -> None:
    """For compressed pixel data, read the embedded JPEG / JPEG 2000 image's own header
    (Pillow parses headers without decoding) and refuse it, before any pixel is decoded,
    when it is over the pixel budget or is not the size the DICOM header declares: a file
    declaring 100 x 100 around a 13,000 x 13,000 JPEG was decoded in full (539 MB) first
    (site issue, finding 14). RLE frames carry no size of their own (they are decoded to the
    header's); a JPEG-LS header Pillow cannot parse is checked after decoding."""
    import io
    import warnings

    from PIL import Image

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed or syntax == "1.2.840.10008.1.2.5":  # RLE
        return
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # noqa: BLE001 - damaged encapsulation: pydicom's decoder says why
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(frame)) as im:  # the header only
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ValueError(f"its embedded image is a decompression bomb ({exc})") from None
    except Exception:  # noqa: BLE001 - a codec whose header Pillow cannot parse
        return
    check_pixel_budget(width, height)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if (height, width) != (rows, cols):
        raise ValueError(f"its embedded image is {width} x {height} pixels, but the DICOM "
                         f"header declares {cols} x {rows}: a damaged or crafted file")


def _voi_output_range(ds) -> tuple:
    """The output range of ``apply_voi_lut`` for this file, as pydicom defines it: a VOI LUT
    gives 0 .. 2**bits - 1 of its descriptor; a window gives the stored bit depth's range,
    after rescale when the file has one (pydicom's ``apply_windowing``)."""
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        lo, hi = 0.0, float(2 ** bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi


def dicom_patient_id(path) -> str | None:
    """``PatientID``, else ``StudyInstanceUID``, of a DICOM file (None without either)."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # unreadable: the decoder reports it
        return None
    for tag in ("PatientID", "StudyInstanceUID"):
        value = str(ds.get(tag, "") or "").strip()
        if value:
            return value
    return None
