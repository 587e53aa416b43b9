"""The estimator's parameters: their declared constraints, the architecture chosen by
image size, and the checks that run before any work (``fit`` and the CLI call them)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils._param_validation import (
    Integral,
    Interval,
    InvalidParameterError,
    Real,
    StrOptions,
    validate_parameter_constraints,
)

from ..network import BACKBONES, TTA_VIEWS, augmentation_factors, check_intensity_norm
from ._hooks import FitHook

__all__ = ["ARCHITECTURES", "BACKBONE_DEFAULTS", "PARAMETER_CONSTRAINTS",
           "PRETRAINED_AUGMENTATION", "SMALL_IMAGE",
           "architecture", "by_backbone", "check_params", "check_settings",
           "check_shift_params"]

#: Architectures that ``filters=None`` (and ``convs_per_block``, ``global_pooling``,
#: ``dense_units`` None) choose by image size. "standard" is the 96-px default (4 halvings
#: to 6 x 6, a flattened head); "small", below :data:`SMALL_IMAGE` px, keeps resolution
#: for longer (3 halvings, two convolutions per block) and pools globally: at 28 px the
#: standard network ends at 1 x 1 after four halvings. Chosen on PneumoniaMNIST's own
#: train / val splits (docs: Results, "Small images").
ARCHITECTURES = {
    "standard": {"filters": (8, 16, 32, 64), "convs_per_block": 1, "global_pooling": False,
                 "dense_units": 64, "augmentation": "acquisition"},
    "small": {"filters": (32, 64, 128), "convs_per_block": 2, "global_pooling": True,
              "dense_units": 0, "augmentation": "light"},
}
SMALL_IMAGE = 64
#: The smallest ``image_size`` measured (PneumoniaMNIST, 28 px); below it ``fit`` warns.
SMALLEST_MEASURED = 28

#: What ``augmentation="auto"`` chooses for a pretrained backbone: geometric only (rotation,
#: zoom, shift). Measured against "acquisition" and none on the real batch shifts (docs:
#: Pretrained features).
PRETRAINED_AUGMENTATION = "light"

#: What ``image_size``, ``n_networks``, ``epochs`` and ``learning_rate`` None choose, by
#: ``backbone``: the lab's from-scratch network (None) keeps its measured defaults; the
#: pretrained backbone's recipe was measured on the whole training split (docs: Pretrained
#: features).
BACKBONE_DEFAULTS = {
    None: {"image_size": 96, "n_networks": 3, "epochs": 14, "learning_rate": 1e-3,
           "average_last": 0},
    "efficientnet-lite0": {"image_size": 128, "n_networks": 1, "epochs": 8,
                           "learning_rate": 3e-4, "average_last": 3},
}

#: Every parameter of :class:`PneumoniaCNN` (scikit-learn's ``_parameter_constraints``).
PARAMETER_CONSTRAINTS = {
    "backbone": [StrOptions(set(BACKBONES)), None],
    "freeze_blocks": [Interval(Integral, 0, 16, closed="both")],
    "image_size": [Interval(Integral, 8, None, closed="left"), None],
    "kernel_size": [Interval(Integral, 1, None, closed="left")],
    "convs_per_block": [Interval(Integral, 1, None, closed="left"), None],
    "pooling": [StrOptions({"max", "average"})],
    "batch_norm": ["boolean"],
    "global_pooling": ["boolean", None],
    "dense_units": [Interval(Integral, 0, None, closed="left"), None],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "border_mask": [Interval(Real, 0, 0.5, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
    "lr_schedule": [StrOptions({"cosine", "constant"}), None],
    "epochs": [Interval(Integral, 1, None, closed="left"), None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "validation_fraction": [Interval(Real, 0, 0.5, closed="both")],
    "patience": [Interval(Integral, 1, None, closed="left"), None],
    "average_last": [Interval(Integral, 0, None, closed="left"), None],
    "tracking": ["boolean"],
    "tracking_uri": [str, None],
    "experiment": [str],
    "class_weight": [StrOptions({"balanced"}), dict, None],
    "random_state": ["random_state"],
    "metrics": [list, tuple, None],
    "callbacks": [list, tuple, None],
    "fit_hooks": [list, tuple, None],
    "verbose": ["verbose"],
    # checked by check_params / check_shift_params, whose messages say more (a tuple of
    # positive ints per block, a known preset, a rule or a probability...)
    "filters": "no_validation",
    "augmentation": "no_validation",
    "intensity_norm": "no_validation",
    "label_smoothing": "no_validation",
    "n_networks": "no_validation",
    "tta": "no_validation",
    "threshold": "no_validation",
    "target_sensitivity": "no_validation",
    # any Keras optimizer or loss (a name, a class or an object): Keras checks them
    "optimizer": "no_validation",
    "loss": "no_validation",
}


def by_backbone(estimator, name: str):
    """The value of ``image_size``, ``n_networks``, ``epochs``, ``learning_rate`` or
    ``average_last``: the
    parameter where given, else :data:`BACKBONE_DEFAULTS` for the estimator's backbone."""
    value = getattr(estimator, name)
    if value is None:
        return BACKBONE_DEFAULTS[getattr(estimator, "backbone", None)][name]
    return value


