"""A saved model folder: its file names, its format versions, how it is written (whole, or
not at all) and read back (every field checked)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import keras
import numpy as np

from .. import __version__
from ..data import DataError
from ..metrics import RULES, check_probabilities, choose_threshold
from ..utils import (
    META_FILE,
    MODEL_FILE,
    MODEL_URI_SCHEMES,
    PYFUNC_FILE,
    WRAPPER_FILES,
    is_model_uri,
    model_files_folder,
    not_a_model,
)
from ._params import BACKBONE_DEFAULTS, by_backbone, check_shift_params

__all__ = ["FORMAT_VERSION", "META_FILE", "MODEL_FILE", "MODEL_URI_SCHEMES", "READABLE_FORMATS",
           "WRAPPER_FILES", "atomic_model_folder", "is_model_uri", "load_folder",
           "local_model_folder", "write_files"]

FORMAT_VERSION = 4
#: Formats :meth:`PneumoniaCNN.load` reads (3 added the validation hold-out's scores, 4 the
#: pretrained backbone).
READABLE_FORMATS = (1, 2, 3, 4)
#: Formats before 4 were all the from-scratch network.
_BEFORE_FORMAT4 = {"backbone": None, "freeze_blocks": 8}
#: Parameters that format 1 did not know, with the value that models of that format used:
#: a folder saved before a parameter existed must not pick up a newer default.
_FORMAT1_VALUES = {"intensity_norm": None, "label_smoothing": 0.0, "n_networks": 1, "tta": 0,
                   "target_sensitivity": 0.95, "border_mask": 0.0, "average_last": 0}
#: Every saved format before 3 stored its network's parameters explicitly; these are the
#: values of that time for any that were absent (there are none in files of format 2).
_FORMAT1_VALUES.update({"filters": (8, 16, 32, 64), "convs_per_block": 1,
                        "global_pooling": False, "dense_units": 64,
                        "augmentation": "acquisition"})



@contextlib.contextmanager
def local_model_folder(path):
    """The package's model folder in a local ``path``: the folder itself, or, for a pyfunc
    model folder logged by this package (``MLmodel`` inside), its ``artifacts/model``.

    Yields
    ------
    (pathlib.Path, dict)
        The folder, and ``{"model_id": ..., "run_id": ...}`` from ``MLmodel`` (else empty).
    """
    path = Path(path)
    info = {}
    folder = model_files_folder(path)
    if folder != path:  # a pyfunc model logged by this package
        import yaml

        meta = yaml.safe_load((path / PYFUNC_FILE).read_text()) or {}
        info = {"model_id": meta.get("model_id"), "run_id": meta.get("run_id")}
        if not folder.is_dir():
            raise DataError(f"{path} is an MLflow model but not one logged by "
                            "pneumonia-cnn (no artifacts/model folder inside)")
    yield folder, info


@contextlib.contextmanager
def atomic_model_folder(path):
    """Where a model folder is written: a new sibling folder that replaces ``path`` in one
    rename when everything in it is written, under an exclusive lock (``.<name>.lock``
    beside it), so that two saves to one folder at once leave one whole model, never one
    model's network with the other's threshold, and a failed save leaves the old one.

    A folder that holds other files than a model's (allowed by the CLI's ``--overwrite``)
    keeps them: its model files are replaced one by one, still under the lock.
    """
    import fcntl
    import shutil
    import uuid

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: save() writes a folder; choose a new name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # mkdir, not mkdtemp: the folder gets the user's umask (mkdtemp's is owner-only)
        tmp = path.with_name(f".{path.name}.saving-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            yield tmp
            ours = {MODEL_FILE, META_FILE, *WRAPPER_FILES}
            if path.exists() and any(p.name not in ours for p in path.iterdir()):
                for stale in ours - {p.name for p in tmp.iterdir()}:
                    (path / stale).unlink(missing_ok=True)
                for f in tmp.iterdir():
                    os.replace(f, path / f.name)
                tmp.rmdir()
            else:
                old = None
                if path.exists():
                    old = path.with_name(f".{path.name}.old-{os.getpid()}")
                    os.replace(path, old)
                os.replace(tmp, path)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_files(estimator, path: Path) -> None:
    """Write the model's files into the (new, empty) folder ``path`` (``save`` does,
    inside :func:`pneumonia_cnn.estimator.atomic_model_folder`; wrappers add theirs)."""
    estimator.model_.save(path / MODEL_FILE)
    params, dropped = {}, []
    given = estimator.get_params()
    for k in BACKBONE_DEFAULTS[None]:  # the values used, not "by backbone": a later version
        given[k] = by_backbone(estimator, k)  # may choose otherwise for None
    for k, v in given.items():
        try:
            json.dumps(v)
            params[k] = v
        except TypeError:
            dropped.append(k)
    meta = {
        "format": "pneumonia-cnn",
        "format_version": FORMAT_VERSION,
        "pneumonia_cnn_version": __version__,
        "keras_version": keras.__version__,
        "classes": [str(c) for c in estimator.classes_],
        "image_size": estimator.input_size(),
        "params": params,
        "params_not_saved": dropped,
        "history": {k: [float(x) for x in v] for k, v in estimator.history_.items()},
        "best_epoch": estimator.best_epoch_,
        "averaged_epochs": getattr(estimator, "averaged_epochs_", None),
        "mlflow_run_id": getattr(estimator, "mlflow_run_id_", None),
        "mlflow_model_id": getattr(estimator, "mlflow_model_id_", None),
        "interrupted": bool(getattr(estimator, "interrupted_", False)),
        "train_fingerprints": list(getattr(estimator, "train_fingerprints_", None) or []),
        "threshold": estimator.decision_threshold(),
        "validation_scores": _list_or_none(getattr(estimator, "validation_scores_", None), float),
        "validation_labels": _list_or_none(getattr(estimator, "validation_labels_", None), int),
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2))


def _list_or_none(values, kind):
    return None if values is None else [kind(v) for v in values]


def load_folder(cls, path, safe_mode: bool = True):
    """Read a PneumoniaCNN (class ``cls``) from a folder written by :func:`write_files`;
    every field is checked, and a damaged or foreign file is a :class:`DataError` that
    says what to do."""
    path = Path(path)
    meta_file, model_file = path / META_FILE, path / MODEL_FILE
    if not meta_file.is_file() or not model_file.is_file():
        raise DataError(not_a_model(path))
    try:
        meta = json.loads(meta_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_file} is not valid JSON ({exc}); the model folder is "
                        "damaged: save or train the model again") from exc
    if not isinstance(meta, dict) or meta.get("format") != "pneumonia-cnn":
        raise DataError(f"{meta_file} is not a pneumonia-cnn model description")
    if meta.get("format_version") not in READABLE_FORMATS:
        raise DataError(f"{path} uses model format {meta.get('format_version')!r} "
                        f"(pneumonia-cnn {meta.get('pneumonia_cnn_version')}); this version "
                        f"({__version__}) reads formats {READABLE_FORMATS}: load it with "
                        "the version that saved it, or retrain")
    saved = meta.get("params")
    if not isinstance(saved, dict):
        raise DataError(f"{meta_file} has no 'params' object: the model folder is "
                        "damaged; save or train the model again")
    params = {**_FORMAT1_VALUES, **saved}
    if meta.get("format_version") < 4:
        params.update(_BEFORE_FORMAT4)
    if isinstance(params.get("filters"), list):
        params["filters"] = tuple(params["filters"])
    # where runs go is the user's choice when the model is used, not the file's
    params["tracking_uri"] = None
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        params["experiment"] = os.environ["MLFLOW_EXPERIMENT_NAME"]
    unknown = sorted(set(params) - set(cls().get_params()) - {"optimizer__learning_rate"})
    unknown = [k for k in unknown if "__" not in k]  # routed scikeras parameters are fine
    if unknown:
        raise DataError(f"{meta_file} names parameter(s) {unknown} that this version "
                        f"({__version__}) does not know: the file is damaged or from a "
                        "newer version; load it with that version, or retrain")
    try:
        est = cls(**params)
        check_shift_params(est)  # a threshold of NaN or -3 is not used, whatever saved it
    except (TypeError, ValueError) as exc:
        raise DataError(f"{meta_file} has parameters this version cannot use ({exc}); "
                        "the file is damaged or from another version: retrain the "
                        "model") from None
    try:
        with warnings.catch_warnings():
            # the optimizer's state is not needed to predict (a refit starts afresh)
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            model = keras.saving.load_model(model_file, safe_mode=safe_mode)
    except Exception as exc:  # keras raises many types for a damaged file
        size = model_file.stat().st_size
        raise DataError(f"could not load the Keras network {model_file} ({size} bytes): "
                        "the file is damaged or truncated "
                        f"({type(exc).__name__}: {str(exc)[:200]}); copy it again or "
                        "retrain") from None
    try:
        size = int(meta["image_size"])
        classes = np.array([str(c) for c in meta["classes"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{meta_file}: 'image_size' / 'classes' are missing or damaged "
                        f"({exc}); save or train the model again") from None
    if len(classes) != 2 or len(set(classes)) != 2 or size < 1:
        raise DataError(f"{meta_file}: a PneumoniaCNN has 2 classes and a positive "
                        f"image size, the file says {classes.tolist()} and {size}; the "
                        "model folder is damaged: save or train the model again")
    est.initialize(np.zeros((len(classes), size, size, 1), np.uint8), classes)
    est.model_ = model
    est.history_ = meta.get("history", {})
    est.best_epoch_ = meta.get("best_epoch")
    est.averaged_epochs_ = meta.get("averaged_epochs")
    est.mlflow_run_id_ = meta.get("mlflow_run_id")
    est.mlflow_model_id_ = meta.get("mlflow_model_id")
    try:
        est.threshold_ = float(meta.get("threshold", 0.5))
    except (TypeError, ValueError):
        est.threshold_ = float("nan")
    if not 0.0 <= est.threshold_ <= 1.0:  # NaN fails too
        raise DataError(f"{meta_file}: threshold {meta.get('threshold')!r} is not a "
                        "probability in [0, 1]; the model folder is damaged: save or "
                        "train the model again")
    est.train_fingerprints_ = list(meta.get("train_fingerprints", []))
    est.validation_scores_ = est.validation_labels_ = None
    scores, labels = meta.get("validation_scores"), meta.get("validation_labels")
    if scores is not None:
        try:
            scores = check_probabilities(scores, "validation_scores")
            labels = np.asarray(labels, int)
            ok = scores.shape == labels.shape and set(np.unique(labels)) == {0, 1}
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"{meta_file}: 'validation_scores' / 'validation_labels' are "
                            "damaged (expected equal-length lists of probabilities and "
                            "0/1 labels of both classes); save or train the model again")
        est.validation_scores_, est.validation_labels_ = scores, labels
        # rebuilt from what it was derived from (site issue 4); folders of earlier formats
        # may hold a rule's threshold of an earlier version of that rule: kept as saved
        if est.threshold in RULES and meta.get("format_version", 0) >= 4:
            rebuilt = choose_threshold(est.threshold, labels, scores, est.target_sensitivity)
            if not np.isclose(rebuilt, est.threshold_, rtol=1e-6, atol=1e-9):
                raise DataError(
                    f"{meta_file}: its threshold {est.threshold_:.6g} is not the one its rule "
                    f"({est.threshold!r}, target_sensitivity {est.target_sensitivity:g}) "
                    f"gives on its saved hold-out scores ({rebuilt:.6g}): the file was "
                    "edited, or its settings changed after fitting; train or save the "
                    "model again")
    return est
