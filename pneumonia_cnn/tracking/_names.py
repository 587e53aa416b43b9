"""How runs are named and described: parameters, data labels, model names, dataset inputs,
library versions."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from .. import __version__
from ..data import iter_chunks

__all__ = [
    "HEADLINE_METRICS", "PLUMBING_PARAMS", "changed_params", "data_fingerprint", "data_label",
    "describe_changes", "describe_params", "image_dataset", "library_versions", "model_name",
    "model_params", "param_value", "short_value",
]

HEADLINE_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "f1",
                    "brier")
#: Estimator parameters that are plumbing, not modelling choices: never logged as params.
PLUMBING_PARAMS = frozenset({"build_fn", "model", "run_eagerly", "warm_start", "verbose",
                             "tracking", "tracking_uri", "experiment", "callbacks", "metrics"})
#: Short names of parameters in run names (a run name is read in a narrow table column).
_ABBREVIATIONS = {"augmentation": "aug", "intensity_norm": "norm", "n_networks": "nets",
                  "learning_rate": "lr", "label_smoothing": "ls", "image_size": "size",
                  "validation_fraction": "val", "target_sensitivity": "target",
                  "global_pooling": "gap", "convs_per_block": "convs", "dense_units": "dense",
                  "batch_norm": "bn", "kernel_size": "kernel", "random_state": "seed",
                  "lr_schedule": "sched", "class_weight": "cw", "batch_size": "batch",
                  "threshold": "thr"}
#: Keras history keys -> MLflow per-epoch metric names.

def library_versions() -> dict:
    """Library versions (logged as ``environment.json`` of top-level runs)."""
    import keras
    import mlflow
    import scikeras
    import sklearn
    import tensorflow as tf
    return {
        "pneumonia_cnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "scikeras": scikeras.__version__,
        "scikit-learn": sklearn.__version__,
        "mlflow": mlflow.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# Names: what a run, its parameters and its data are called
# ---------------------------------------------------------------------------------------------
def model_params(estimator) -> dict:
    """The parameters a user compares: ``get_params()`` without the plumbing."""
    return {k: v for k, v in estimator.get_params().items() if k not in PLUMBING_PARAMS}


def changed_params(estimator) -> dict:
    """The model parameters that differ from the defaults of the estimator's class."""
    try:
        defaults = model_params(type(estimator)())
    except TypeError:  # a class that needs arguments
        return model_params(estimator)
    return {k: v for k, v in model_params(estimator).items()
            if param_value(defaults.get(k, object())) != param_value(v)}


def short_value(v) -> str:
    """A parameter value as a run name shows it: tuples as ``16-32``, dicts as ``custom``."""
    if isinstance(v, (tuple, list)):
        return "-".join(map(str, v))
    if isinstance(v, dict):
        return "custom"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


#: Order of parameters in a fit's name: modelling choices first, the seed last.
_NAME_ORDER = ("augmentation", "intensity_norm", "n_networks", "filters", "image_size",
               "threshold", "target_sensitivity", "tta", "label_smoothing", "epochs",
               "learning_rate", "dropout", "dense_units")


def describe_params(params: dict, limit: int | None = None) -> str:
    """``aug=standard filters=16-32``: parameters, abbreviated, in the order given (at most
    ``limit`` of them, then ``+N``)."""
    items = [f"{_ABBREVIATIONS.get(k, k)}={short_value(v)}" for k, v in params.items()]
    if limit is not None and len(items) > limit:
        items = [*items[:limit], f"+{len(items) - limit}"]
    return " ".join(items)


def describe_changes(estimator, limit: int = 5) -> str:
    """What sets a model apart from the defaults, most telling first (``defaults`` when
    nothing does): ``nets=1 aug=None filters=4-8 +3``."""
    changed = changed_params(estimator)
    rank = {k: i for i, k in enumerate(_NAME_ORDER)}
    order = sorted(changed, key=lambda k: (k == "random_state", rank.get(k, len(rank)), k))
    return describe_params({k: changed[k] for k in order}, limit) or "defaults"


def data_label(root) -> str:
    """The short name of a data set in run names and the ``data`` param: the last two parts
    of its folder (``chest_xray/train``), ``(arrays)`` for in-memory images."""
    if not root or str(root) == "(arrays)":
        return "(arrays)"
    return "/".join(Path(str(root)).resolve().parts[-2:])


def model_name(run_name: str) -> str:
    """A logged-model name from a run name (MLflow forbids ``/ : . % " '``)."""
    import re

    name = re.sub(r"[/:.%\"'\s·]+", "-", run_name).strip("-")
    return (name or "pneumonia-cnn")[:100]


def image_dataset(name: str, X: np.ndarray, y, source=None, groups=None):
    """An MLflow dataset entity for a set of images: digest = pixel hash
    (:func:`data_fingerprint`), source = its folder, profile = class counts, patients and
    image size. Log it with :meth:`TrackedRun.log_dataset`."""
    from mlflow.entities import Dataset

    names, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    profile = {"n_images": int(len(X)), **{f"n_{n}": int(c) for n, c in zip(names, counts)}}
    if groups is not None:
        profile["n_patients"] = int(len(np.unique(groups)))
    if len(X) and np.ndim(X) >= 3:
        profile["image_size"] = f"{np.shape(X)[1]}x{np.shape(X)[2]}"
    src = str(Path(str(source)).resolve()) if source and str(source) != "(arrays)" else "(arrays)"
    return Dataset(name=name, digest=data_fingerprint(X), source_type="local",
                   source=json.dumps({"uri": src}), profile=json.dumps(profile))


def param_value(v) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    return str(v)



def data_fingerprint(X: np.ndarray) -> str:
    """Content hash of the pixels of a data set, 16 hex digits."""
    h = hashlib.sha256()
    for chunk in iter_chunks(X):  # an ImageStream too, a chunk at a time
        h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()[:16]
