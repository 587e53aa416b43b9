"""One ``load_model`` for every saved model: it works out from the files what a folder holds."""

from __future__ import annotations

from ..estimator import PneumoniaCNN, is_model_uri, local_model_folder
from ..utils import plugin
from ._adaptation import ADAPTATION_FILE, SiteAdaptedCNN
from ._calibration import CALIBRATION_FILE, SiteCalibratedCNN

__all__ = ["load_model", "load_model_folder"]


def load_model_folder(folder):
    """The model in a local folder: a :class:`SiteCalibratedCNN` when it holds a site
    calibration (``site_calibration.json``), a :class:`SiteAdaptedCNN` when it holds a site
    adaptation (``site_adaptation.json``), else a :class:`PneumoniaCNN`."""
    if (folder / CALIBRATION_FILE).is_file():
        return SiteCalibratedCNN.load(folder)
    if (folder / ADAPTATION_FILE).is_file():
        return SiteAdaptedCNN.load(folder)
    return PneumoniaCNN.load(folder)


def load_model(path, tracking_uri: str | None = None):
    """Load any saved model: a model folder, a pyfunc model folder logged by this package,
    or an MLflow model URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/MODEL_ID``, ``runs:/RUN_ID/NAME``; from ``tracking_uri``). What it holds
    decides the class (see :func:`load_model_folder`)."""
    resolve = plugin("model_folder") if is_model_uri(path) else _local
    with resolve(path, tracking_uri) as (folder, info):
        model = load_model_folder(folder)
    if info.get("model_id"):
        model.mlflow_model_id_ = info["model_id"]
    return model


def _local(path, tracking_uri=None):
    return local_model_folder(path)
