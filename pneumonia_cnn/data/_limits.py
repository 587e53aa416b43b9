"""Limits every decoder shares (Pillow's formats and DICOM), checked before decoding."""

from __future__ import annotations

__all__ = ["MAX_PIXELS", "check_pixel_budget"]

#: Most pixels one film may declare, for every decoder (Pillow's formats and DICOM),
#: checked from the header before decoding: 50 million (about 7,000 x 7,000), above any
#: radiograph detector (a 43 x 43 cm plate at 0.1 mm is 4,300 x 4,300). A 338 kB 16-bit
#: PNG declaring 13,000 x 13,000 otherwise cost ~4 GB to decode; Pillow's own limit (twice
#: 89 million pixels) let it through.
MAX_PIXELS = 50_000_000


def check_pixel_budget(width: int, height: int) -> None:
    """Refuse a film that declares more than :data:`MAX_PIXELS` pixels (a decompression
    bomb or not a radiograph), before it is decoded."""
    if int(width) * int(height) > MAX_PIXELS:
        raise ValueError(f"declares {int(width)} x {int(height)} pixels, more than the "
                         f"{MAX_PIXELS:,} a radiograph can have: a decompression bomb or not "
                         "a chest film; downsample it before use")
