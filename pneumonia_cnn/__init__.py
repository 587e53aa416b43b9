"""pneumonia-cnn: convolutional networks that tell pneumonia from normal chest X-rays.

>>> from pneumonia_cnn import PneumoniaCNN
>>> clf = PneumoniaCNN().fit("chest_xray/train")   # doctest: +SKIP
"""

import os as _os

# Quieter TensorFlow start-up (C++ info logs); users can still override it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from .data import DataError, ImageData, load_image_folder, load_images, patient_id  # noqa: E402
from .estimator import PneumoniaCNN  # noqa: E402

__all__ = [
    "DataError",
    "ImageData",
    "PneumoniaCNN",
    "__version__",
    "load_image_folder",
    "load_images",
    "patient_id",
]
