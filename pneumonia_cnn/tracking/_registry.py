"""Models in MLflow: load from a URI, register versions, move the ``champion`` alias.

Everything that takes a MODEL takes a saved model folder or an MLflow model URI:
``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/<model id>``,
``runs:/<run id>/<model name>`` (or a downloaded pyfunc model folder). The URI is
resolved against ``tracking_uri`` / ``$MLFLOW_TRACKING_URI`` / ``./mlflow.db`` like every
run of the package.

:func:`register` adds a version to the model registry; the alias ``champion`` moves to the
new version only when its hold-out ROC AUC beats the current champion's (the fit's
patient-grouped validation hold-out, or a search's hold-out). That number is measured
within distribution: look at the versions' ``stress_*`` metrics too, and calibrate at a new
site (:mod:`pneumonia_cnn.analysis`) before trusting its operating point there.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError
from ..estimator import is_model_uri, local_model_folder
from ._store import get_client, global_tracking_uri, resolve_tracking_uri

__all__ = ["CHAMPION", "RegistrationResult", "model_folder", "register"]

CHAMPION = "champion"


@contextlib.contextmanager
def model_folder(path, tracking_uri: str | None = None):
    """The package's model folder behind ``path`` (a folder, a pyfunc model folder or a
    model URI, downloaded to a temporary folder for the block), and what MLflow knows of it.

    Yields
    ------
    (pathlib.Path, dict)
        The folder with ``model.keras`` and ``pneumonia_cnn.json``, and ``{"model_id":
        ..., "run_id": ...}`` when it is an MLflow model (else empty).
    """
    with contextlib.ExitStack() as stack:
        if is_model_uri(path):
            import mlflow

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pneumonia-model-"))
            uri = resolve_tracking_uri(tracking_uri)
            try:
                get_client(uri)  # fails fast with a clear message if the server is down
                with global_tracking_uri(uri):
                    local = mlflow.artifacts.download_artifacts(artifact_uri=path, dst_path=tmp,
                                                                tracking_uri=uri)
            except Exception as exc:
                raise DataError(f"could not fetch the model {path} from the MLflow store "
                                f"{uri} ({exc}); check the run id / model name and version, "
                                "and MLFLOW_TRACKING_URI or --tracking-uri") from None
            path = Path(local)
        with local_model_folder(path) as found:
            yield found


@dataclass
class RegistrationResult:
    """What :func:`register` did.

    Attributes
    ----------
    name : str
        Registered model name.
    version : str
        The new version.
    holdout_roc_auc : float or None
        Its hold-out ROC AUC (None when its run logged none).
    champion : str or None
        The version the ``champion`` alias points to afterwards.
    moved : bool
        True when the alias moved to the new version.
    message : str
        One sentence saying what happened to the alias, and why.
    """

    name: str
    version: str
    holdout_roc_auc: float | None
    champion: str | None
    moved: bool
    message: str


def _holdout_auc(client, run_id: str | None):
    """The hold-out ROC AUC of the network behind a logged model (a fit's validation hold-out
    or a refit's search hold-out; a site calibration or adaptation: its network's) and the
    data it was trained on."""
    for run in _run_chain(client, run_id):
        if run.data.tags.get("kind") in ("fit", "refit"):
            return run.data.metrics.get("roc_auc"), run.data.params.get("data")
    return None, None


def _run_chain(client, run_id: str | None, missing_ends: bool = False):
    """The runs behind a logged model, newest first: its run, then through ``model_run_id``
    each site step's network, down to the fit. A run this store lacks raises, or ends the
    chain with ``missing_ends``."""
    seen = set()
    while run_id and run_id not in seen:
        seen.add(run_id)
        try:
            run = client.get_run(run_id)
        except Exception:  # a step logged to another store
            if missing_ends:
                return
            raise
        yield run
        kind = run.data.tags.get("kind")
        run_id = (run.data.tags.get("model_run_id") if kind in ("calibration", "adaptation")
                  else None)


def lineage(client, run_id: str | None) -> list:
    """The steps that made a logged model, oldest first: ``[(kind, data), ...]`` from its
    run back through ``model_run_id`` (a calibration of an adaptation of a fit gives
    ``[("fit", ...), ("adaptation", ...), ("calibration", ...)]``)."""
    return [(run.data.tags.get("kind", "run"), run.data.params.get("data", "?"))
            for run in _run_chain(client, run_id, missing_ends=True)][::-1]


def _site_score(client, run_id: str | None) -> dict | None:
    """How a calibrated or adapted model did on the held-out part of its site's films (its
    balanced accuracy there, and its network's before it), or None when it was not
    evaluated so (``calibrate --evaluate-fraction``)."""
    if not run_id:
        return None
    run = client.get_run(run_id)
    m, tags = run.data.metrics, run.data.tags
    if tags.get("kind") not in ("calibration", "adaptation") or \
            "site_balanced_accuracy" not in m:
        return None
    return {"value": m["site_balanced_accuracy"], "base": m.get("base_site_balanced_accuracy"),
            "data": tags.get("site_eval_on"), "network_run": tags.get("model_run_id"),
            "kind": tags["kind"], "fitted_on": run.data.params.get("data")}


def _site_decision(alias, site, current, current_run, new, old_txt) -> tuple:
    """Whether a site-calibrated (adapted) version takes ``alias`` from ``current``: when
    ``current`` is the very network it was calibrated from, and its operating point scores
    better than the network's on the site's held-out films; when ``current`` is itself
    scored on the same films, the higher balanced accuracy. Other pairs are not compared:
    their numbers are measured on different films."""
    if current_run and current_run == site["network_run"] and site["base"] is not None:
        if site["value"] > site["base"]:
            return True, (f"{alias} moves from {old_txt} to {new}: on {site['data']} (films "
                          f"the {site['kind']} never saw) its operating point has balanced "
                          f"accuracy {site['value']:.4f} against its network's "
                          f"{site['base']:.4f}")
        return False, (f"{alias} stays on {old_txt}: on {site['data']} the {site['kind']} "
                       f"does not beat its network ({site['value']:.4f} against "
                       f"{site['base']:.4f})")
    current_tags = current.tags
    if current_tags.get("eval_on") == site["data"] and current_tags.get("score"):
        old = float(current_tags["score"])
        if site["value"] > old:
            return True, (f"{alias} moves from {old_txt} to {new}: balanced accuracy "
                          f"{site['value']:.4f} against {old:.4f} on {site['data']}")
        return False, f"{alias} stays on {old_txt}: {new} does not beat it on {site['data']}"
    return False, (f"{alias} stays on {old_txt}: {new} is scored on {site['data']}, "
                   f"{old_txt} on other films, and numbers of different films are not "
                   "compared; evaluate both on one set (`pneumonia-cnn evaluate`) and move "
                   "the alias by hand if you choose the new one")


def register(model_uri: str, name: str, *, tracking_uri: str | None = None,
             alias: str = CHAMPION) -> RegistrationResult:
    """Register a logged model as a new version of ``name``; move ``alias`` to it when its
    hold-out ROC AUC beats the current holder's.

    Parameters
    ----------
    model_uri : str
        ``runs:/<run id>/<model name>``, ``models:/<model id>`` or a run id (its logged
        model is used).
    name : str
        Registered model name (created when new).
    tracking_uri : str, default=None
        See :func:`pneumonia_cnn.tracking.resolve_tracking_uri`.
    alias : str, default="champion"

    Returns
    -------
    RegistrationResult
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    if not is_model_uri(model_uri):  # a bare run id: its logged model
        try:
            run = client.get_run(model_uri)
        except Exception:
            raise DataError(f"{model_uri!r} is neither a model URI (runs:/RUN_ID/NAME, "
                            "models:/MODEL_ID) nor a run id in the MLflow store "
                            f"{uri}") from None
        outputs = getattr(run, "outputs", None)
        ids = [m.model_id for m in (outputs.model_outputs if outputs else [])]
        if not ids:
            raise DataError(f"run {model_uri} logged no model: register the run of a fit, a "
                            "search's refit or a site calibration")
        model_uri = f"models:/{ids[-1]}"
    if not name or any(c in name for c in "/:%"):
        raise ValueError(f"registered model name {name!r} must be non-empty without / : %")
    try:
        with global_tracking_uri(uri):
            mv = mlflow.register_model(model_uri, name)
    except Exception as exc:
        raise DataError(f"could not register {model_uri} as {name!r} in {uri} ({exc}); check "
                        "the URI (runs:/RUN_ID/MODEL_NAME or models:/MODEL_ID)") from None
    auc, data = _holdout_auc(client, mv.run_id)
    site = _site_score(client, mv.run_id)
    tags = {"holdout_roc_auc": None if auc is None else f"{auc:.6f}", "data": data}
    # every version says how it was made, with or without --evaluate-fraction (user's path
    # issue, item 3: an adapted, then calibrated model carried only its base fit's tags)
    steps = lineage(client, mv.run_id)
    if steps:
        tags["lineage"] = " -> ".join(f"{k} {d}" for k, d in steps)
        tags["kind"] = steps[-1][0]
        for k, d in steps:
            tags[f"{k}_data"] = d
    if site is not None:  # what it was fitted on, and where it is scored
        tags.update({"kind": site["kind"], f"{site['kind']}_data": site["fitted_on"],
                     "eval_on": site["data"], "score": f"{site['value']:.6f}",
                     "score_metric": "site balanced accuracy"})
    for key, value in tags.items():
        if value:
            client.set_model_version_tag(name, mv.version, key, value)

    current = None
    try:
        current = client.get_model_version_by_alias(name, alias)
    except Exception:  # no version holds the alias yet
        pass
    new = f"v{mv.version}" + (f" (hold-out ROC AUC {auc:.4f})" if auc is not None else "")
    if current is None:
        moved = auc is not None or site is not None
        message = (f"{alias} -> {new}: the first version with a hold-out score" if moved else
                   f"{alias} not set: {new} has no hold-out ROC AUC (fit with "
                   "validation_fraction > 0 or search with holdout > 0)")
    else:
        old_tag = current.tags.get("holdout_roc_auc")
        old = float(old_tag) if old_tag else None
        old_txt = f"v{current.version}" + (f" ({old:.4f})" if old is not None else "")
        if site is not None:
            new = f"v{mv.version}"
            moved, message = _site_decision(alias, site, current, current.run_id, new,
                                            f"v{current.version}")
        elif auc is None:
            moved, message = False, f"{alias} stays on {old_txt}: {new} has no hold-out ROC AUC"
        elif old is None or auc > old:
            moved = True
            message = f"{alias} moves from {old_txt} to {new}: it scores higher"
        else:
            moved = False
            message = f"{alias} stays on {old_txt}: {new} does not beat it"
    if moved:
        client.set_registered_model_alias(name, alias, mv.version)
        champion = str(mv.version)
    else:
        champion = str(current.version) if current is not None else None
    return RegistrationResult(name=name, version=str(mv.version), holdout_roc_auc=auc,
                              champion=champion, moved=moved, message=message)
