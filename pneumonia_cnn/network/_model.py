"""The convolutional network: one functional-API builder that reads like the architecture."""

from __future__ import annotations

import random
from typing import Sequence

import keras
from keras import layers

from ._augmentation import build_augmentation
from ._efficientnet import (
    BACKBONES,
    INPUT_MEAN,
    INPUT_STD,
    LITE0_BLOCKS,
    build_efficientnet_lite0,
)

__all__ = ["build_model", "build_pretrained_model", "count_flops", "ensemble_model",
           "feeding_layer", "flat_layers"]


def build_model(
    input_shape: Sequence[int] = (96, 96, 1),
    *,
    filters: Sequence[int] = (8, 16, 32, 64),
    kernel_size: int = 3,
    convs_per_block: int = 1,
    pooling: str = "max",
    batch_norm: bool = True,
    global_pooling: bool = False,
    dense_units: int = 64,
    dropout: float = 0.3,
    augmentation=None,
    border_mask: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """Build the (uncompiled) CNN.

    Parameters
    ----------
    input_shape : tuple of int, default=(96, 96, 1)
        ``(height, width, channels)`` of the input, pixel values 0-255.
    filters : sequence of int, default=(8, 16, 32, 64)
        Filters of each convolution block; one block per entry, each followed by 2x2 pooling.
    kernel_size : int, default=3
        Convolution kernel size.
    convs_per_block : int, default=1
        Convolutions in each block.
    pooling : {"max", "average"}, default="max"
        Pooling after each block.
    batch_norm : bool, default=True
        Batch normalisation after every convolution.
    global_pooling : bool, default=False
        Global average pooling before the head (True) or flatten (False).
    dense_units : int, default=64
        Units of the hidden dense layer of the head; 0 for none.
    dropout : float, default=0.3
        Dropout rate before the output unit.
    augmentation : None, str or dict, default=None
        See :func:`pneumonia_cnn.network.build_augmentation`.
    border_mask : float, default=0.0
        Share of the image side blanked on every edge (after augmentation, at training and
        prediction alike): side markers, labels and film corners are shortcuts that do not
        travel between sites. 0 keeps the whole image.
    seed : int or None, default=None
        Seed of the augmentation and dropout layers.

    Returns
    -------
    keras.Model
        Input ``image``; output ``pneumonia``: one sigmoid unit, P(PNEUMONIA).
    """
    if pooling not in ("max", "average"):
        raise ValueError(f"pooling must be 'max' or 'average', got {pooling!r}")
    if not filters or any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be a non-empty sequence of positive ints, got {filters!r}")
    if not 0 <= border_mask < 0.5:
        raise ValueError(f"border_mask must be in [0, 0.5), got {border_mask!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D

    # Weights: each layer's initializer seeded from a private generator seeded with `seed`
    # (None: Keras' global one). Keras seeds an unseeded initializer from Python's
    # process-wide `random` -- the same draws in a single-threaded fit, but other threads (a
    # Dask worker's event loop) draw from it too, so seeded fits differed between processes.
    layer_seeds = None if seed is None else random.Random(int(seed))

    def weights():
        if layer_seeds is None:
            return "glorot_uniform"
        # the draw Keras makes for an unseeded initializer, from a private generator
        return keras.initializers.GlorotUniform(seed=layer_seeds.randint(1, int(1e9)))

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs

    # Augmentation (training only) on raw 0-255 pixels, then scale to 0-1.
    x = _augmented(x, augmentation, seed)
    x = layers.Rescaling(1.0 / 255, name="rescale")(x)

    x = _border_masked(x, border_mask, int(input_shape[0]))

    # Convolution blocks: [conv -> (batch norm) -> ReLU] x n, then 2x2 pooling.
    for b, n_filters in enumerate(filters, start=1):
        for c in range(1, convs_per_block + 1):
            x = layers.Conv2D(int(n_filters), kernel_size, padding="same", use_bias=not batch_norm,
                              kernel_initializer=weights(), name=f"block{b}_conv{c}")(x)
            if batch_norm:
                # momentum 0.9, not Keras' 0.99: with ~40 steps an epoch the moving statistics
                # used at inference would otherwise lag for many epochs (constant outputs).
                x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = layers.Activation("relu", name=f"block{b}_relu{c}")(x)
        x = pool(2, name=f"block{b}_pool")(x)

    # Classifier head.
    x = layers.GlobalAveragePooling2D(name="gap")(x) if global_pooling else layers.Flatten(name="flatten")(x)
    if dense_units:
        x = layers.Dense(int(dense_units), activation="relu", kernel_initializer=weights(),
                         name="dense")(x)
    if dropout:
        x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=weights(),
                           name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="pneumonia_cnn")


def build_pretrained_model(
    input_shape: Sequence[int] = (128, 128, 1),
    *,
    backbone: str = "efficientnet-lite0",
    freeze_blocks: int = 8,
    dropout: float = 0.3,
    augmentation=None,
    border_mask: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """Build the (uncompiled) classifier on an ImageNet-pretrained backbone.

    ``image -> augmentation -> border mask -> three channels -> ImageNet scaling ->
    backbone -> global average pooling -> dropout -> sigmoid``.

    Parameters
    ----------
    input_shape : tuple of int, default=(128, 128, 1)
        ``(height, width, channels)`` of the input, pixel values 0-255, sides >= 32 px.
        A grayscale film is repeated into the three channels the backbone expects.
    backbone : {"efficientnet-lite0"}, default="efficientnet-lite0"
        See :data:`~pneumonia_cnn.network.BACKBONES`.
    freeze_blocks : int, default=8
        Backbone blocks (of 16, from the input up, with the stem) kept at their ImageNet
        weights, batch-norm in inference mode; the rest, the head convolution and the
        classifier are fine-tuned. 0 fine-tunes the whole backbone; 16 only the last
        convolution and the classifier.
    dropout : float, default=0.3
        Dropout before the output unit.
    augmentation : None, str or dict, default=None
        See :func:`pneumonia_cnn.network.build_augmentation`.
    border_mask : float, default=0.0
        As in :func:`build_model`.
    seed : int or None, default=None
        Seed of the augmentation, dropout and the output layer's initial weights.

    Returns
    -------
    keras.Model
        Input ``image``; output ``pneumonia``: one sigmoid unit, P(PNEUMONIA). The backbone
        is the nested model ``efficientnet_lite0`` (its last convolution ``top_conv``).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES} (or None for the from-scratch "
                         f"network), got {backbone!r}")
    if not 0 <= int(freeze_blocks) <= len(LITE0_BLOCKS):
        raise ValueError(f"freeze_blocks must be in [0, {len(LITE0_BLOCKS)}], "
                         f"got {freeze_blocks!r}")
    if min(input_shape[:2]) < 32:
        raise ValueError(f"a pretrained backbone needs images of at least 32 px, got "
                         f"{tuple(input_shape)!r}")
    if not 0 <= border_mask < 0.5:
        raise ValueError(f"border_mask must be in [0, 0.5), got {border_mask!r}")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    x = _augmented(x, augmentation, seed)
    x = _border_masked(x, border_mask, int(input_shape[0]))
    if input_shape[-1] == 1:  # a grayscale film into the three channels of ImageNet
        x = layers.Concatenate(name="to_rgb")([x, x, x])
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="imagenet_scale")(x)

    # momentum 0.9 for the fine-tuned batch norms, as in build_model (few steps an epoch)
    net = build_efficientnet_lite0((*input_shape[:2], 3), bn_momentum=0.9)
    frozen = int(freeze_blocks)
    for layer in net.layers:
        name = layer.name
        block = (0 if name.startswith("stem") else int(name[5:].split("_")[0])
                 if name.startswith("block") else len(LITE0_BLOCKS))
        if block < frozen:
            layer.trainable = False  # Keras runs a frozen BatchNormalization in inference mode
    x = net(x)

    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    init = ("glorot_uniform" if seed is None
            else keras.initializers.GlorotUniform(seed=random.Random(int(seed)).randint(1, int(1e9))))
    # float32 output under a mixed-precision policy (benchmarks/gpu.py --mixed-precision)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=init, dtype="float32",
                           name="pneumonia")(x)
    return keras.Model(inputs, outputs, name=f"pneumonia_{backbone.replace('-', '_')}")


def _augmented(x, augmentation, seed):
    """``x`` through the augmentation layers (training only), if there are any."""
    augment = build_augmentation(augmentation, seed=seed)
    return augment(x) if augment is not None else x


def _border_masked(x, border_mask: float, side: int):
    """The border mask: crop the margins and pad them back with zeros (two standard
    layers); ``x`` unchanged for ``border_mask=0``."""
    margin = int(round(float(border_mask) * side))
    if margin:
        x = layers.Cropping2D(margin, name="border_crop")(x)
        x = layers.ZeroPadding2D(margin, name="border_mask")(x)
    return x


def ensemble_model(members: Sequence[keras.Model]) -> keras.Model:
    """One model that averages the P(PNEUMONIA) of several trained networks.

    ``image -> [member 1, ..., member n] -> Average = P(PNEUMONIA)``: a deep ensemble that
    saves, loads and serves as a single Keras model.
    """
    inputs = keras.Input(shape=tuple(members[0].input_shape[1:]), name="image")
    outputs = []
    for i, member in enumerate(members, start=1):
        member.name = f"member{i}"  # unique names inside the ensemble
        outputs.append(member(inputs))
    output = layers.Average(name="pneumonia")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, output, name=f"pneumonia_cnn_ensemble_{len(members)}")


def count_flops(model: keras.Model) -> int:
    """Floating-point operations of one forward pass of one image (multiply-add = 2 FLOPs).

    Counts convolutions and dense layers (the bulk); normalisation, activations and pooling
    are ignored. A training step costs about three times this (forward, and the backward pass
    for activations and for weights).
    """
    flops = 0
    for layer in flat_layers(model):
        if isinstance(layer, layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            k_h, k_w = layer.kernel_size
            in_c = layer.input.shape[-1]
            flops += 2 * out_h * out_w * out_c * k_h * k_w * in_c
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)


def feeding_layer(model, nested) -> str:
    """The name of the layer of ``model`` whose output is the input of ``nested``.

    A nested model's own ``input`` belongs to its inner graph, so a probe from the outer
    inputs to it is not connected: the outer layer that feeds it is read from the model's
    functional config (its serialised graph) instead.

    Parameters
    ----------
    model : keras.Model
        A functional model.
    nested : keras.Model
        A model called once inside ``model``, on one input.

    Returns
    -------
    str
        A layer name of ``model``.
    """
    for entry in model.get_config()["layers"]:
        if entry["name"] != nested.name:
            continue
        for node in entry["inbound_nodes"]:
            for arg in node["args"]:
                history = (arg.get("config") or {}).get("keras_history") if isinstance(
                    arg, dict) else None
                if history:
                    return history[0]
    raise ValueError(f"cannot tell which layer feeds {nested.name!r} in {model.name!r}: "
                     "batch-norm re-estimation supports nested models called once on one "
                     "input")


def flat_layers(model):
    """Every layer of ``model``, nested models (ensemble members) opened, in order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
        else:
            yield layer
