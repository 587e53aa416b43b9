"""The classifier: :class:`PneumoniaCNN` and what it is made of.

Modules (private, re-exported here): ``_classifier`` (the scikit-learn contract and the
Keras plumbing), ``_params`` (parameter constraints, the architecture by image size, checks),
``_inputs`` (image arrays and labels), ``_training`` (Keras callbacks, input pipelines, the
hold-out threshold), ``_ensemble`` (deep ensembles), ``_persistence`` (saved folders and
their formats), ``_hooks`` (the side effects of ``fit``).

Names are imported on first use (:func:`pneumonia_cnn.utils.lazy_exports`): the
parameter checks and the constants load without TensorFlow, so the command line can
refuse a wrong setting in a fraction of a second.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "architecture": "_params",
    "ARCHITECTURES": "_params",
    "atomic_model_folder": "_persistence",
    "fit_hooks": "_hooks",
    "FitContext": "_hooks",
    "FitHook": "_hooks",
    "FORMAT_VERSION": "_persistence",
    "in_memory_batches": "_training",
    "is_model_uri": "_persistence",
    "load_folder": "_persistence",
    "local_model_folder": "_persistence",
    "META_FILE": "_persistence",
    "MODEL_FILE": "_persistence",
    "PARAMETER_CONSTRAINTS": "_params",
    "PneumoniaCNN": "_classifier",
    "check_settings": "_params",
    "READABLE_FORMATS": "_persistence",
    "SMALL_IMAGE": "_params",
    "WRAPPER_FILES": "_persistence",
}

__all__ = [
    "ARCHITECTURES", "FORMAT_VERSION", "FitContext", "FitHook", "META_FILE", "MODEL_FILE",
    "PARAMETER_CONSTRAINTS", "PneumoniaCNN", "READABLE_FORMATS", "SMALL_IMAGE",
    "WRAPPER_FILES", "architecture", "atomic_model_folder", "check_settings", "fit_hooks", "in_memory_batches",
    "is_model_uri", "load_folder", "local_model_folder",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # the same names, for documentation and type checkers
    from ._classifier import PneumoniaCNN
    from ._hooks import FitContext, FitHook, fit_hooks
    from ._params import (
        ARCHITECTURES,
        PARAMETER_CONSTRAINTS,
        SMALL_IMAGE,
        architecture,
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