def architecture(estimator) -> dict:
    """The network's ``filters``, ``convs_per_block``, ``global_pooling``,
    ``dense_units`` and ``augmentation``: the parameters where given (None, or "auto"
    for augmentation, is not given), else the :data:`ARCHITECTURES` entry for
    ``image_size`` (``"small"`` below :data:`SMALL_IMAGE` px)."""
    size = int(by_backbone(estimator, "image_size"))
    preset = ARCHITECTURES["small" if size < SMALL_IMAGE else "standard"]
    given = {"filters": estimator.filters, "convs_per_block": estimator.convs_per_block,
             "global_pooling": estimator.global_pooling, "dense_units": estimator.dense_units}
    out = {k: (preset[k] if v is None else v) for k, v in given.items()}
    auto = preset["augmentation"] if getattr(estimator, "backbone", None) is None \
        else PRETRAINED_AUGMENTATION
    out["augmentation"] = (auto if isinstance(estimator.augmentation, str)
                           and estimator.augmentation == "auto" else estimator.augmentation)
    if isinstance(out["filters"], list):
        out["filters"] = tuple(out["filters"])
    return out


def check_settings(params: dict) -> None:
    """:func:`check_params` for settings that are not an estimator yet: ``params`` holds
    every parameter of :class:`PneumoniaCNN` (its defaults and what was given). Loads no
    TensorFlow, so the command line refuses a wrong setting at once.

    Raises
    ------
    ValueError
        Naming the parameter and what it must be.
    """
    from types import SimpleNamespace

    check_params(SimpleNamespace(**params))


def check_params(estimator) -> None:
    """Validate every parameter before any work, naming the parameter and what it must
    be (``fit`` calls it first; the CLI calls :func:`check_settings`, before loading data).

    ``estimator`` is a :class:`PneumoniaCNN` or any object with its parameters as attributes.
    """
    if hasattr(estimator, "get_params"):  # scikit-learn's _validate_params, by its parts
        params, name = estimator.get_params(deep=False), type(estimator).__name__
        constraints = getattr(estimator, "_parameter_constraints", PARAMETER_CONSTRAINTS)
    else:
        params, name, constraints = vars(estimator), "PneumoniaCNN", PARAMETER_CONSTRAINTS
    try:
        validate_parameter_constraints(constraints, params, caller_name=name)
    except InvalidParameterError as exc:
        raise ValueError(str(exc)) from None
    size = by_backbone(estimator, "image_size")
    filters = architecture(estimator)["filters"]
    if estimator.backbone is not None and size < 32:
        raise ValueError(f"image_size={size} is too small for backbone="
                         f"{estimator.backbone!r}: it needs at least 32 px (5 halvings); "
                         "use image_size >= 32, or backbone=None for small films")
    if (not isinstance(filters, (tuple, list)) or not filters
            or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool)
                       and f >= 1 for f in filters)):
        raise ValueError(f"filters must be a non-empty tuple of positive ints, one per "
                         f"convolution block, e.g. (16, 32, 64); got {filters!r}")
    if size < SMALLEST_MEASURED:  # user's path issue, item 8: it trained without a word
        warnings.warn(f"image_size={size}: films shrunk to {size} x {size} px keep little of "
                      f"the lungs; the smallest size measured here is {SMALLEST_MEASURED} px "
                      "(PneumoniaMNIST; docs: Results, \"Small images\")", UserWarning,
                      stacklevel=3)
    if estimator.backbone is None and size < 2 ** len(filters):
        raise ValueError(f"image_size={size} is too small for {len(filters)} "
                         f"convolution blocks (filters={tuple(filters)}): each block halves "
                         f"the image, so image_size must be at least {2 ** len(filters)}; "
                         "use a larger image_size or fewer filters")
    if estimator.backbone is not None:
        given = [k for k in ("filters", "convs_per_block", "global_pooling", "dense_units")
                 if getattr(estimator, k) is not None]
        if given:  # a setting that does nothing must not pass for one that does
            warnings.warn(f"{', '.join(given)} shape the from-scratch network only and are "
                          f"ignored with backbone={estimator.backbone!r}; set backbone=None "
                          "(--backbone none) to use them", UserWarning, stacklevel=3)
    augmentation_factors(architecture(estimator)["augmentation"])  # unknown preset or key
    hooks = [h for h in (estimator.fit_hooks or []) if not isinstance(h, FitHook)]
    if hooks:  # a class instead of an instance, a Keras callback...: refused before any work
        raise ValueError(f"fit_hooks must hold FitHook instances "
                         f"(pneumonia_cnn.estimator.FitHook), got {hooks[0]!r}; Keras "
                         "callbacks go in callbacks=")
    check_shift_params(estimator)

def check_shift_params(estimator) -> None:
    """Validate the robustness parameters before any work (named as the user wrote them)."""
    check_intensity_norm(estimator.intensity_norm)
    n = estimator.n_networks
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n_networks must be an int >= 1 or None (by backbone), got {n!r}")
    if (not isinstance(estimator.tta, (int, np.integer)) or isinstance(estimator.tta, bool)
            or not 0 <= estimator.tta <= len(TTA_VIEWS)):
        raise ValueError(f"tta must be an int from 0 (off) to {len(TTA_VIEWS)}, "
                         f"got {estimator.tta!r}")
    t = estimator.target_sensitivity
    if estimator.threshold in ("target", "conformal") and (isinstance(t, bool) or not isinstance(
            t, (int, float, np.floating)) or not 0 < t <= 1):
        raise ValueError(f"target_sensitivity must be a number in (0, 1] for "
                         f"threshold='target', got {t!r}")
    if not (estimator.threshold in ("target", "conformal", "auto") or (
            isinstance(estimator.threshold, (int, float, np.floating))
            and not isinstance(estimator.threshold, bool) and 0 <= estimator.threshold <= 1)):
        raise ValueError(f"threshold must be a number in [0, 1], 'target', 'conformal' or "
                         f"'auto', got {estimator.threshold!r}")
    ls = estimator.label_smoothing
    if not isinstance(ls, (int, float, np.floating)) or not 0 <= ls < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {ls!r}")
