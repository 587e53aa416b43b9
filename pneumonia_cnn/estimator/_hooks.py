"""Side effects of ``fit`` as hooks: ``fit`` trains and notifies; hooks log, test and keep.

A :class:`FitHook` is told when a fit begins, when each network of an ensemble ends, when the
fit ends (with its validation hold-out), and when it is interrupted or fails. It may add
Keras callbacks to each network's training (per-epoch logging). The estimator knows no hook
by type: ``tracking=True`` plugs in :class:`pneumonia_cnn.tracking.FitLogger` (MLflow), and
``fit_hooks`` adds the user's (for example :class:`pneumonia_cnn.analysis.StressOnFit`,
which sets ``stress_`` with tracking off).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..utils import plugin

__all__ = ["FitContext", "FitHook", "fit_hooks"]


@dataclass
class FitContext:
    """What hooks of one fit share.

    Attributes
    ----------
    data_root : str or None
        The data folder the fit read, when it read one.
    X, y, groups : arrays
        The training images (uint8 array or stream), labels and patient ids.
    start : float
        ``time.perf_counter()`` at the start of the fit.
    validation : (X, y) or None
        The patient-grouped validation hold-out, once the fit has ended.
    results : dict
        What one hook leaves for the next (``"stress"``: the hold-out's
        :class:`~pneumonia_cnn.analysis.StressResult` and clean scores).
    """

    data_root: str | None
    X: object
    y: np.ndarray
    groups: np.ndarray
    start: float = field(default_factory=time.perf_counter)
    validation: tuple | None = None
    results: dict = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class FitHook:
    """Base of the hooks ``fit`` notifies; every method does nothing unless overridden."""

    def on_fit_begin(self, estimator, context: FitContext) -> None:
        """Before any training (the training data is loaded and checked)."""

    def keras_callbacks(self, estimator, context: FitContext) -> list:
        """Keras callbacks added to the training of a (single) network."""
        return []

    def on_member_end(self, estimator, context: FitContext, index: int, member) -> None:
        """Network ``index`` (1-based) of an ensemble finished training."""

    def on_fit_end(self, estimator, context: FitContext) -> None:
        """The fit finished: ``estimator`` is fitted, ``context.validation`` set."""

    def on_interrupt(self, estimator, context: FitContext, n_epochs: int,
                     salvaged: bool) -> None:
        """Ctrl-C / SIGTERM stopped the fit; ``salvaged``: the estimator kept the best
        weights of ``n_epochs`` finished epochs."""

    def on_error(self, estimator, context: FitContext, exc: BaseException) -> None:
        """The fit failed with ``exc`` (which then propagates)."""


def fit_hooks(estimator) -> list:
    """The hooks of a fit: the estimator's ``fit_hooks``, then, with ``tracking=True``, the
    shift-stress test of the hold-out (unless given) and the MLflow logger."""
    hooks = list(getattr(estimator, "fit_hooks", None) or [])
    if estimator.tracking:
        stress = plugin("stress_on_fit")
        if not any(isinstance(h, stress) for h in hooks):
            hooks.append(stress())
        hooks.append(plugin("fit_logger")())
    return hooks


def notify(hooks: list, event: str, *args, **kwargs) -> None:
    """Call ``event`` on every hook, in order."""
    for hook in hooks:
        getattr(hook, event)(*args, **kwargs)
