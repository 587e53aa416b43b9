"""``PneumoniaCNN``: a scikit-learn classifier for chest X-rays, built on scikeras."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import scipy.sparse as sp
from scikeras.wrappers import KerasClassifier
from sklearn.metrics import accuracy_score
from sklearn.utils import ClassifierTags
from sklearn.utils._param_validation import Integral, Interval, Real, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from . import __version__, fit_run
from .data import (
    DataError,
    ImageData,
    canonical_labels,
    grouped_split,
    image_fingerprints,
    load_any,
)
from .folders import META_FILE, MODEL_FILE, atomic_model_folder
from .model import build_model, ensemble_model
from .scores import check_probabilities
from .streaming import CHUNK, ImageStream, stream_batches
from .tracking import MLflowLogger, deferred_interrupts

__all__ = ["PneumoniaCNN", "MODEL_FILE", "META_FILE", "FORMAT_VERSION"]

FORMAT_VERSION = 3
#: Formats :meth:`PneumoniaCNN.load` reads (3 added the validation hold-out's scores).
READABLE_FORMATS = (1, 2, 3)
#: Architectures that ``filters=None`` (and ``convs_per_block``, ``global_pooling``,
#: ``dense_units`` None) choose by image size. "standard" is the 96-px default (4 halvings
#: to 6 x 6, a flattened head); "small", below :data:`SMALL_IMAGE` px, keeps resolution
#: for longer (3 halvings, two convolutions per block) and pools globally: at 28 px the
#: standard network ends at 1 x 1 after four halvings. Chosen on PneumoniaMNIST's own
#: train / val splits (README, "Small images").
ARCHITECTURES = {
    "standard": {"filters": (8, 16, 32, 64), "convs_per_block": 1, "global_pooling": False,
                 "dense_units": 64, "augmentation": "acquisition"},
    "small": {"filters": (32, 64, 128), "convs_per_block": 2, "global_pooling": True,
              "dense_units": 0, "augmentation": "light"},
}
SMALL_IMAGE = 64
#: Parameters that format 1 did not know, with the value that models of that format used:
#: a folder saved before a parameter existed must not pick up a newer default.
_FORMAT1_VALUES = {"intensity_norm": None, "label_smoothing": 0.0, "n_networks": 1, "tta": 0,
                   "target_sensitivity": 0.95, "border_mask": 0.0}
#: Every saved format before 3 stored its network's parameters explicitly; these are the
#: values of that time for any that were absent (there are none in files of format 2).
_FORMAT1_VALUES.update({"filters": (8, 16, 32, 64), "convs_per_block": 1,
                        "global_pooling": False, "dense_units": 64,
                        "augmentation": "acquisition"})


class PneumoniaCNN(KerasClassifier):
    """Convolutional network that tells PNEUMONIA from NORMAL chest X-rays.

    A scikit-learn classifier (a scikeras ``KerasClassifier``): ``fit``, ``predict``,
    ``predict_proba`` and ``score`` take a data folder (class sub-folders), a list or array of
    image files, or an image array of shape ``(n, h, w)`` / ``(n, h, w, 1 or 3)`` with pixel
    values 0-255. It works with ``clone``, ``GridSearchCV`` (with ``groups=``), pipelines
    and pickle, and saves to a documented folder format with :meth:`save`.

    Parameters
    ----------
    image_size : int, default=96
        Images are resized to ``image_size x image_size`` grayscale.
    filters : tuple of int or None, default=None
        Filters of each convolution block (one block per entry, each halving the resolution).
        None chooses by ``image_size`` (see :data:`ARCHITECTURES`): (8, 16, 32, 64) from 64
        px up; (32, 64, 128) for small images, which cannot afford four halvings.
    kernel_size : int, default=3
        Convolution kernel size.
    convs_per_block : int or None, default=None
        Convolutions per block; None: 1 from 64 px up, 2 for small images.
    pooling : {"max", "average"}, default="max"
        Pooling after each block.
    batch_norm : bool, default=True
        Batch normalisation after every convolution.
    global_pooling : bool or None, default=None
        Global average pooling (True) or flatten (False) before the head; None: flatten
        from 64 px up, global pooling for small images.
    dense_units : int or None, default=None
        Hidden units of the classifier head (0 for none); None: 64 from 64 px up, 0 for
        small images.
    dropout : float, default=0.3
        Dropout before the output unit.
    border_mask : float, default=0.0
        Share of the image side blanked on every edge inside the network (side markers and
        film corners are shortcuts that do not travel between sites); 0 keeps it all.
    augmentation : None, str or dict, default="auto"
        None, ``"light"``, ``"standard"``, ``"heavy"``, ``"acquisition"`` or a dict of
        factors; see :mod:`pneumonia_cnn.augmentation` (no horizontal flips unless asked for).
        "auto": "acquisition" from 64 px up, "light" for small images (blur, noise and
        sharpening destroy a 28-px film).
    intensity_norm : {None, "standardize", "equalize", "clahe"}, default="clahe"
        Per-image intensity normalisation before the network, at fit and predict time (see
        :mod:`pneumonia_cnn.preprocessing`).
    label_smoothing : float, default=0.0
        Label smoothing of the binary cross-entropy (0 = off): targets 0/1 become
        ``s/2`` / ``1 - s/2``, which keeps probabilities away from 0 and 1.
    n_networks : int, default=3
        Train this many networks with different seeds (same data, same validation hold-out)
        and average their probabilities: a deep ensemble, still one estimator and one saved
        model. Fit time grows with it.
    tta : int, default=0
        Test-time augmentation: average the prediction over the original image and this many
        fixed views (small zooms, rotations and shifts; see
        :data:`pneumonia_cnn.augmentation.TTA_VIEWS`, at most 8). 0 = off.
    learning_rate : float, default=1e-3
        Initial learning rate (``optimizer__learning_rate``, if given, wins).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Per-epoch cosine decay from ``learning_rate`` to 1% of it over ``epochs``, or constant.
    epochs : int, default=14
        Maximum number of epochs.
    batch_size : int, default=32
        Mini-batch size.
    class_weight : "balanced", dict or None, default="balanced"
        Weights of the classes in the loss; "balanced" counters the ~1:3 imbalance of the
        Kaggle data. None turns it off.
    validation_fraction : float, default=0.15
        Fraction of the training patients held out (patient-grouped, stratified) to monitor
        validation loss / accuracy / ROC AUC every epoch and for early stopping. 0 trains on
        everything for ``epochs`` epochs.
    patience : int or None, default=6
        Early stopping: stop when validation ROC AUC has not improved for this many epochs
        and restore the best epoch's weights. None trains for ``epochs`` epochs but still
        restores the best weights. Needs ``validation_fraction > 0``.
    threshold : float, "target", "conformal" or "auto", default="target"
        The operating point: ``predict`` says PNEUMONIA when its probability is >= the
        threshold. "target" chooses it on the patient-grouped validation hold-out: the
        Harrell-Davis estimate of the threshold that keeps ``target_sensitivity`` of its
        PNEUMONIA films (:func:`pneumonia_cnn.evaluation.threshold_for_sensitivity_hd`; an
        average over all their scores, so a seed moves it little). "conformal" takes the
        split-conformal order statistic instead
        (:func:`pneumonia_cnn.evaluation.threshold_for_sensitivity`; the previous default,
        which one or two films decide). "auto" maximises sensitivity + specificity
        (Youden's J) there. All fall back to 0.5, with a warning, without a hold-out. A
        number is used as it is. See ``threshold_``. No rule chosen on the training site
        survives a new site: adapt to its films (:func:`pneumonia_cnn.adaptation.adapt`,
        no labels) or calibrate on its labelled films
        (:func:`pneumonia_cnn.calibration.calibrate`).
    target_sensitivity : float, default=0.95
        The sensitivity ``threshold="target"`` or ``"conformal"`` keeps (ignored for other
        thresholds).
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling, augmentation, dropout and the validation
        split; with an int, fits on the same data and machine are identical.
    optimizer : str or keras optimizer, default="adam"
        Any Keras optimizer; routed parameters such as ``optimizer__weight_decay`` work.
    loss : str, default="binary_crossentropy"
        Keras loss.
    metrics : list or None, default=None
        Keras metrics; None means accuracy and ROC AUC (history keys ``accuracy``, ``auc``).
    callbacks : list of keras.callbacks.Callback or None, default=None
        Extra callbacks for ``fit`` (logging, checkpoints...).
    verbose : int, default=0
        Keras verbosity of ``fit`` (2 prints one line per epoch).
    tracking : bool, default=True
        Log the fit to MLflow: parameters, data, per-epoch metrics, fit time, history plot
        and the model (see :mod:`pneumonia_cnn.tracking`).
    tracking_uri : str or None, default=None
        MLflow tracking URI; None means ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``
        in the current folder (artifacts in ``./mlruns``).
    experiment : str, default="pneumonia-cnn"
        MLflow experiment name.
    **kwargs
        Other scikeras parameters, including routed ones (``optimizer__*``, ``fit__*``,
        ``predict__*``, ``callbacks__*``).

    Attributes
    ----------
    model_ : keras.Model
        The trained network.
    history_ : dict
        Per-epoch ``loss``, ``accuracy``, ``auc`` and their ``val_`` counterparts.
    classes_ : ndarray of str
        ``["NORMAL", "PNEUMONIA"]`` (sorted labels); ``predict_proba[:, 1]`` is P(PNEUMONIA).
    best_epoch_ : int or None
        1-based epoch whose weights were kept (None without validation).
    n_train_ : int
        Images used for gradient steps (after the validation hold-out).
    fit_time_ : float
        Seconds spent in ``fit`` (loading included).
    mlflow_run_id_ : str or None
        The MLflow run of the fit (None with ``tracking=False``).
    mlflow_model_id_ : str or None
        The MLflow logged model of the fit (``models:/<id>`` loads it); evaluations link
        their metrics to it.
    threshold_ : float
        The decision threshold in use (``threshold``, or the one "target" or "auto"
        chose).
    validation_scores_, validation_labels_ : ndarray or None
        P(PNEUMONIA) and labels (1 = PNEUMONIA) of the patient-grouped validation hold-out
        (saved with the model): the threshold rule and site adaptation
        (:func:`pneumonia_cnn.adaptation.adapt`) start from them. None without a hold-out.
    train_fingerprints_ : list of str
        Pixel hashes of the training images (saved with the model), so that ``evaluate``
        can warn when evaluation images were trained on.
    interrupted_ : bool
        True if the fit was interrupted (Ctrl-C / SIGTERM); ``model_`` then holds the best
        weights of the epochs that finished.

    Examples
    --------
    >>> clf = PneumoniaCNN(epochs=10).fit("chest_xray/train")      # doctest: +SKIP
    >>> clf.predict_proba("chest_xray/test")[:, 1]                 # doctest: +SKIP
    """

    #: scikit-learn parameter validation (checked at the start of ``fit``; the CLI checks the
    #: same before loading any data): a wrong value is named with what it must be.
    _parameter_constraints = {
        "image_size": [Interval(Integral, 8, None, closed="left")],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "convs_per_block": [Interval(Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"max", "average"})],
        "batch_norm": ["boolean"],
        "global_pooling": ["boolean", None],
        "dense_units": [Interval(Integral, 0, None, closed="left"), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "border_mask": [Interval(Real, 0, 0.5, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"cosine", "constant"}), None],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 0.5, closed="both")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "tracking": ["boolean"],
    }

    def __init__(
        self,
        *,
        image_size=96,
        filters=None,
        kernel_size=3,
        convs_per_block=None,
        pooling="max",
        batch_norm=True,
        global_pooling=None,
        dense_units=None,
        dropout=0.3,
        border_mask=0.0,
        augmentation="auto",
        intensity_norm="clahe",
        label_smoothing=0.0,
        n_networks=3,
        tta=0,
        learning_rate=1e-3,
        lr_schedule="cosine",
        epochs=14,
        batch_size=32,
        class_weight="balanced",
        validation_fraction=0.15,
        patience=6,
        threshold="target",
        target_sensitivity=0.95,
        random_state=None,
        optimizer="adam",
        loss="binary_crossentropy",
        metrics=None,
        callbacks=None,
        verbose=0,
        tracking=True,
        tracking_uri=None,
        experiment="pneumonia-cnn",
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            callbacks=callbacks,
            epochs=epochs,
            batch_size=batch_size,
            class_weight=class_weight,
            random_state=random_state,
            verbose=verbose,
            **kwargs,
        )
        self.image_size = image_size
        self.filters = filters
        self.kernel_size = kernel_size
        self.convs_per_block = convs_per_block
        self.pooling = pooling
        self.batch_norm = batch_norm
        self.global_pooling = global_pooling
        self.dense_units = dense_units
        self.dropout = dropout
        self.border_mask = border_mask
        self.augmentation = augmentation
        self.intensity_norm = intensity_norm
        self.label_smoothing = label_smoothing
        self.n_networks = n_networks
        self.tta = tta
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.threshold = threshold
        self.target_sensitivity = target_sensitivity
        self.tracking = tracking
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    # -----------------------------------------------------------------------------------------
    # scikit-learn integration
    # -----------------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        # scikeras 0.13 lists BaseEstimator before ClassifierMixin, so with scikit-learn >= 1.6
        # the mixin's tags never apply: no estimator type, is_classifier() is False and
        # GridSearchCV(cv=5) silently uses unstratified KFold. Set the classifier tags here.
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags(multi_class=False)
        tags.target_tags.required = True
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True  # file paths
        tags.non_deterministic = self.random_state is None
        return tags

    # -----------------------------------------------------------------------------------------
    # Input handling
    # -----------------------------------------------------------------------------------------
    def _load(self, X, y=None, role="evaluate") -> ImageData | None:
        """The images ``X`` names -- a data source, whose splits of ``role`` are read (see
        :func:`pneumonia_cnn.sources.load_data`), an :class:`ImageData` or image files -- or
        None for an image array."""
        if isinstance(X, (str, os.PathLike)) and y is not None:
            raise ValueError("y must be None when X is a data folder: the labels come from "
                             "its class sub-folders")
        return load_any(X, self.image_size, verbose=int(self.verbose > 0), role=role)

    def _as_images(self, X, y=None, groups=None):
        """Turn a data source, a list of files or an array into ``(X uint8, y, groups)``
        (X is an :class:`ImageStream` for data too large for memory)."""
        data = self._load(X, y)
        if data is None:
            return self._validate_array(X), y, groups
        if data.y.size and y is None:
            y = data.y
        return data.X, y, data.groups if groups is None else groups

    def _validate_array(self, X) -> np.ndarray:
        if isinstance(X, ImageStream):  # decoded by the loaders at a size: check it only
            if X.shape[1:] != (self.image_size, self.image_size, 1):
                raise ValueError(f"{X!r} holds images of {X.shape[1:3]}, but image_size is "
                                 f"{self.image_size}: load the data at that size")
            return X
        if sp.issparse(X):
            raise TypeError("Sparse data was passed for X, but dense data is required: "
                            "PneumoniaCNN takes image arrays, folders or files")
        try:
            arr = np.asarray(X)
        except ValueError as exc:
            raise ValueError(f"X could not be turned into an image array: {exc}") from exc
        if arr.dtype.kind not in "uif" and arr.dtype != bool:
            raise ValueError(f"X must hold numeric pixel values 0-255, got dtype {arr.dtype}; "
                             "pass a data folder or a list of image files to load images")
        if arr.ndim == 3 and arr.shape[-1] in (1, 3):
            # (h, w, 1 or 3) one image, or (n, h, w) images 1 or 3 pixels wide? never guess
            raise ValueError(
                f"X has shape {arr.shape}: one image of {arr.shape[0]}x{arr.shape[1]} pixels "
                f"with {arr.shape[2]} channel(s), or {arr.shape[0]} images of "
                f"{arr.shape[1]}x{arr.shape[2]} pixels? Pass one image as X[np.newaxis] "
                "(shape (1, height, width, channels)); 3-D arrays are read as (n, height, "
                "width) and images must be wider than 3 pixels")
        if arr.ndim == 3:
            arr = arr[..., np.newaxis]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise ValueError(f"X must be an image array of shape (n, height, width) or "
                             f"(n, height, width, 1 or 3), got shape {arr.shape}; pass a data "
                             "folder or a list of image files to load images")
        if arr.shape[0] == 0:
            raise ValueError("X holds no images (found array with 0 sample(s))")
        if arr.dtype != np.uint8:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError("X contains NaN or infinity; pixel values must be finite 0-255")
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0 or hi > 255:
                raise ValueError(f"X must hold pixel values 0-255, got values from {lo:g} to "
                                 f"{hi:g}; rescale them (e.g. 16-bit images: X / 257)")
            if arr.dtype.kind == "f" and hi <= 1.0 and arr.size > 1:
                warnings.warn("X looks scaled to 0-1, but PneumoniaCNN expects raw pixel "
                              "values 0-255 (it rescales inside the model): multiply by 255",
                              UserWarning, stacklevel=3)
        if arr.shape[-1] == 3:  # RGB -> luminance, as the loader does (ITU-R 601-2)
            arr = (arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        if arr.shape[1:3] != (self.image_size, self.image_size):
            arr = keras.ops.convert_to_numpy(keras.ops.image.resize(
                arr.astype(np.float32), (self.image_size, self.image_size), antialias=True))
        if arr.dtype != np.uint8:  # one dtype in and out: 8-bit pixels, 4x less memory
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return arr

    def _stream_seed(self):
        """Seed of a stream's per-epoch shuffles (None when unseeded)."""
        seed = getattr(self, "_random_state", None)
        return int(seed) if isinstance(seed, (int, np.integer)) else None

    def _validate_data(self, X=None, y=None, reset=False, y_numeric=False):
        """scikeras' input checks; an :class:`ImageStream` is checked by its shape instead of
        being read into memory (``check_array`` would)."""
        if not isinstance(X, ImageStream):
            return super()._validate_data(X, y, reset=reset, y_numeric=y_numeric)
        if y is not None:
            _, y = super()._validate_data(None, y, reset=reset, y_numeric=y_numeric)
        if reset:
            self.X_dtype_, self.X_shape_, self.n_features_in_ = X.dtype, X.shape, X.shape[1]
        elif X.shape[1:] != tuple(self.X_shape_[1:]):
            raise ValueError(f"X has shape {X.shape[1:]}, but this {type(self).__name__} is "
                             f"expecting X of shape {tuple(self.X_shape_[1:])}")
        return X, y

    # -----------------------------------------------------------------------------------------
    # Model
    # -----------------------------------------------------------------------------------------
    @property
    def feature_encoder(self):
        """scikeras' input transformer: per-image intensity normalisation (``intensity_norm``),
        applied alike to training, validation and prediction images."""
        from .preprocessing import IntensityNormalizer

        return IntensityNormalizer(self.intensity_norm)

    def _keras_build_fn(self, meta, compile_kwargs):
        members = getattr(self, "_members", None)
        if members:  # a fitted ensemble: average the members' outputs
            model = ensemble_model(members)
        else:
            arch = self.architecture()
            model = build_model(
                meta["X_shape_"][1:],
                filters=arch["filters"],
                kernel_size=self.kernel_size,
                convs_per_block=arch["convs_per_block"],
                pooling=self.pooling,
                batch_norm=self.batch_norm,
                global_pooling=arch["global_pooling"],
                dense_units=arch["dense_units"],
                dropout=self.dropout,
                border_mask=self.border_mask,
                augmentation=arch["augmentation"],
                seed=self._random_state,
            )
        optimizer = compile_kwargs["optimizer"]
        if "optimizer__learning_rate" not in self.get_params() and isinstance(
                self.optimizer, (str, type)):
            optimizer.learning_rate = self.learning_rate
        if compile_kwargs.get("metrics") is None:
            compile_kwargs["metrics"] = [keras.metrics.BinaryAccuracy(name="accuracy"),
                                         keras.metrics.AUC(name="auc")]
        if self.label_smoothing:
            loss = compile_kwargs.get("loss")  # scikeras turns the name into a class or object
            if loss in ("binary_crossentropy", keras.losses.BinaryCrossentropy) or isinstance(
                    loss, keras.losses.BinaryCrossentropy) or getattr(
                    loss, "__name__", "") == "binary_crossentropy":
                compile_kwargs["loss"] = keras.losses.BinaryCrossentropy(
                    label_smoothing=float(self.label_smoothing))
            else:
                raise ValueError(f"label_smoothing needs loss='binary_crossentropy', got "
                                 f"{self.loss!r}: set label_smoothing=0 or use that loss")
        model.compile(**compile_kwargs)
        return model

    def _initialize_callbacks(self):
        super()._initialize_callbacks()
        own = []
        if self.lr_schedule == "cosine":
            own.append(_CosineSchedule(self.epochs))
        elif self.lr_schedule not in ("constant", None):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got "
                             f"{self.lr_schedule!r}")
        if getattr(self, "_validation", None) is not None:
            own.append(keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max",
                patience=self.patience if self.patience is not None else 10**9,
                restore_best_weights=True, start_from_epoch=0, verbose=0))
        self._recorder = _BestWeights()
        own.append(self._recorder)
        if getattr(self, "_logger", None) is not None:
            own.append(self._logger)
        own.insert(0, _HoldInterruptsWhileTracing())
        self._own_callbacks = own
        self._fit_callbacks = own + self._fit_callbacks

    def _fit_keras_model(self, X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs):
        if getattr(self, "_validation", None) is not None:
            Xv, yv = self._validation
            kwargs["validation_data"] = (self.feature_encoder_.transform(Xv),
                                         self.target_encoder_.transform(yv))
        model = self.model_
        keras_fit = model.fit

        def fit_from_memory(x=None, y=None, batch_size=None, sample_weight=None, shuffle=True,
                            validation_split=0.0, validation_data=None, **fit_args):
            if isinstance(x, ImageStream) and not validation_split:  # from disk, batch by batch
                batch_size = batch_size or 32
                if validation_data is not None:
                    validation_data = stream_batches(*validation_data, batch_size=batch_size)
                return keras_fit(stream_batches(x, y, sample_weight, batch_size=batch_size,
                                                shuffle=shuffle, seed=self._stream_seed()),
                                 shuffle=False, validation_data=validation_data, **fit_args)
            if validation_split or not isinstance(x, np.ndarray):  # not ours: as Keras does
                return keras_fit(x=x, y=y, batch_size=batch_size, sample_weight=sample_weight,
                                 shuffle=shuffle, validation_split=validation_split,
                                 validation_data=validation_data, **fit_args)
            batch_size = batch_size or 32
            if validation_data is not None and isinstance(validation_data[0], ImageStream):
                validation_data = stream_batches(*validation_data, batch_size=batch_size)
            elif validation_data is not None:
                validation_data = _in_memory_batches(*validation_data, batch_size=batch_size)
            return keras_fit(_in_memory_batches(x, y, sample_weight, batch_size=batch_size,
                                                shuffle=shuffle),
                             shuffle=False, validation_data=validation_data, **fit_args)

        model.fit = fit_from_memory  # scikeras calls model_.fit(x=X, y=y, **fit_args)
        try:
            super()._fit_keras_model(X, y, sample_weight, warm_start, epochs, initial_epoch,
                                     **kwargs)
        finally:
            del model.fit
        # scikeras renames Keras' "auc" to "a_u_c" (but keeps "val_auc"): undo that.
        if "a_u_c" in self.history_:
            self.history_["auc"] = self.history_.pop("a_u_c")

    # -----------------------------------------------------------------------------------------
    # Public API
    # -----------------------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None, *, groups=None, **kwargs):
        """Train on a data folder, a list of image files or an image array.

        Parameters
        ----------
        X : str, path-like, sequence of paths, or array of shape (n, h, w[, c])
            A folder with class sub-folders (labels and patient ids come from it), image
            files, or pixel values 0-255.
        y : array-like of shape (n,), default=None
            Labels; required unless X is a folder.
        sample_weight : array-like of shape (n,), default=None
            Per-image weights (multiplied with ``class_weight``).
        groups : array-like of shape (n,), default=None
            Patient ids for the validation hold-out; taken from the file names when X is a
            folder or a list of files; otherwise every image is its own patient.
        **kwargs
            Passed to ``keras.Model.fit``.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        self.check_params()
        if y is not None and not isinstance(X, (str, os.PathLike, ImageData)):
            y = self._validate_labels(y)  # labels first: their errors are the clearest
        data = self._load(X, y, role="train")  # a source with splits: its training split(s)
        data_root = getattr(data, "root", None)
        X, y, groups = self._as_images(X if data is None else data, y, groups)
        if y is None:
            raise ValueError("y is required when X is an array or a list of files")
        y = self._validate_labels(y)
        check_consistent_length(X, y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            check_consistent_length(X, sample_weight)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        check_consistent_length(y, groups)

        # pixel hashes of the training images, so that evaluate can warn about overlap
        self.train_fingerprints_ = image_fingerprints(X)

        run = fit_run.start(self, data_root, X, y, groups) if self.tracking else None
        self.mlflow_run_id_ = run.run_id if run is not None else None
        self.checkpoint_run_id_ = None
        self.interrupted_ = False
        try:
            if int(self.n_networks) > 1:
                validation = self._fit_ensemble(X, y, sample_weight, groups, run, start)
            else:
                validation = self._fit_network(X, y, sample_weight, groups, run, start,
                                               **kwargs)
            self.history_ = dict(self.history_)
            # predictions trace TensorFlow graphs, where an interrupt could be swallowed
            # (training then ran on to the end): hold it until they are done
            with deferred_interrupts():
                self._check_not_diverged(X)
                self.threshold_ = self._choose_threshold(*(validation or (None, None)))
            self.fit_time_ = time.perf_counter() - start
        except BaseException as exc:
            # whatever stopped the fit, and wherever (a split, the threshold's predict...),
            # its run must not stay RUNNING; ending a run twice is harmless
            if run is not None:
                run.end_after_error(exc)
            raise
        if run is not None:
            fit_run.finish(self, run, data_root, validation)
        return self

    def architecture(self) -> dict:
        """The network's ``filters``, ``convs_per_block``, ``global_pooling``,
        ``dense_units`` and ``augmentation``: the parameters where given (None, or "auto"
        for augmentation, is not given), else the :data:`ARCHITECTURES` entry for
        ``image_size`` (``"small"`` below :data:`SMALL_IMAGE` px)."""
        preset = ARCHITECTURES["small" if int(self.image_size) < SMALL_IMAGE else "standard"]
        given = {"filters": self.filters, "convs_per_block": self.convs_per_block,
                 "global_pooling": self.global_pooling, "dense_units": self.dense_units}
        out = {k: (preset[k] if v is None else v) for k, v in given.items()}
        out["augmentation"] = (preset["augmentation"] if isinstance(self.augmentation, str)
                               and self.augmentation == "auto" else self.augmentation)
        if isinstance(out["filters"], list):
            out["filters"] = tuple(out["filters"])
        return out

    def learned_nothing(self) -> str | None:
        """Why the fitted network is no usable model (it ranks its validation hold-out no
        better than chance), or None. ``fit`` warns with it; the CLI refuses to save such
        a model."""
        scores = getattr(self, "validation_scores_", None)
        if scores is None:
            return None
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(self.validation_labels_, scores))
        if auc > 0.5:
            return None
        return (f"the fitted network ranks its validation hold-out no better than chance "
                f"(ROC AUC {auc:.3f}): it has learned nothing usable; check the labels, "
                f"train longer or lower the learning rate (now {self.learning_rate:g})")

    def _check_not_diverged(self, X) -> None:
        """A fit whose network gives non-finite scores (a learning rate that blew the weights
        up) is an error, not a model: ``predict`` would answer NaN for every film."""
        rows = np.arange(min(len(X), 32))
        sample = X[rows] if not isinstance(X, ImageStream) else X[rows].read()
        scores = self.predict_proba(sample)[:, 1]
        if not np.isfinite(scores).all():
            raise ValueError(
                "the fit diverged: the trained network gives non-finite probabilities (NaN "
                f"or infinity) for {int((~np.isfinite(scores)).sum())} of {len(scores)} "
                f"training images; nothing usable was learned. Lower learning_rate (now "
                f"{self.learning_rate:g}), keep batch_norm=True, or use optimizer='adam'")

    def check_params(self) -> None:
        """Validate every parameter before any work, naming the parameter and what it must
        be (``fit`` calls it first; so does the CLI, before loading data)."""
        from sklearn.utils._param_validation import InvalidParameterError

        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise ValueError(str(exc)) from None
        filters = self.architecture()["filters"]
        if (not isinstance(filters, (tuple, list)) or not filters
                or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool)
                           and f >= 1 for f in filters)):
            raise ValueError(f"filters must be a non-empty tuple of positive ints, one per "
                             f"convolution block, e.g. (16, 32, 64); got {filters!r}")
        if self.image_size < 2 ** len(filters):
            raise ValueError(f"image_size={self.image_size} is too small for {len(filters)} "
                             f"convolution blocks (filters={tuple(filters)}): each block halves "
                             f"the image, so image_size must be at least {2 ** len(filters)}; "
                             "use a larger image_size or fewer filters")
        from .augmentation import augmentation_factors

        augmentation_factors(self.architecture()["augmentation"])  # unknown preset or key
        self._check_shift_params()

    def _check_shift_params(self) -> None:
        """Validate the robustness parameters before any work (named as the user wrote them)."""
        from .augmentation import TTA_VIEWS
        from .preprocessing import check_intensity_norm

        check_intensity_norm(self.intensity_norm)
        if not isinstance(self.n_networks, (int, np.integer)) or self.n_networks < 1:
            raise ValueError(f"n_networks must be an int >= 1, got {self.n_networks!r}")
        if (not isinstance(self.tta, (int, np.integer)) or isinstance(self.tta, bool)
                or not 0 <= self.tta <= len(TTA_VIEWS)):
            raise ValueError(f"tta must be an int from 0 (off) to {len(TTA_VIEWS)}, "
                             f"got {self.tta!r}")
        t = self.target_sensitivity
        if self.threshold in ("target", "conformal") and (isinstance(t, bool) or not isinstance(
                t, (int, float, np.floating)) or not 0 < t <= 1):
            raise ValueError(f"target_sensitivity must be a number in (0, 1] for "
                             f"threshold='target', got {t!r}")
        if not (self.threshold in ("target", "conformal", "auto") or (
                isinstance(self.threshold, (int, float, np.floating))
                and not isinstance(self.threshold, bool) and 0 <= self.threshold <= 1)):
            raise ValueError(f"threshold must be a number in [0, 1], 'target', 'conformal' or "
                             f"'auto', got {self.threshold!r}")
        ls = self.label_smoothing
        if not isinstance(ls, (int, float, np.floating)) or not 0 <= ls < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {ls!r}")

    def _split_validation(self, y, groups, seed=None):
        """Patient-grouped (train, validation) indices, or None without a hold-out. An
        ensemble's members all use the ensemble's split (``_split_random_state``)."""
        if not self.validation_fraction:
            return None
        if seed is None:
            seed = getattr(self, "_split_random_state", self.random_state)
        return grouped_split(y, groups, self.validation_fraction, random_state=seed)

    def _fit_network(self, X, y, sample_weight, groups, run, start, **kwargs):
        """Train one network (scikeras' fit); returns the validation hold-out or None."""
        self._validation = None
        self.n_train_ = len(y)
        split = self._split_validation(y, groups)
        if split is not None:
            tr, va = split
            self._validation = (X[va], y[va])
            X, y = X[tr], y[tr]
            if sample_weight is not None:
                sample_weight = sample_weight[tr]
            self.n_train_ = len(tr)
        if self.random_state is not None and isinstance(self.random_state, (int, np.integer)):
            keras.utils.set_random_seed(int(self.random_state))
        self._logger = MLflowLogger(run) if run is not None else None
        try:
            super().fit(X, y, sample_weight=sample_weight, **kwargs)
        except KeyboardInterrupt:
            self._salvage(run, time.perf_counter() - start)
            raise
        except BaseException as exc:
            if run is not None:
                run.end_after_error(exc)
            raise
        finally:
            validation = self._validation
            for c in getattr(self, "_own_callbacks", []):
                if isinstance(c, _HoldInterruptsWhileTracing):
                    c.release_quietly()  # never leave Ctrl-C held after a failed first batch
            # drop the per-fit helpers (they hold the model and the MLflow client): the
            # fitted estimator stays picklable and light
            own = getattr(self, "_own_callbacks", [])
            self._fit_callbacks = [c for c in getattr(self, "_fit_callbacks", [])
                                   if all(c is not o for o in own)]
            self._validation = self._logger = self._recorder = None
            self._own_callbacks = []
        self.best_epoch_ = None
        if validation is not None and self.history_.get("val_auc"):
            self.best_epoch_ = int(np.argmax(self.history_["val_auc"])) + 1
        return validation

    def _fit_ensemble(self, X, y, sample_weight, groups, run, start):
        """Train ``n_networks`` members with different seeds on the same split and combine
        them into one averaging Keras model; returns the validation hold-out or None."""
        from sklearn.base import clone

        seeds = _member_seeds(self.random_state, int(self.n_networks))
        # one validation split for all members and the ensemble itself (its threshold and
        # stress test are then measured on patients no member trained on)
        split_seed = (self.random_state if isinstance(self.random_state, (int, np.integer))
                      else int(np.random.default_rng().integers(2**31 - 1)))
        members = []
        try:
            for i, seed in enumerate(seeds, start=1):
                # members predict with 0.5: the ensemble chooses its own operating point
                member = clone(self).set_params(n_networks=1, tracking=False, tta=0,
                                                random_state=seed, threshold=0.5,
                                                target_sensitivity=None)
                member._split_random_state = split_seed
                members.append(member)
                if self.verbose:
                    print(f"Network {i}/{len(seeds)} of the ensemble", flush=True)
                member.fit(X, y, sample_weight=sample_weight, groups=groups)
                if run is not None:
                    run.log_metrics({"member/fit_time_s": member.fit_time_,
                                     **({"member/best_val_roc_auc": max(
                                         member.history_["val_auc"])}
                                        if member.history_.get("val_auc") else {})}, step=i)
        except KeyboardInterrupt:
            done = [m for m in members if getattr(m, "history_", None) and hasattr(m, "model_")]
            if done:  # keep what was trained: the finished members (and the interrupted one)
                self._combine(done, X, y)
            self.interrupted_ = True
            self.fit_time_ = time.perf_counter() - start
            if run is not None:
                run.end_after_error(KeyboardInterrupt())
            raise
        except BaseException as exc:
            if run is not None:
                run.end_after_error(exc)
            raise
        self._combine(members, X, y)
        split = self._split_validation(y, groups, seed=split_seed)
        if split is None:
            return None
        return X[split[1]], y[split[1]]

    def _combine(self, members, X, y) -> None:
        self._members = [m.model_ for m in members]
        one_per_class = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]
        try:  # builds the averaging model (the labels set up scikeras' target encoder)
            KerasClassifier.initialize(self, np.asarray(X[one_per_class]), y[one_per_class])
        finally:
            self._members = None
        self.member_histories_ = [dict(m.history_) for m in members]
        self.history_ = dict(members[0].history_)
        self.best_epoch_ = members[0].best_epoch_
        self.n_train_ = members[0].n_train_

    def _salvage(self, run, elapsed: float) -> None:
        """After Ctrl-C / SIGTERM: keep the best weights of the finished epochs (in
        ``model_``), log them to the run as artifact ``checkpoint/`` and end it as KILLED.
        A failing tracking store is only warned about: the interrupt is what propagates."""
        recorder = getattr(self, "_recorder", None)
        self.interrupted_ = True
        salvaged = recorder is not None and bool(recorder.history) and hasattr(self, "model_")
        if salvaged:
            recorder.restore(self.model_)
            self.history_ = dict(recorder.history)
            self.best_epoch_ = recorder.best_epoch
            self.fit_time_ = elapsed
        if run is not None:
            fit_run.log_interrupted(self, run, elapsed, len(recorder.epochs) if salvaged else 0,
                                    salvaged)

    @staticmethod
    def _validate_labels(y) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be one label per image (1-D), got shape {y.shape}")
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"Only binary classification is supported. PneumoniaCNN needs "
                             f"exactly 2 classes in y (NORMAL and PNEUMONIA), got "
                             f"{len(classes)}: {classes.tolist()[:5]}. A data folder needs "
                             "images in both its NORMAL/ and PNEUMONIA/ sub-folders.")
        return canonical_labels(y)  # NORMAL / PNEUMONIA in any case, or 0 / 1; else refused

    def predict_proba(self, X, **kwargs):
        """Probabilities ``[P(NORMAL), P(PNEUMONIA)]`` for every image.

        Parameters
        ----------
        X : str, path-like, sequence of paths, or array of shape (n, h, w[, c])
            As in :meth:`fit`. For a folder the rows follow
            ``load_image_folder(X).paths``.

        Returns
        -------
        ndarray of shape (n, 2)
        """
        check_is_fitted(self, "model_")
        X, _, _ = self._as_images(X)
        if isinstance(X, ImageStream):  # from disk, a chunk at a time
            from .streaming import iter_chunks

            return np.concatenate([self.predict_proba(chunk, **kwargs)
                                   for chunk in iter_chunks(X, CHUNK)])
        kwargs.setdefault("verbose", 0)
        # scikeras squeezes the result for a single image to shape (2,): keep (1, 2).
        proba = super().predict_proba(X, **kwargs).reshape(len(X), -1)
        if self.tta:  # average over the original and the fixed test-time views
            from .augmentation import tta_views

            for view in tta_views(X, int(self.tta)):
                proba = proba + super().predict_proba(view, **kwargs).reshape(len(X), -1)
            proba = proba / (1 + int(self.tta))
        return proba

    def predict(self, X, **kwargs):
        """Class name of every image: PNEUMONIA when P(PNEUMONIA) >= ``threshold``."""
        check_is_fitted(self, "model_")
        proba = self.predict_proba(X, **kwargs)
        return self.classes_[(proba[:, 1] >= self._decision_threshold()).astype(int)]

    def _decision_threshold(self) -> float:
        """The threshold ``predict`` uses: ``threshold``, or the one "target" or "auto"
        chose in fit."""
        if self.threshold in ("auto", "target", "conformal"):
            return float(getattr(self, "threshold_", 0.5))
        return float(self.threshold)

    def _choose_threshold(self, X_val, y_val) -> float:
        """``threshold``; or on the validation hold-out the most specific threshold that
        reaches ``target_sensitivity``, or for "auto" Youden's J (scikit-learn's roc_curve)."""
        from sklearn.metrics import roc_curve

        from .evaluation import threshold_for_sensitivity, threshold_for_sensitivity_hd

        self.validation_scores_ = self.validation_labels_ = None
        if X_val is not None:  # kept (and saved): site adaptation starts from them
            y_pos = np.asarray(y_val) == self.classes_[1]
            if y_pos.any() and not y_pos.all():
                self.validation_scores_ = self.predict_proba(X_val)[:, 1].astype(float)
                self.validation_labels_ = y_pos.astype(int)
        problem = self.learned_nothing()
        if problem:
            warnings.warn(problem, UserWarning, stacklevel=3)
        if self.threshold not in ("auto", "target", "conformal"):
            return float(self.threshold)
        if self.validation_scores_ is None:
            warnings.warn(f"threshold={self.threshold!r} needs a validation hold-out with "
                          "both classes (validation_fraction > 0); using threshold 0.5",
                          UserWarning, stacklevel=3)
            return 0.5
        scores = self.validation_scores_
        if self.threshold == "target":
            return threshold_for_sensitivity_hd(
                np.where(self.validation_labels_ == 1, "PNEUMONIA", "NORMAL"), scores,
                float(self.target_sensitivity))
        if self.threshold == "conformal":
            return threshold_for_sensitivity(y_val, scores, float(self.target_sensitivity))
        fpr, tpr, thresholds = roc_curve(self.validation_labels_, scores)
        best = int(np.argmax(tpr - fpr))
        return float(np.clip(thresholds[best], 0.0, 1.0))

    def score(self, X, y=None, sample_weight=None):
        """Accuracy on a data folder, or on images and labels."""
        check_is_fitted(self, "model_")
        X, y, _ = self._as_images(X, y)
        if y is None:
            raise ValueError("y is required when X is an array or a list of files")
        return accuracy_score(canonical_labels(y), self.predict(X), sample_weight=sample_weight)

    # -----------------------------------------------------------------------------------------
    # Saving
    # -----------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save the fitted estimator to a folder.

        The folder holds ``model.keras`` (the Keras network: architecture and weights, in
        Keras' own format) and ``pneumonia_cnn.json`` (format version, package and library
        versions, ``classes``, the JSON-serialisable estimator parameters and the training
        history). :meth:`load` reads it back; predictions are identical.

        Returns
        -------
        pathlib.Path
            The folder.
        """
        check_is_fitted(self, "model_")
        with atomic_model_folder(path) as folder:
            self.write_files(folder)
        return Path(path)

    def write_files(self, path: Path) -> None:
        """Write the model's files into the (new, empty) folder ``path`` (``save`` does,
        inside :func:`pneumonia_cnn.folders.atomic_model_folder`; wrappers add theirs)."""
        self.model_.save(path / MODEL_FILE)
        params, dropped = {}, []
        for k, v in self.get_params().items():
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
            "classes": [str(c) for c in self.classes_],
            "image_size": int(self.image_size),
            "params": params,
            "params_not_saved": dropped,
            "history": {k: [float(x) for x in v] for k, v in self.history_.items()},
            "best_epoch": self.best_epoch_,
            "mlflow_run_id": getattr(self, "mlflow_run_id_", None),
            "mlflow_model_id": getattr(self, "mlflow_model_id_", None),
            "interrupted": bool(getattr(self, "interrupted_", False)),
            "train_fingerprints": list(getattr(self, "train_fingerprints_", None) or []),
            "threshold": self._decision_threshold(),
            "validation_scores": _list_or_none(getattr(self, "validation_scores_", None), float),
            "validation_labels": _list_or_none(getattr(self, "validation_labels_", None), int),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path, *, safe_mode: bool = True,
             tracking_uri: str | None = None) -> "PneumoniaCNN":
        """Load an estimator saved with :meth:`save`, or logged to MLflow.

        Parameters
        ----------
        path : str or path-like
            The folder written by :meth:`save`, or an MLflow model URI:
            ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/MODEL_ID``,
            ``runs:/RUN_ID/MODEL_NAME`` (see :mod:`pneumonia_cnn.registry`).
        safe_mode : bool, default=True
            Keras safe mode: refuse to deserialise code (lambda layers) from the file.
        tracking_uri : str, default=None
            The MLflow store of a URI (default ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``).

        Returns
        -------
        PneumoniaCNN
        """
        from .registry import model_folder

        with model_folder(path, tracking_uri) as (folder, info):
            est = cls._load_folder(folder, safe_mode)
        if info.get("model_id"):
            est.mlflow_model_id_ = info["model_id"]
        return est

    @classmethod
    def _load_folder(cls, path, safe_mode: bool) -> "PneumoniaCNN":
        path = Path(path)
        meta_file, model_file = path / META_FILE, path / MODEL_FILE
        if not meta_file.is_file() or not model_file.is_file():
            raise DataError(f"{path} is not a saved PneumoniaCNN: expected a folder with "
                            f"{MODEL_FILE} and {META_FILE} (written by PneumoniaCNN.save or "
                            "`pneumonia-cnn train --model-out`)")
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
            est._check_shift_params()  # a threshold of NaN or -3 is not used, whatever saved it
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
        return est


class _BestWeights(keras.callbacks.Callback):
    """Records every epoch's logs and keeps the weights of the best epoch so far (highest
    ``val_auc``, else lowest ``loss``), so an interrupted fit can keep them."""

    def __init__(self):
        super().__init__()
        self.history: dict = {}
        self.epochs: list = []
        self.best_epoch = None
        self._best = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        self.epochs.append(epoch + 1)
        score = logs.get("val_auc", -logs.get("loss", 0.0))
        if self._best is None or score > self._best:
            self._best, self.best_epoch = score, epoch + 1
            self._weights = self.model.get_weights()

    def restore(self, model):
        if self._weights is not None:
            model.set_weights(self._weights)


class _HoldInterruptsWhileTracing(keras.callbacks.Callback):
    """Hold Ctrl-C / SIGTERM from the start of training until the first batch is done, then
    deliver them.

    The first batch traces the training graph (a few seconds of TensorFlow code). A
    ``KeyboardInterrupt`` raised in the middle of it was, rarely, swallowed (training ran on)
    or surfaced as ``SystemError: bad argument to internal function``. Held, the interrupt
    arrives right after that batch, where Keras passes it on and the fit stops as promised.
    A second Ctrl-C is delivered at once (see :func:`pneumonia_cnn.tracking.deferred_interrupts`).
    """

    def __init__(self):
        super().__init__()
        self._hold = None

    def on_train_begin(self, logs=None):
        from .tracking import deferred_interrupts

        self._hold = deferred_interrupts()
        self._hold.__enter__()

    def _release(self):
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.__exit__(None, None, None)  # raises KeyboardInterrupt if one was held

    def on_train_batch_end(self, batch, logs=None):
        self._release()

    def on_train_end(self, logs=None):
        self._release()

    def release_quietly(self):
        """Release after the fit stopped for another reason (that reason is what the caller
        sees; a held Ctrl-C is dropped, the fit is over anyway)."""
        try:
            self._release()
        except KeyboardInterrupt:
            pass


class _CosineSchedule(keras.callbacks.Callback):
    """Per-epoch cosine decay of the learning rate to 1% of its initial value."""

    def __init__(self, epochs: int, floor: float = 0.01):
        super().__init__()
        self.epochs = max(int(epochs), 1)
        self.floor = floor
        self._initial = None

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        if self._initial is None:
            self._initial = float(np.asarray(keras.ops.convert_to_numpy(opt.learning_rate)))
        frac = 0.5 * (1 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))
        opt.learning_rate = self._initial * (self.floor + (1 - self.floor) * frac)


def _in_memory_batches(x, y, sample_weight=None, *, batch_size: int = 32,
                       shuffle: bool = False):
    """A ``tf.data`` pipeline over in-memory arrays, reshuffled every epoch.

    Keras builds the same from NumPy arrays, but with tf.data's default graph optimisations
    and autotuning, which re-run each time an epoch starts a new iterator: on a 2-core CPU
    that stalled the first batch of about every third epoch for 0.7-0.9 s (a tenth of the
    default fit).  Both are switched off here; the pipeline is trivial and needs neither.
    """
    import tensorflow as tf

    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(x), reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return ds.batch(batch_size).prefetch(2).with_options(options)


def _list_or_none(values, kind):
    return None if values is None else [kind(v) for v in values]


def _member_seeds(random_state, n: int) -> list:
    """Distinct seeds of the members of an ensemble (None stays None: unseeded)."""
    if random_state is None:
        return [None] * n
    if isinstance(random_state, np.random.RandomState):
        return [int(v) for v in random_state.randint(0, 2**31 - 1, size=n)]
    return [int(v) for v in np.random.SeedSequence(int(random_state)).generate_state(n) % 2**31]
