"""pneumonia-cnn: convolutional networks that tell pneumonia from normal chest X-rays.

>>> from pneumonia_cnn import PneumoniaCNN
>>> clf = PneumoniaCNN().fit("chest_xray/train")   # doctest: +SKIP

Names are imported lazily, so ``import pneumonia_cnn`` (and the command line's ``--help``)
does not pay for importing TensorFlow.

Subpackages, from the bottom up (each imports only those before it): ``utils``, ``data``,
``network``, ``metrics``, ``estimator``, ``analysis``, ``tracking`` (every MLflow import),
``cluster`` (Dask) and ``cli``. Old module paths (``pneumonia_cnn.analysis``...) are
answered by :mod:`pneumonia_cnn._compat`.
"""

import importlib
import os as _os

# Quieter TensorFlow start-up (C++ info logs); users can still override it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_EXPORTS = {
    "PneumoniaCNN": "estimator",
    "DataError": "data",
    "ImageData": "data",
    "load_image_folder": "data",
    "load_images": "data",
    "load_data": "data",
    "patient_id": "data",
    "evaluate": "analysis",
    "adapt": "analysis",
    "calibrate": "analysis",
    "load_model": "analysis",
    "build_model": "network",
    "search": "tracking",
    "quiet_tensorflow": "utils",
}

__all__ = ["__version__", *_EXPORTS]

from ._compat import install as _install_old_paths  # noqa: E402

_install_old_paths(__name__)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
