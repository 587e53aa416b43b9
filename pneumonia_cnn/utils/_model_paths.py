"""The names that identify a saved model, without importing anything heavy: its files and
the MLflow model URI schemes (the command line checks a MODEL with them before TensorFlow
loads)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["META_FILE", "MODEL_FILE", "MODEL_URI_SCHEMES", "PYFUNC_FILE", "WRAPPER_FILES",
           "is_model_uri", "model_files_folder", "not_a_model"]

MODEL_FILE = "model.keras"
META_FILE = "pneumonia_cnn.json"
#: Files that post-fit wrappers (site calibration, site adaptation) add to a model folder.
WRAPPER_FILES = ("site_calibration.json", "site_adaptation.json")
#: Model URIs that MLflow resolves (``models:/NAME@ALIAS``, ``runs:/RUN_ID/NAME``...).
MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
#: The file that makes a folder an MLflow model; this package's keep its model folder in
#: ``artifacts/model`` inside.
PYFUNC_FILE = "MLmodel"


def is_model_uri(path) -> bool:
    """True for ``models:/...``, ``runs:/...`` and ``mlflow-artifacts:/...`` strings."""
    return isinstance(path, str) and path.startswith(MODEL_URI_SCHEMES)


def model_files_folder(path) -> Path:
    """Where a local model's files are: ``path`` itself, or, for a pyfunc model folder
    logged by this package (:data:`PYFUNC_FILE` inside), its ``artifacts/model``."""
    path = Path(path)
    return path / "artifacts" / "model" if (path / PYFUNC_FILE).is_file() else path


def not_a_model(path) -> str:
    """The message for a ``path`` that holds no saved model, saying what would."""
    return (f"{path} is not a saved PneumoniaCNN: expected a folder with {MODEL_FILE} and "
            f"{META_FILE} (written by PneumoniaCNN.save or `pneumonia-cnn train "
            "--model-out`), or an MLflow model URI (models:/NAME@champion, runs:/RUN_ID/NAME)")
