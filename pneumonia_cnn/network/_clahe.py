"""scikit-image's CLAHE for a whole batch of films at once, with the same output.

``skimage.exposure.equalize_adapthist`` is the reference: every model this package has
trained saw its output, so a faster CLAHE must not move a single pixel. It spends most of its
time in Python loops over the tiles of one image (``np.apply_along_axis`` for the histograms
and the clipping, a ``for`` loop that hands out the clipped excess), about 1.7 ms for a 96 px
film. :func:`clahe_batch` runs the same algorithm -- the same integer arithmetic and the same
floating-point operations in the same order and types -- over every tile of every film of a
batch in one set of array operations, so its output is equal to scikit-image's, bit for bit
(``tests/test_clahe.py`` checks it against scikit-image on real and random films).

OpenCV's CLAHE (``cv2.createCLAHE``) is faster still but a different algorithm: on 400 real
films it moved the default model's probabilities by 0.10 on average and flipped 39 labels
(``benchmarks/results/clahe_opencv.json``), so it is not used.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clahe_batch"]

NR_OF_GRAY = 2 ** 14  # scikit-image's working grey levels (skimage.exposure._adapthist)


def _rescale(images: np.ndarray, out_max: float) -> np.ndarray:
    """``skimage.exposure.rescale_intensity(img, out_range=(0, out_max))`` of each film (each
    on its own minimum and maximum, which must differ), in float64."""
    axes = tuple(range(1, images.ndim))
    imin = images.min(axis=axes, keepdims=True).astype(np.float64)
    imax = images.max(axis=axes, keepdims=True).astype(np.float64)
    scaled = (images - imin) / (imax - imin)
    return scaled * (out_max - 0.0) + 0.0


def _rescale_levels(levels, lo, hi, out_max: float) -> np.ndarray:
    """``rescale_intensity(img, out_range=(0, out_max))`` of the grey ``levels`` of each film
    whose own minimum and maximum are ``lo`` and ``hi`` (which differ): shape (n, 256)."""
    lo = lo.astype(np.float64)[:, None]
    hi = hi.astype(np.float64)[:, None]
    return (levels[None, :] - lo) / (hi - lo) * (out_max - 0.0) + 0.0


def _clip_histograms(hist: np.ndarray, clip_limit: int) -> np.ndarray:
    """``skimage.exposure._adapthist.clip_histogram`` of every row of ``hist`` (one histogram
    per row), in place: clip, hand out the excess evenly, then the remainder at a stride, in
    the same order as scikit-image does for one histogram."""
    nbins = hist.shape[1]
    n_excess = np.maximum(hist - clip_limit, 0).sum(axis=1)
    np.minimum(hist, clip_limit, out=hist)

    bin_incr = n_excess // nbins
    if bin_incr.any():
        upper = (clip_limit - bin_incr)[:, None]
        low_mask = hist < upper
        n_excess -= low_mask.sum(axis=1) * bin_incr
        hist += (low_mask * bin_incr[:, None]).astype(hist.dtype)
        mid_mask = (hist >= upper) & (hist < clip_limit)
        n_excess += np.where(mid_mask, hist - clip_limit, 0).sum(axis=1)
        hist[mid_mask] = clip_limit
    # (with no even share, nothing is below `upper` = clip_limit and yet at or above it)

    # the remainder: for index = 0, 1, ...: +1 to the bins under the limit among index,
    # index + step, index + 2 step, ... where step = (bins under the limit) // excess left.
    # (p - index) % step == 0 is p % step == index % step, read from a table
    positions = np.arange(nbins)
    residues = (positions[None, :] % np.arange(1, nbins + 1)[:, None]).astype(np.int16)
    active = np.flatnonzero(n_excess > 0)
    while active.size:  # each pass: scikit-image's `for index in range(hist.size)`
        before = n_excess[active].copy()
        rows = active
        for index in range(nbins):
            rows = rows[n_excess[rows] > 0]
            if not rows.size:
                break
            h = hist[rows]
            under = h < clip_limit
            step = np.maximum(1, under.sum(axis=1) // n_excess[rows])
            picked = under[:, index:] & (residues[step - 1, index:]
                                         == (index % step)[:, None].astype(np.int16))
            h[:, index:] += picked
            hist[rows] = h
            n_excess[rows] -= picked.sum(axis=1)
        # another pass for those with excess left, unless this pass handed none out
        active = active[(n_excess[active] > 0) & (n_excess[active] != before)]
    return hist


def clahe_batch(images: np.ndarray, kernel_size: int, clip_limit: float = 0.01,
                nbins: int = 256) -> np.ndarray:
    """``skimage.exposure.equalize_adapthist(img, kernel_size, clip_limit, nbins)`` of every
    film of a batch, with the same output.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, h, w)
        Films that are not constant (scikit-image's answer for a constant film is left to
        the caller).
    kernel_size : int
        Side of the contextual regions, the same in both directions.
    clip_limit : float, default=0.01
    nbins : int, default=256

    Returns
    -------
    ndarray of float64, shape (n, h, w), values 0-1
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"clahe_batch takes uint8 films of shape (n, h, w), got "
                         f"{images.dtype} of shape {images.shape}")
    n, height, width = images.shape
    if n == 0:
        return np.zeros(images.shape, np.float64)
    k = int(kernel_size)
    # img_as_uint (x 257), rescaled to 2**14 grey levels, rounded, then binned to nbins: a
    # function of the grey level alone, so worked out once per film for the 256 levels
    levels = np.arange(256, dtype=np.uint16) * np.uint16(257)
    lo = images.min(axis=(1, 2)).astype(np.uint16) * np.uint16(257)
    hi = images.max(axis=(1, 2)).astype(np.uint16) * np.uint16(257)
    film_luts = np.round(_rescale_levels(levels, lo, hi, NR_OF_GRAY - 1)).astype(np.uint16)
    bin_size = 1 + NR_OF_GRAY // nbins
    film_luts //= np.uint16(bin_size)

    # pad to whole kernels, half a kernel before (reflect)
    pad_start = k // 2
    pads = [(0, 0)] + [(pad_start, (k - s % k) % k + int(np.ceil(k / 2.0)))
                       for s in (height, width)]
    padded = np.pad(images, pads, mode="reflect")
    padded_h, padded_w = padded.shape[1:]
    image = np.take_along_axis(film_luts, padded.reshape(n, -1), axis=1)
    image = image.reshape(n, padded_h, padded_w)

    # one histogram per contextual region of every film
    ns_hist = (int(padded_h / k) - 1, int(padded_w / k) - 1)
    blocks = image[:, pad_start:pad_start + ns_hist[0] * k, pad_start:pad_start + ns_hist[1] * k]
    blocks = blocks.reshape(n, ns_hist[0], k, ns_hist[1], k).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(-1, k * k)
    offsets = (np.arange(len(blocks), dtype=np.intp) * nbins)[:, None]
    hist = np.bincount((blocks + offsets).ravel(), minlength=len(blocks) * nbins)
    # counts are at most k * k (and after clipping, at most nbins more)
    hist = hist.astype(np.int16 if k * k + nbins < 2 ** 15 else np.int32)
    hist = hist.reshape(len(blocks), nbins)

    kernel_elements = k * k
    clim = int(np.clip(clip_limit * kernel_elements, 1, None)) if clip_limit > 0.0 \
        else kernel_elements
    hist = _clip_histograms(hist, clim)
    # map_histogram
    lut_maps = np.cumsum(hist, axis=-1, dtype=hist.dtype).astype(float)
    lut_maps *= (NR_OF_GRAY - 1 - 0) / kernel_elements
    lut_maps += 0
    np.clip(lut_maps, a_min=None, a_max=NR_OF_GRAY - 1, out=lut_maps)
    lut_maps = lut_maps.astype(int).reshape(n, ns_hist[0], ns_hist[1], nbins)
    # the mappings as uint16 (exact: integers below 2**14), edge-padded by one region
    map_array = np.pad(lut_maps.astype(np.uint16), [(0, 0), (1, 1), (1, 1), (0, 0)],
                       mode="edge").ravel()

    # bilinear interpolation between the four neighbouring regions' mappings, in
    # scikit-image's order: region (i, j) of the padded image reads mappings (i + a, j + b)
    ns_proc = (int(padded_h / k), int(padded_w / k))
    cols = ns_hist[1] + 2
    region = (np.arange(n)[:, None, None] * (ns_hist[0] + 2) * cols
              + np.repeat(np.arange(ns_proc[0]), k)[None, :, None] * cols
              + np.repeat(np.arange(ns_proc[1]), k)[None, None, :])
    index = region * nbins + image  # the (a, b) = (0, 0) mapping of every pixel
    coeffs = np.meshgrid(*(np.arange(k) / k, np.arange(k) / k), indexing="ij")
    coeffs = [np.transpose(c).flatten() for c in coeffs]
    inv_coeffs = [1 - c for c in coeffs]
    result = np.zeros(image.shape, dtype=np.float32)
    term = np.empty(image.shape, dtype=np.float32)
    for edge in np.ndindex(2, 2):
        edge_coeffs = np.prod([[inv_coeffs, coeffs][e][d] for d, e in enumerate(edge[::-1])], 0)
        edge_coeffs = np.tile(edge_coeffs.reshape(k, k), ns_proc)
        edge_mapped = map_array[(edge[0] * cols + edge[1]) * nbins:][index]
        # result += (mapping * coefficient in float64), rounded to float32
        np.multiply(edge_mapped, edge_coeffs, out=term, casting="same_kind")
        result += term
    result = result.astype(np.uint16)[:, pad_start:pad_start + height,
                                      pad_start:pad_start + width]

    # back to 0-1 (rescale_intensity of the float image); a constant result stays as it is
    result = result.astype(np.float64)
    lo = result.min(axis=(1, 2))
    hi = result.max(axis=(1, 2))
    varied = lo != hi
    if varied.all():  # (x - lo) / (hi - lo) * 1.0 + 0.0, in place (x 1.0 and + 0.0 are exact)
        result -= lo[:, None, None]
        result /= (hi - lo)[:, None, None]
        return result
    out = np.clip(result, 0.0, 1.0)
    if varied.any():
        out[varied] = _rescale(result[varied], 1.0)
    return out
