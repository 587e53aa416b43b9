"""The classifier: :class:`PneumoniaCNN` and what it is made of.

Modules (private, re-exported here): ``_classifier`` (the scikit-learn contract and the
Keras plumbing), ``_params`` (parameter constraints, the architecture by image size, checks),
``_inputs`` (image arrays and labels), ``_training`` (Keras callbacks, input pipelines, the
hold-out threshold), ``_ensemble`` (deep ensembles), ``_persistence`` (saved folders and
their formats), ``_hooks`` (the side effects of ``fit``).
"""

from ._classifier import PneumoniaCNN
from ._hooks import FitContext, FitHook, fit_hooks
from ._params import ARCHITECTURES, PARAMETER_CONSTRAINTS, SMALL_IMAGE, architecture
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

__all__ = [
    "ARCHITECTURES", "FORMAT_VERSION", "FitContext", "FitHook", "META_FILE", "MODEL_FILE",
    "PARAMETER_CONSTRAINTS", "PneumoniaCNN", "READABLE_FORMATS", "SMALL_IMAGE",
    "WRAPPER_FILES", "architecture", "atomic_model_folder", "fit_hooks", "in_memory_batches",
    "is_model_uri", "load_folder", "local_model_folder",
]
