"""Data augmentation as Keras preprocessing layers (active only while training).

Because augmentation lives inside the model, it is an ordinary hyperparameter:
``PneumoniaCNN(augmentation="standard")`` or a dict of factors, searchable in a grid.

Presets are chosen for chest radiographs, which are taken in a standard position:

- small rotations (a few degrees), zooms and shifts imitate patient positioning;
- contrast and brightness changes imitate exposure differences between machines;
- **no horizontal flip by default**: the heart lies on the left, and a flipped film is an
  anatomically impossible image (situs inversus is ~1 in 10,000); it also moves the side
  markers. It can still be asked for with ``{"flip": "horizontal"}``.
- no vertical flips or large rotations: the lungs are never upside down on a film.
"""

from __future__ import annotations

from typing import Mapping

import keras

__all__ = ["AUGMENTATION_PRESETS", "augmentation_factors", "build_augmentation"]

#: Factors of each preset. rotation is a fraction of a full turn (0.02 = 7.2 degrees),
#: zoom / translation / contrast / brightness are fractions (see the Keras layers).
AUGMENTATION_PRESETS: dict[str, dict] = {
    "light": {"rotation": 0.01, "zoom": 0.05, "translation": 0.05},
    "standard": {"rotation": 0.02, "zoom": 0.1, "translation": 0.08, "contrast": 0.1},
    "heavy": {"rotation": 0.04, "zoom": 0.2, "translation": 0.12, "contrast": 0.25,
              "brightness": 0.15},
}

_KNOWN = ("rotation", "zoom", "translation", "contrast", "brightness", "flip")
_FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")


def augmentation_factors(augmentation) -> dict:
    """Normalise an ``augmentation`` value to a dict of factors.

    Parameters
    ----------
    augmentation : None, str or dict
        ``None`` / ``"none"`` (no augmentation), a preset name (``"light"``, ``"standard"``,
        ``"heavy"``) or a dict with any of the keys ``rotation``, ``zoom``, ``translation``,
        ``contrast``, ``brightness`` (non-negative floats) and ``flip``
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
            if value > 0:
                factors[key] = float(value)
    return factors


def build_augmentation(augmentation, seed: int | None = None) -> keras.Sequential | None:
    """Keras preprocessing layers for an ``augmentation`` value (see
    :func:`augmentation_factors`), or None when there is nothing to do.

    The layers expect pixel values in 0-255 and are the identity at inference time.
    """
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
    return keras.Sequential(layers, name="augmentation")
