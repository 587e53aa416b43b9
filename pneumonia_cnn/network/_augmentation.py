"""Data augmentation as Keras preprocessing layers (active only while training).

Because augmentation lives inside the model, it is an ordinary hyperparameter:
``PneumoniaCNN(augmentation="standard")`` or a dict of factors, searchable in a grid.

Presets are chosen for chest radiographs, which are taken in a standard position:

- small rotations (a few degrees), zooms and shifts imitate patient positioning;
- contrast and brightness changes imitate exposure differences between machines;
- "acquisition" adds what else differs between sites: blur and edge enhancement (detector
  and vendor processing) and sensor noise, with strong contrast / brightness changes, so
  that the network cannot key on one batch's grey levels or sharpness;
- **no horizontal flip by default**: the heart lies on the left, and a flipped film is an
  anatomically impossible image (situs inversus is ~1 in 10,000); it also moves the side
  markers. It can still be asked for with ``{"flip": "horizontal"}``.
- no vertical flips or large rotations: the lungs are never upside down on a film.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import keras


__all__ = ["AUGMENTATION_PRESETS", "TTA_VIEWS", "affine", "augmentation_factors",
           "build_augmentation", "tta_views"]

#: Factors of each preset. rotation is a fraction of a full turn (0.02 = 7.2 degrees),
#: zoom / translation / contrast / brightness are fractions (see the Keras layers).
AUGMENTATION_PRESETS: dict[str, dict] = {
    "light": {"rotation": 0.01, "zoom": 0.05, "translation": 0.05},
    "standard": {"rotation": 0.02, "zoom": 0.1, "translation": 0.08, "contrast": 0.1},
    "heavy": {"rotation": 0.04, "zoom": 0.2, "translation": 0.12, "contrast": 0.25,
              "brightness": 0.15},
    "acquisition": {"rotation": 0.02, "zoom": 0.12, "translation": 0.06, "contrast": 0.5,
                    "brightness": 0.2, "sharpness": 0.5, "blur": 0.5, "noise": 0.03},
}

_KNOWN = ("rotation", "zoom", "translation", "contrast", "brightness", "sharpness", "blur",
          "noise", "flip")
_FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")
#: Factors that Keras' layers accept only up to 1, with what they mean.
_AT_MOST_ONE = {"blur": "the share of images blurred",
                "sharpness": "Keras' RandomSharpness factor",
                "noise": "the noise's standard deviation as a fraction of the 0-255 range"}


def augmentation_factors(augmentation) -> dict:
    """Normalise an ``augmentation`` value to a dict of factors.

    Parameters
    ----------
    augmentation : None, str or dict
        ``None`` / ``"none"`` (no augmentation), a preset name (``"light"``, ``"standard"``,
        ``"heavy"``, ``"acquisition"``) or a dict with any of the keys ``rotation``, ``zoom``,
        ``translation``, ``contrast``, ``brightness``, ``sharpness`` (Keras'
        ``RandomSharpness`` factor), ``blur`` (share of images blurred by
        ``RandomGaussianBlur``, sigma up to 1 px), ``noise``
        (standard deviation of Gaussian noise, as a fraction of the 0-255 range) (non-negative floats)
        and ``flip``
        (``"horizontal"``, ``"vertical"``, ``"horizontal_and_vertical"`` or None).

    Returns
    -------
    dict
        Only the factors that are switched on.

    Raises
    ------
    ValueError
        Unknown preset, unknown key or a negative factor.
    """
    if augmentation is None or (isinstance(augmentation, str) and augmentation.lower() == "none"):
        return {}
    if isinstance(augmentation, str):
        try:
            return dict(AUGMENTATION_PRESETS[augmentation.lower()])
        except KeyError:
            raise ValueError(f"unknown augmentation preset {augmentation!r}: use None, "
                             f"{', '.join(map(repr, AUGMENTATION_PRESETS))} or a dict of "
                             f"factors with keys {', '.join(_KNOWN)}") from None
    if not isinstance(augmentation, Mapping):
        raise ValueError(f"augmentation must be None, a preset name or a dict, "
                         f"got {type(augmentation).__name__}")
    unknown = set(augmentation) - set(_KNOWN)
    if unknown:
        raise ValueError(f"unknown augmentation key(s) {sorted(unknown)}: use {', '.join(_KNOWN)}")
    factors = {}
    for key, value in augmentation.items():
        if key == "flip":
            if value not in (None, False, *_FLIPS):
                raise ValueError(f"augmentation flip must be one of {_FLIPS} or None, "
                                 f"got {value!r}")
            if value:
                factors[key] = value
        else:
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"augmentation {key} must be a number >= 0, got {value!r}")
            if key in _AT_MOST_ONE and value > 1:
                raise ValueError(f"augmentation {key} must be between 0 and 1 ({_AT_MOST_ONE[key]}),"
                                 f" got {value!r}")
            if value > 0:
                factors[key] = float(value)
    return factors


def build_augmentation(augmentation, seed: int | None = None) -> keras.Sequential | None:
    """Keras preprocessing layers for an ``augmentation`` value (see
    :func:`augmentation_factors`), or None when there is nothing to do.

    The layers expect pixel values in 0-255 and are the identity at inference time.
    """
    import keras  # here: the presets and their checks load without TensorFlow

    factors = augmentation_factors(augmentation)
    if not factors:
        return None
    layers = []

    def layer_seed():  # a different seed per layer, so their random draws are independent
        return None if seed is None else seed + len(layers)

    if "flip" in factors:
        layers.append(keras.layers.RandomFlip(factors["flip"], seed=layer_seed()))
    if "rotation" in factors:
        layers.append(keras.layers.RandomRotation(factors["rotation"], fill_mode="constant",
                                                  seed=layer_seed()))
    if "zoom" in factors:
        layers.append(keras.layers.RandomZoom(factors["zoom"], fill_mode="constant", seed=layer_seed()))
    if "translation" in factors:
        t = factors["translation"]
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=layer_seed()))
    if "contrast" in factors:
        layers.append(keras.layers.RandomContrast(factors["contrast"], value_range=(0, 255),
                                                  seed=layer_seed()))
    if "brightness" in factors:
        layers.append(keras.layers.RandomBrightness(factors["brightness"], value_range=(0, 255),
                                                    seed=layer_seed()))
    if "sharpness" in factors:
        layers.append(keras.layers.RandomSharpness(factors["sharpness"], value_range=(0, 255),
                                                   seed=layer_seed()))
    if "blur" in factors:
        # factor = share of images blurred; sigma up to 1 px (Keras' limit) with a 5x5 kernel
        layers.append(keras.layers.RandomGaussianBlur(factors["blur"], kernel_size=5, sigma=1.0,
                                                      value_range=(0, 255), seed=layer_seed()))
    if "noise" in factors:
        layers += [keras.layers.Rescaling(1 / 255),  # Keras' noise layer wants a 0-1 scale
                   keras.layers.GaussianNoise(factors["noise"], seed=layer_seed()),
                   keras.layers.Rescaling(255.0)]
    return keras.Sequential(layers, name="augmentation")


def affine(img, rotation_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0)):
    """Rotate / scale / shift one 2-D image about its centre (scikit-image ``warp``; black
    where the film has no data). ``shift`` is a fraction of the width and height."""
    import numpy as np
    from skimage.transform import AffineTransform, warp

    h, w = img.shape
    centre = np.array([w / 2, h / 2])
    tform = (AffineTransform(translation=-centre)
             + AffineTransform(rotation=np.deg2rad(rotation_deg), scale=scale,
                               translation=(shift[0] * w, shift[1] * h))
             + AffineTransform(translation=centre))
    return warp(img, tform.inverse, order=1, mode="constant", cval=0.0, preserve_range=True)


#: The fixed views of test-time augmentation, in order (the original image comes first):
#: (rotation in degrees, scale, (shift x, shift y)), positioning changes a film really shows.
TTA_VIEWS = (
    (0.0, 1.05, (0.0, 0.0)),
    (0.0, 0.95, (0.0, 0.0)),
    (3.0, 1.0, (0.0, 0.0)),
    (-3.0, 1.0, (0.0, 0.0)),
    (0.0, 1.0, (0.03, 0.0)),
    (0.0, 1.0, (-0.03, 0.0)),
    (0.0, 1.0, (0.0, 0.03)),
    (0.0, 1.0, (0.0, -0.03)),
)


def tta_views(X, n_views: int):
    """The first ``n_views`` fixed views of :data:`TTA_VIEWS` of a batch ``(n, h, w, 1)``
    uint8 (deterministic: small zooms, rotations and shifts)."""
    import numpy as np

    if not 0 <= n_views <= len(TTA_VIEWS):
        raise ValueError(f"tta must be between 0 and {len(TTA_VIEWS)}, got {n_views!r}")
    views = []
    for rot, scale, shift in TTA_VIEWS[:n_views]:
        out = np.empty_like(X)
        for i, img in enumerate(X[..., 0]):
            out[i, ..., 0] = np.clip(np.rint(affine(img.astype(np.float32), rot, scale, shift)),
                                     0, 255)
        views.append(out)
    return views
