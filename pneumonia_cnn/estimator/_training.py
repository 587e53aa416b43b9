"""The Keras side of training: the callbacks ``fit`` always uses (best weights, held
interrupts, cosine schedule) and the input pipelines that feed ``keras.Model.fit`` from
memory or from a stream on disk."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from ..data import ImageStream, stream_batches
from ..metrics import RULES, choose_threshold
from ..network import build_model, build_pretrained_model, ensemble_model
from ._params import by_backbone
from ..utils import deferred_interrupts

__all__ = ["BestWeights", "CosineSchedule", "HoldInterruptsWhileTracing", "WeightAverage",
           "batched_fit",
           "build_network", "check_not_diverged", "drop_fit_helpers", "hold_out_threshold",
           "in_memory_batches", "learned_nothing", "member_seeds", "own_callbacks", "salvage"]


class BestWeights(keras.callbacks.Callback):
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


class WeightAverage(keras.callbacks.Callback):
    """At the end of training, sets the model's weights (batch-norm statistics included) to
    the average of those after each of the last ``n`` epochs (stochastic weight averaging
    of the tail of the cosine schedule)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = int(n)
        self._last: list = []

    def on_epoch_end(self, epoch, logs=None):
        self._last = [*self._last, self.model.get_weights()][-self.n:]

    def on_train_end(self, logs=None):
        if self._last:
            self.model.set_weights([np.mean(ws, axis=0) for ws in zip(*self._last)])
        self._last = []


class HoldInterruptsWhileTracing(keras.callbacks.Callback):
    """Hold Ctrl-C / SIGTERM from the start of training until the first batch is done, then
    deliver them.

    The first batch traces the training graph (a few seconds of TensorFlow code). A
    ``KeyboardInterrupt`` raised in the middle of it was, rarely, swallowed (training ran on)
    or surfaced as ``SystemError: bad argument to internal function``. Held, the interrupt
    arrives right after that batch, where Keras passes it on and the fit stops as promised.
    A second Ctrl-C is delivered at once (see :func:`pneumonia_cnn.utils.deferred_interrupts`).
    """

    def __init__(self):
        super().__init__()
        self._hold = None

    def on_train_begin(self, logs=None):
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


class CosineSchedule(keras.callbacks.Callback):
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


