"""Plug-ins by name: the side effects that a lower layer switches on but must not import.

``PneumoniaCNN(tracking=True)`` plugs the MLflow fit logger into ``fit``; ``evaluate``,
``calibrate`` and ``adapt`` with ``track=True`` hand their results to MLflow run writers;
a model URI (``models:/...``) is resolved by the MLflow store. Those live in
:mod:`pneumonia_cnn.tracking`, which imports the estimator and the analyses (it logs them),
so they cannot import it back. They name it here instead, the way entry points name
plug-ins, and :func:`plugin` imports it when the switch is on. ``tools/structure.py`` lists
these references apart from imports.
"""

from __future__ import annotations

import importlib

__all__ = ["PLUGINS", "plugin"]

#: name -> "module:attribute"
PLUGINS = {
    "fit_logger": "pneumonia_cnn.tracking:FitLogger",
    "stress_on_fit": "pneumonia_cnn.analysis:StressOnFit",
    "evaluation_run": "pneumonia_cnn.tracking:log_evaluation_run",
    "calibration_run": "pneumonia_cnn.tracking:log_calibration_run",
    "adaptation_run": "pneumonia_cnn.tracking:log_adaptation_run",
    "model_folder": "pneumonia_cnn.tracking:model_folder",
}


def plugin(name: str):
    """The object registered under ``name`` in :data:`PLUGINS`, imported now."""
    module, _, attr = PLUGINS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
