"""The batched CLAHE gives scikit-image's output, to the bit (issue 21): every saved model saw
scikit-image's films, so a faster path may not move one pixel."""

import numpy as np
import pytest
from skimage.exposure import equalize_adapthist

from pneumonia_cnn.network import normalize_intensity
from pneumonia_cnn.network._clahe import clahe_batch


def _reference(films, kernel):
    return np.stack([equalize_adapthist(f, kernel_size=kernel, clip_limit=0.01) for f in films])


def _films(kind, n, shape, rng):
    if kind == "noise":
        return rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    if kind == "three levels":  # a tile with few levels: the remainder handed out at a stride
        return rng.choice(np.array([0, 7, 200], np.uint8), (n, *shape))
    if kind == "ramp":  # a narrow range of grey levels, stretched
        return np.broadcast_to(np.linspace(30, 90, shape[1]).astype(np.uint8), (n, *shape)).copy()
    # smooth blobs: what films look like, with large flat areas
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    centres = rng.uniform(0, 1, (n, 2, 1, 1)) * np.array(shape)[None, :, None, None]
    blob = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / (shape[0] ** 2 / 8))
    return (40 + 180 * blob + rng.normal(0, 3, (n, *shape))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [8, 13, 28, 64, 96, 101])
@pytest.mark.parametrize("kind", ["noise", "three levels", "ramp", "blobs"])
def test_equal_to_scikit_image(size, kind):
    rng = np.random.default_rng(size)
    films = _films(kind, 12, (size, size), rng)
    kernel = max(size // 8, 4)
    np.testing.assert_array_equal(clahe_batch(films, kernel), _reference(films, kernel))


def test_equal_to_scikit_image_off_square_and_with_a_large_clip_limit():
    rng = np.random.default_rng(1)
    films = _films("blobs", 6, (60, 100), rng)
    np.testing.assert_array_equal(clahe_batch(films, 7), _reference(films, 7))
    ref = np.stack([equalize_adapthist(f, kernel_size=16, clip_limit=0.3) for f in films])
    np.testing.assert_array_equal(clahe_batch(films, 16, clip_limit=0.3), ref)


def test_normalize_intensity_in_threads_equals_film_by_film(monkeypatch):
    """A batch larger than one piece runs on the thread pool; constant films stay black;
    uint8 output equals scikit-image's rounded to grey levels."""
    from pneumonia_cnn.network import _preprocessing as pre

    rng = np.random.default_rng(0)
    X = _films("blobs", 3 * pre.CHUNK + 5, (48, 48), rng)[..., None]
    X[4] = 77
    out = normalize_intensity(X, "clahe")
    ref = np.clip(np.rint(_reference(np.delete(X[..., 0], 4, 0), 6) * 255), 0, 255)
    np.testing.assert_array_equal(np.delete(out[..., 0], 4, 0), ref.astype(np.uint8))
    assert out.dtype == np.uint8 and not out[4].any()
    # float input in 0-255 is clipped and cast as before
    np.testing.assert_array_equal(normalize_intensity(X.astype(np.float32), "clahe"), out)
    assert normalize_intensity(X[:0], "clahe").shape == (0, 48, 48, 1)


def test_wrong_input_is_refused():
    with pytest.raises(ValueError, match="uint8 films of shape"):
        clahe_batch(np.zeros((2, 8, 8), np.float32), 4)


def test_real_films_equal_to_scikit_image(real_train_dir):
    from pneumonia_cnn import load_image_folder

    films = load_image_folder(real_train_dir, 96).X[::4, ..., 0]  # about 430 films
    np.testing.assert_array_equal(clahe_batch(films, 12), _reference(films, 12))