def in_memory_batches(x, y, sample_weight=None, *, batch_size: int = 32,
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


def batched_fit(model, stream_seed):
    """A stand-in for ``model.fit`` that feeds it batches: from disk for an
    :class:`ImageStream`, through :func:`in_memory_batches` for an array. scikeras calls
    ``model_.fit(x=X, y=y, **fit_args)``; :meth:`PneumoniaCNN._fit_keras_model` puts this in
    its place for the call."""
    keras_fit = model.fit

    def fit_from_memory(x=None, y=None, batch_size=None, sample_weight=None, shuffle=True,
                        validation_split=0.0, validation_data=None, **fit_args):
        if isinstance(x, ImageStream) and not validation_split:  # from disk, batch by batch
            batch_size = batch_size or 32
            if validation_data is not None:
                validation_data = stream_batches(*validation_data, batch_size=batch_size)
            return keras_fit(stream_batches(x, y, sample_weight, batch_size=batch_size,
                                            shuffle=shuffle, seed=stream_seed),
                             shuffle=False, validation_data=validation_data, **fit_args)
        if validation_split or not isinstance(x, np.ndarray):  # not ours: as Keras does
            return keras_fit(x=x, y=y, batch_size=batch_size, sample_weight=sample_weight,
                             shuffle=shuffle, validation_split=validation_split,
                             validation_data=validation_data, **fit_args)
        batch_size = batch_size or 32
        if validation_data is not None and isinstance(validation_data[0], ImageStream):
            validation_data = stream_batches(*validation_data, batch_size=batch_size)
        elif validation_data is not None:
            validation_data = in_memory_batches(*validation_data, batch_size=batch_size)
        return keras_fit(in_memory_batches(x, y, sample_weight, batch_size=batch_size,
                                            shuffle=shuffle),
                         shuffle=False, validation_data=validation_data, **fit_args)

    return fit_from_memory


def member_seeds(random_state, n: int) -> list:
    """Distinct seeds of the members of an ensemble (None stays None: unseeded)."""
    if random_state is None:
        return [None] * n
    if isinstance(random_state, np.random.RandomState):
        return [int(v) for v in random_state.randint(0, 2**31 - 1, size=n)]
    return [int(v) for v in np.random.SeedSequence(int(random_state)).generate_state(n) % 2**31]


def build_network(estimator, meta, compile_kwargs):
    """The compiled Keras network of ``estimator`` (scikeras' ``_keras_build_fn``): the
    averaging model of fitted members, or a new network of its architecture."""
    members = getattr(estimator, "_members", None)
    if members:  # a fitted ensemble: average the members' outputs
        model = ensemble_model(members)
    elif estimator.backbone is not None:
        model = build_pretrained_model(
            meta["X_shape_"][1:], backbone=estimator.backbone,
            freeze_blocks=estimator.freeze_blocks, dropout=estimator.dropout,
            augmentation=estimator.architecture()["augmentation"],
            border_mask=estimator.border_mask, seed=estimator._random_state)
    else:
        arch = estimator.architecture()
        model = build_model(
            meta["X_shape_"][1:], filters=arch["filters"], kernel_size=estimator.kernel_size,
            convs_per_block=arch["convs_per_block"], pooling=estimator.pooling,
            batch_norm=estimator.batch_norm, global_pooling=arch["global_pooling"],
            dense_units=arch["dense_units"], dropout=estimator.dropout,
            border_mask=estimator.border_mask, augmentation=arch["augmentation"],
            seed=estimator._random_state)
    optimizer = compile_kwargs["optimizer"]
    if "optimizer__learning_rate" not in estimator.get_params() and isinstance(
            estimator.optimizer, (str, type)):
        optimizer.learning_rate = by_backbone(estimator, "learning_rate")
    if compile_kwargs.get("metrics") is None:
        compile_kwargs["metrics"] = [keras.metrics.BinaryAccuracy(name="accuracy"),
                                     keras.metrics.AUC(name="auc")]
    if estimator.label_smoothing:
        loss = compile_kwargs.get("loss")  # scikeras turns the name into a class or object
        if loss in ("binary_crossentropy", keras.losses.BinaryCrossentropy) or isinstance(
                loss, keras.losses.BinaryCrossentropy) or getattr(
                loss, "__name__", "") == "binary_crossentropy":
            compile_kwargs["loss"] = keras.losses.BinaryCrossentropy(
                label_smoothing=float(estimator.label_smoothing))
        else:
            raise ValueError(f"label_smoothing needs loss='binary_crossentropy', got "
                             f"{estimator.loss!r}: set label_smoothing=0 or use that loss")
    model.compile(**compile_kwargs)
    return model


def check_not_diverged(estimator, X) -> None:
    """A fit whose network gives non-finite scores (a learning rate that blew the weights
    up) is an error, not a model: ``predict`` would answer NaN for every film."""
    rows = np.arange(min(len(X), 32))
    sample = X[rows] if not isinstance(X, ImageStream) else X[rows].read()
    scores = estimator.predict_proba(sample)[:, 1]
    if not np.isfinite(scores).all():
        raise ValueError(
            "the fit diverged: the trained network gives non-finite probabilities (NaN "
            f"or infinity) for {int((~np.isfinite(scores)).sum())} of {len(scores)} "
            f"training images; nothing usable was learned. Lower learning_rate (now "
            f"{by_backbone(estimator, 'learning_rate'):g}), keep batch_norm=True, or use optimizer='adam'")


def learned_nothing(estimator) -> str | None:
    """See :meth:`PneumoniaCNN.learned_nothing`."""
    scores = getattr(estimator, "validation_scores_", None)
    if scores is None:
        return None
    auc = float(roc_auc_score(estimator.validation_labels_, scores))
    if auc > 0.5:
        return None
    return (f"the fitted network ranks its validation hold-out no better than chance "
            f"(ROC AUC {auc:.3f}): it has learned nothing usable; check the labels, "
            f"train longer or lower the learning rate (now "
            f"{by_backbone(estimator, 'learning_rate'):g})")


def salvage(estimator, context) -> tuple:
    """After Ctrl-C / SIGTERM in Keras' training: keep the best weights of the epochs that
    finished (in ``model_``). Returns ``(epochs finished, whether weights were kept)``."""
    recorder = getattr(estimator, "_recorder", None)
    estimator.interrupted_ = True
    salvaged = recorder is not None and bool(recorder.history) and hasattr(estimator, "model_")
    if salvaged:
        recorder.restore(estimator.model_)
        estimator.history_ = dict(recorder.history)
        estimator.best_epoch_ = recorder.best_epoch
        estimator.averaged_epochs_ = None  # an interrupted fit keeps its best epoch's weights
        estimator.fit_time_ = context.elapsed()
    return (len(recorder.epochs) if salvaged else 0), salvaged


def drop_fit_helpers(estimator) -> None:
    """Release held interrupts and drop the per-fit callbacks (they hold the model and the
    MLflow client): the fitted estimator stays picklable and light."""
    own = getattr(estimator, "_own_callbacks", [])
    for c in own:
        if isinstance(c, HoldInterruptsWhileTracing):
            c.release_quietly()  # never leave Ctrl-C held after a failed first batch
    estimator._fit_callbacks = [c for c in getattr(estimator, "_fit_callbacks", [])
                                if all(c is not o for o in own)]
    estimator._validation = estimator._recorder = None
    estimator._own_callbacks, estimator._hook_callbacks = [], []


def hold_out_threshold(estimator, X_val, y_val) -> float:
    """The estimator's ``threshold``, or its rule (:func:`pneumonia_cnn.metrics.
    choose_threshold`) on the validation hold-out, whose scores and labels it keeps in
    ``validation_scores_`` / ``validation_labels_``; 0.5, with a warning, without one."""
    estimator.validation_scores_ = estimator.validation_labels_ = None
    if X_val is not None:
        y_pos = np.asarray(y_val) == estimator.classes_[1]
        if y_pos.any() and not y_pos.all():
            estimator.validation_scores_ = estimator.predict_proba(X_val)[:, 1].astype(float)
            estimator.validation_labels_ = y_pos.astype(int)
    problem = estimator.learned_nothing()
    if problem:
        warnings.warn(problem, UserWarning, stacklevel=4)
    if estimator.threshold not in RULES:
        return float(estimator.threshold)
    if estimator.validation_scores_ is None:
        warnings.warn(f"threshold={estimator.threshold!r} needs a validation hold-out with "
                      "both classes (validation_fraction > 0); using threshold 0.5",
                      UserWarning, stacklevel=4)
        return 0.5
    return choose_threshold(estimator.threshold, estimator.validation_labels_,
                            estimator.validation_scores_, estimator.target_sensitivity)


def own_callbacks(estimator) -> list:
    """The Keras callbacks every fit of one network uses, before the user's: held
    interrupts, the cosine schedule, early stopping on the hold-out's ROC AUC (restoring the
    best weights), the best-weights recorder (kept as ``estimator._recorder``), then the
    fit hooks' callbacks."""
    own = [HoldInterruptsWhileTracing()]
    if estimator.lr_schedule == "cosine":
        own.append(CosineSchedule(getattr(estimator, "fit__epochs", None)
                                  or by_backbone(estimator, "epochs")))
    average = int(by_backbone(estimator, "average_last"))
    if getattr(estimator, "_validation", None) is not None:
        own.append(keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max",
            patience=estimator.patience if estimator.patience is not None else 10**9,
            restore_best_weights=not average, start_from_epoch=0, verbose=0))
    if average:
        own.append(WeightAverage(average))
    estimator._recorder = BestWeights()
    return own + [estimator._recorder, *getattr(estimator, "_hook_callbacks", [])]
