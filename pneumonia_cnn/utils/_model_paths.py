"""The names that identify a saved model, without importing anything heavy: its files and
the MLflow model URI schemes (the command line checks a MODEL with them before TensorFlow
loads)."""

from __future__ import annotations

__all__ = ["META_FILE", "MODEL_FILE", "MODEL_URI_SCHEMES", "WRAPPER_FILES", "is_model_uri"]

MODEL_FILE = "model.keras"
META_FILE = "pneumonia_cnn.json"
#: Files that post-fit wrappers (site calibration, site adaptation) add to a model folder.
WRAPPER_FILES = ("site_calibration.json", "site_adaptation.json")
#: Model URIs that MLflow resolves (``models:/NAME@ALIAS``, ``runs:/RUN_ID/NAME``...).
MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def is_model_uri(path) -> bool:
    """True for ``models:/...``, ``runs:/...`` and ``mlflow-artifacts:/...`` strings."""
    return isinstance(path, str) and path.startswith(MODEL_URI_SCHEMES)
