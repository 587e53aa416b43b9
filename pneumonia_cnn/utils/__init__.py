"""Small helpers every layer may use: quiet TensorFlow start-up, holding interrupts, plug-ins.
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_quiet``, ``_interrupts``, ``_plugins`` (side
# effects that lower layers switch on by name), ``_model_paths`` (a saved model's file
# names and the model URI schemes), ``_lazy`` (packages whose names load on first use).

from ._interrupts import deferred_interrupts
from ._lazy import guarded_imports, lazy_exports
from ._model_paths import (
    META_FILE,
    MODEL_FILE,
    MODEL_URI_SCHEMES,
    PYFUNC_FILE,
    WRAPPER_FILES,
    is_model_uri,
    model_files_folder,
    not_a_model,
)
from ._plugins import PLUGINS, plugin
from ._quiet import filter_native_stderr, quiet_tensorflow

__all__ = ["META_FILE", "MODEL_FILE", "MODEL_URI_SCHEMES", "PLUGINS", "PYFUNC_FILE",
           "WRAPPER_FILES", "deferred_interrupts", "filter_native_stderr", "guarded_imports",
           "is_model_uri", "lazy_exports", "model_files_folder", "not_a_model", "plugin", "quiet_tensorflow"]
