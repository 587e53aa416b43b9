"""Augmentation presets and layers."""

import numpy as np
import pytest

from pneumonia_cnn.network import (
    AUGMENTATION_PRESETS,
    augmentation_factors,
    build_augmentation,
)


def test_none_means_no_layers():
    assert augmentation_factors(None) == {}
    assert augmentation_factors("none") == {}
    assert build_augmentation(None) is None


@pytest.mark.parametrize("name", list(AUGMENTATION_PRESETS))
def test_presets_never_flip_and_grow_in_strength(name):
    factors = augmentation_factors(name)
    assert "flip" not in factors  # a mirrored chest film is anatomically impossible
    assert factors == AUGMENTATION_PRESETS[name]


def test_presets_are_ordered_by_strength():
    light, std, heavy = (AUGMENTATION_PRESETS[k] for k in ("light", "standard", "heavy"))
    for key in light:
        assert light[key] <= std[key] <= heavy[key]


def test_dict_factors_and_flip_opt_in():
    f = augmentation_factors({"rotation": 0.05, "zoom": 0, "flip": "horizontal"})
    assert f == {"rotation": 0.05, "flip": "horizontal"}
    layers = build_augmentation({"flip": "horizontal", "contrast": 0.2}, seed=1)
    assert [type(layer).__name__ for layer in layers.layers] == ["RandomFlip", "RandomContrast"]


@pytest.mark.parametrize("bad, match", [
    ("extreme", "unknown augmentation preset"),
    ({"shear": 0.1}, "unknown augmentation key"),
    ({"zoom": -1}, "must be a number >= 0"),
    ({"flip": "diagonal"}, "flip must be one of"),
    (3, "must be None, a preset name or a dict"),
])
def test_bad_values_are_explained(bad, match):
    with pytest.raises(ValueError, match=match):
        augmentation_factors(bad)


def test_layers_change_images_in_training_only():
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 1)).astype("float32")
    aug = build_augmentation("heavy", seed=3)
    train_out = np.asarray(aug(x, training=True))
    infer_out = np.asarray(aug(x, training=False))
    np.testing.assert_allclose(infer_out, x)
    assert np.abs(train_out - x).mean() > 1.0
    assert train_out.shape == x.shape


def test_every_preset_builds_and_changes_training_images_only():
    import numpy as np

    from pneumonia_cnn.network import AUGMENTATION_PRESETS, build_augmentation

    x = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (4, 32, 1))[..., None]
    for name in AUGMENTATION_PRESETS:
        aug = build_augmentation(name, seed=0)
        assert np.abs(np.asarray(aug(x, training=True)) - x).mean() > 0.5, name
        np.testing.assert_allclose(np.asarray(aug(x, training=False)), x, atol=1e-3)
