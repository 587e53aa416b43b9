"""What post-fit wrappers of a fitted network share (site calibration, site adaptation): the
network's attributes that evaluation and the CLI read, and saving."""

from __future__ import annotations

from pathlib import Path

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..estimator import atomic_model_folder

__all__ = ["NetworkWrapper", "network_of"]


def network_of(model):
    """The fitted :class:`~pneumonia_cnn.PneumoniaCNN` under any post-fit wrappers (a
    calibration of an adaptation has two).

    Parameters
    ----------
    model : PneumoniaCNN, SiteAdaptedCNN or SiteCalibratedCNN

    Returns
    -------
    PneumoniaCNN
    """
    while isinstance(model, NetworkWrapper):
        model = model.estimator
    return model


class NetworkWrapper(ClassifierMixin, BaseEstimator):
    """Base of the classifiers that wrap a fitted network (``estimator``) and set their own
    operating point (``threshold_``). Evaluation, explanations, serving and the CLI read
    the network's size, tracking settings and history through these properties."""

    def decision_threshold(self) -> float:
        """The threshold ``predict`` uses: the wrapper's own operating point."""
        return float(self.threshold_)

    def save(self, path) -> Path:
        """Save as a model folder: the network's files plus the wrapper's own
        (``write_files``), written whole or not at all
        (:func:`pneumonia_cnn.estimator.atomic_model_folder`)."""
        check_is_fitted(self, "threshold_")
        with atomic_model_folder(path) as folder:
            self.write_files(folder)
        return Path(path)

    @property
    def image_size(self):
        return self.estimator.image_size

    def input_size(self) -> int:
        """The side of the films the wrapped network takes.

        Returns
        -------
        int
            See :meth:`pneumonia_cnn.PneumoniaCNN.input_size`.
        """
        return self.estimator.input_size()

    @property
    def tracking(self):
        return getattr(self.estimator, "tracking", False)

    @property
    def tracking_uri(self):
        return getattr(self.estimator, "tracking_uri", None)

    @property
    def experiment(self):
        return getattr(self.estimator, "experiment", "pneumonia-cnn")

    @property
    def history_(self):
        return getattr(self.estimator, "history_", None)

    @property
    def validation_scores_(self):
        return getattr(self.estimator, "validation_scores_", None)

    @property
    def validation_labels_(self):
        return getattr(self.estimator, "validation_labels_", None)

    @property
    def train_fingerprints_(self):
        return getattr(self.estimator, "train_fingerprints_", [])
