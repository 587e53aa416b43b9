"""The network: its Keras builder, augmentation inside the model, and the per-image intensity
normalisation in front of it.

Modules (private, re-exported here): ``_model`` (the functional builder and the ensemble
average), ``_augmentation`` (training-time augmentation and test-time views),
``_preprocessing`` (CLAHE / equalisation / standardisation).
"""

from ._augmentation import (
    AUGMENTATION_PRESETS,
    TTA_VIEWS,
    affine,
    augmentation_factors,
    build_augmentation,
    tta_views,
)
from ._model import build_model, count_flops, ensemble_model, flat_layers
from ._preprocessing import (
    INTENSITY_NORMS,
    IntensityNormalizer,
    check_intensity_norm,
    clahe_in_processes,
    normalize_intensity,
)

__all__ = [
    "AUGMENTATION_PRESETS", "INTENSITY_NORMS", "IntensityNormalizer", "TTA_VIEWS", "affine",
    "augmentation_factors", "build_augmentation", "build_model", "check_intensity_norm",
    "clahe_in_processes",
    "count_flops", "ensemble_model", "flat_layers", "normalize_intensity", "tta_views",
]
