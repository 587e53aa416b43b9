"""The CNN builder."""

import keras
import numpy as np
import pytest

from pneumonia_cnn.network import build_model, count_flops


def test_architecture_reads_as_configured():
    m = build_model((64, 64, 1), filters=(8, 16, 32), dense_units=12, dropout=0.2,
                    augmentation="light")
    names = [layer.name for layer in m.layers]
    assert names[:3] == ["image", "augmentation", "rescale"]
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16, 32]
    assert m.get_layer("block3_pool").output.shape[1:3] == (8, 8)
    assert m.get_layer("dense").units == 12
    out = m.get_layer("pneumonia")
    assert out.units == 1 and out.activation.__name__ == "sigmoid"
    assert m.output.shape[-1] == 1


def test_options_change_layers():
    m = build_model((32, 32, 1), filters=(4, 8), batch_norm=False, global_pooling=False,
                    pooling="average", convs_per_block=2, dense_units=0, dropout=0)
    kinds = {type(layer).__name__ for layer in m.layers}
    assert "BatchNormalization" not in kinds and "Flatten" in kinds
    assert "AveragePooling2D" in kinds and "Dropout" not in kinds and "Dense" in kinds
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in m.layers) == 4


def test_rescaling_inside_model_takes_raw_pixels():
    m = build_model((16, 16, 1), filters=(2,), dense_units=0, dropout=0)
    scaled = keras.Model(m.input, m.get_layer("rescale").output)
    x = np.full((1, 16, 16, 1), 255, np.uint8)
    np.testing.assert_allclose(np.asarray(scaled(x)), 1.0)


def test_count_flops_matches_hand_count():
    m = build_model((32, 32, 1), filters=(4, 8), dense_units=10, dropout=0, global_pooling=True)
    conv1 = 2 * 32 * 32 * 4 * 9 * 1
    conv2 = 2 * 16 * 16 * 8 * 9 * 4
    dense = 2 * 8 * 10 + 2 * 10 * 1
    assert count_flops(m) == conv1 + conv2 + dense


@pytest.mark.parametrize("kw, match", [
    ({"pooling": "median"}, "pooling"),
    ({"filters": ()}, "filters"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        build_model((32, 32, 1), **kw)


def test_the_architecture_is_chosen_by_image_size_unless_given():
    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.estimator import ARCHITECTURES

    assert PneumoniaCNN(backbone=None, image_size=96).architecture() == ARCHITECTURES["standard"]
    assert PneumoniaCNN(backbone=None, image_size=28).architecture() == ARCHITECTURES["small"]
    mixed = PneumoniaCNN(backbone=None, image_size=28, filters=(8, 16), dense_units=32,
                         augmentation=None).architecture()
    assert mixed == {**ARCHITECTURES["small"], "filters": (8, 16), "dense_units": 32,
                     "augmentation": None}
    # the small network keeps 28 px above 1 x 1 and pools globally
    est = PneumoniaCNN(backbone=None, image_size=28, n_networks=1, epochs=1, tracking=False,
                       validation_fraction=0.0, threshold=0.5, random_state=0)
    X = np.random.default_rng(0).integers(0, 255, (8, 28, 28, 1)).astype(np.uint8)
    est.fit(X, np.array(["NORMAL", "PNEUMONIA"] * 4))
    names = [layer.name for layer in est.model_.layers]
    assert "gap" in names and "block3_conv2" in names and "block4_conv1" not in names


def test_border_mask_blanks_the_edges_inside_the_network():
    import keras

    model = build_model((40, 40, 1), filters=(4,), border_mask=0.1)
    masked = keras.Model(model.input, model.get_layer("border_mask").output)
    out = np.asarray(masked(np.full((1, 40, 40, 1), 255.0)))
    assert out[0, :4].max() == 0 and out[0, :, -4:].max() == 0 and out[0, 4:-4, 4:-4].min() == 1
    with pytest.raises(ValueError, match="border_mask must be in"):
        build_model((40, 40, 1), border_mask=0.5)


def test_clahe_in_processes_is_a_deprecated_no_op():
    from pneumonia_cnn.network import clahe_in_processes

    with pytest.warns(FutureWarning, match="no longer needed"):
        clahe_in_processes()
