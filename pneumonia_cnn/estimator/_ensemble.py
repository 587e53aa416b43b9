"""Deep ensembles: ``n_networks`` members trained with different seeds on one hold-out and
averaged into one Keras model, so the ensemble is still one estimator and one saved model."""

from __future__ import annotations

import numpy as np
from scikeras.wrappers import KerasClassifier
from sklearn.base import clone

from ..data import ImageStream
from ..network import normalize_intensity
from ._params import by_backbone
from ._training import member_seeds

__all__ = ["combine", "fit_ensemble"]


def fit_ensemble(estimator, X, y, sample_weight, groups, hooks, context):
    """Train ``estimator.n_networks`` members with different seeds on the same split and
    combine them into one averaging Keras model; returns the validation hold-out or None.
    Hooks hear of every finished member; after Ctrl-C the finished members (and the
    interrupted one) are kept."""
    seeds = member_seeds(estimator.random_state, int(by_backbone(estimator, "n_networks")))
    # one validation split for all members and the ensemble itself (its threshold and
    # stress test are then measured on patients no member trained on)
    split_seed = (estimator.random_state
                  if isinstance(estimator.random_state, (int, np.integer))
                  else int(np.random.default_rng().integers(2**31 - 1)))
    # the films normalised once for every member (each would repeat the same CLAHE: a
    # third of a default fit's preprocessing each); a stream is normalised once anyway
    norm = estimator.intensity_norm
    if norm is not None and not isinstance(X, ImageStream):
        X_members, member_norm = normalize_intensity(X, norm), None
    else:
        X_members, member_norm = X, norm
    members = []
    try:
        for i, seed in enumerate(seeds, start=1):
            # members predict with 0.5: the ensemble chooses its own operating point
            member = clone(estimator).set_params(
                n_networks=1, tracking=False, fit_hooks=None, tta=0, random_state=seed,
                threshold=0.5, target_sensitivity=None, intensity_norm=member_norm)
            member._split_random_state = split_seed
            members.append(member)
            if estimator.verbose:
                print(f"Network {i}/{len(seeds)} of the ensemble", flush=True)
            member.fit(X_members, y, sample_weight=sample_weight, groups=groups)
            for hook in hooks:
                hook.on_member_end(estimator, context, i, member)
    except KeyboardInterrupt:
        done = [m for m in members if getattr(m, "history_", None) and hasattr(m, "model_")]
        if done:  # keep what was trained: the finished members (and the interrupted one)
            combine(estimator, done, X, y)
        estimator.interrupted_ = True
        estimator.fit_time_ = context.elapsed()
        raise
    combine(estimator, members, X, y)
    split = estimator._split_validation(y, groups, seed=split_seed)
    if split is None:
        return None
    return X[split[1]], y[split[1]]


def combine(estimator, members, X, y) -> None:
    """Make ``estimator`` the average of its fitted ``members`` (its ``model_`` an averaging
    Keras model; its history the first member's, all in ``member_histories_``)."""
    estimator._members = [m.model_ for m in members]
    one_per_class = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]
    try:  # builds the averaging model (the labels set up scikeras' target encoder)
        KerasClassifier.initialize(estimator, np.asarray(X[one_per_class]), y[one_per_class])
    finally:
        estimator._members = None
    estimator.member_histories_ = [dict(m.history_) for m in members]
    estimator.history_ = dict(members[0].history_)
    estimator.best_epoch_ = members[0].best_epoch_
    estimator.averaged_epochs_ = getattr(members[0], "averaged_epochs_", None)
    estimator.n_train_ = members[0].n_train_
