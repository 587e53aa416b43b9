"""The classifier: :class:`PneumoniaCNN` and what it is made of.

Names are imported on first use (:func:`pneumonia_cnn.utils.lazy_exports`): the
parameter checks and the constants load without TensorFlow, so the command line can
refuse a wrong setting in a fraction of a second.
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_classifier`` (the scikit-learn contract and the
# Keras plumbing), ``_params`` (parameter constraints, the architecture by image size, checks),
# ``_inputs`` (image arrays and labels), ``_training`` (Keras callbacks, input pipelines, the
# hold-out threshold), ``_predicting`` (probabilities through ``predict_on_batch``),
# ``_ensemble`` (deep ensembles), ``_persistence`` (saved folders and
# their formats), ``_hooks`` (the side effects of ``fit``).

from typing import TYPE_CHECKING

from ..utils import lazy_exports

__all__ = [
    "ARCHITECTURES", "BACKBONE_DEFAULTS", "FORMAT_VERSION", "FitContext", "FitHook",
    "META_FILE", "MODEL_FILE", "PARAMETER_CONSTRAINTS", "PRETRAINED_AUGMENTATION",
    "PneumoniaCNN", "READABLE_FORMATS", "SMALL_IMAGE", "WRAPPER_FILES", "architecture",
    "atomic_model_folder", "by_backbone", "check_settings", "fit_hooks", "in_memory_batches",
    "is_model_uri", "load_folder", "local_model_folder",
]

__getattr__, __dir__ = lazy_exports(__name__)  # the names of the block below

if TYPE_CHECKING:  # imported on first use (also read by documentation, type checkers)
    from ._classifier import PneumoniaCNN
    from ._hooks import FitContext, FitHook, fit_hooks
    from ._params import (
        ARCHITECTURES,
        BACKBONE_DEFAULTS,
        PARAMETER_CONSTRAINTS,
        PRETRAINED_AUGMENTATION,
        SMALL_IMAGE,
        architecture,
        by_backbone,
        check_settings,
    )
    from ._persistence import (
        FORMAT_VERSION,
        META_FILE,
        MODEL_FILE,
        READABLE_FORMATS,
        WRAPPER_FILES,
        atomic_model_folder,
        is_model_uri,
        load_folder,
        local_model_folder,
    )
    from ._training import in_memory_batches
