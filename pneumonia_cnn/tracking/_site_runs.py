"""The MLflow runs of what is done with a fitted model: an evaluation, a site calibration, a
site adaptation. Each is nested under the model's fit run, logs its data as a dataset input
and its headline metrics linked to the model. ``evaluate``, ``calibrate`` and ``adapt`` with
``track=True`` call these (through :mod:`pneumonia_cnn.utils`' plug-ins)."""

from __future__ import annotations

import numpy as np

from ._names import data_label, image_dataset, model_name
from ._runs import TrackedRun
from ._serving import log_model
from ._store import DEFAULT_EXPERIMENT, get_client

__all__ = ["log_adaptation_run", "log_calibration_run", "log_evaluation_run",
           "log_site_evaluation", "log_site_run"]


def logged_model_here(model_id, tracking_uri):
    """``model_id`` when this store holds that logged model, else None: a model folder
    trained under another store (a colleague's, a deleted ``mlruns``) is evaluated without
    a link to it (site issue, finding 15: logging metrics linked to a model the store does
    not hold failed with a raw ``FOREIGN KEY constraint failed``)."""
    if not model_id:
        return None
    try:
        get_client(tracking_uri).get_logged_model(model_id)
    except Exception:
        return None
    return model_id


def log_evaluation_run(estimator, result: dict, source, X, y, groups,
                        extra_figures: dict | None = None) -> str:
    """One run per evaluation, nested under the model's run, named ``eval <data> · <model
    run>``; its headline metrics are linked to the model and the evaluation dataset."""
    parent = getattr(estimator, "mlflow_run_id_", None)
    tracking_uri = getattr(estimator, "tracking_uri", None)
    model_id = logged_model_here(getattr(estimator, "mlflow_model_id_", None), tracking_uri)
    data = result["data"] if source is None else data_label(source)
    dataset = image_dataset(data, X, y, source, groups)
    # two site folders with the same last two parts (site/test) must not share a name
    name = f"eval {data} ({len(y)} films, {dataset.digest[:6]})"
    if parent:
        try:
            model_run = get_client(tracking_uri).get_run(parent).info.run_name or ""
            name += f" · {model_run.removeprefix('SYNTHETIC-')}"
        except Exception:  # the model's run lives in another store: evaluate anyway
            parent = None
    synthetic = result.get("synthetic")
    run = TrackedRun.start(tracking_uri=tracking_uri,
                           experiment=getattr(estimator, "experiment", DEFAULT_EXPERIMENT),
                           run_name=("SYNTHETIC-" if synthetic else "") + name,
                           parent_run_id=parent,
                           tags={"kind": "evaluation", "eval_on": data,
                                 **({"synthetic_data": "true"} if synthetic else {}),
                                 **({"model_run_id": parent} if parent else {})})
    try:
        run.log_params({"data": data})
        run.log_dataset(dataset, "evaluation", model_id=model_id)
        run.log_evaluation(result, extra_figures=extra_figures, model_id=model_id,
                           dataset=dataset)
        run.rank_check(result["n_images"], result.get("n_images_seen_in_training", 0))
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    return run.run_id


def log_site_run(model, *, kind: str, verb: str, source, X, y, groups, params: dict,
                 summary: dict, log_results) -> str:
    """One run of a site step (``kind`` "calibration" / "adaptation") named ``<verb> <data>``,
    nested under the network's fit run: parameters, the wrapped model logged as a pyfunc
    model, the site's dataset, ``log_results(run, model_id, dataset)``, and ``summary`` as
    ``<kind>/<kind>.json``. Sets ``model.mlflow_run_id_`` / ``mlflow_model_id_``."""
    parent = getattr(model.estimator, "mlflow_run_id_", None)
    data = data_label(source)
    dataset = image_dataset(data, X, y, source, groups)
    # two site folders with the same last two parts must not share a name
    run = TrackedRun.start(tracking_uri=model.tracking_uri, experiment=model.experiment,
                           run_name=f"{verb} {data} ({len(X)} films, {dataset.digest[:6]})",
                           parent_run_id=parent,
                           tags={"kind": kind, "eval_on": data,
                                 **({"model_run_id": parent} if parent else {})})
    try:
        run.log_params({"data": data, **params})
        model.mlflow_run_id_ = run.run_id
        model.mlflow_model_id_ = log_model(run, model, model_name(f"{verb}d {data}"))
        run.log_dataset(dataset, kind, model_id=model.mlflow_model_id_)
        log_results(run, model.mlflow_model_id_, dataset)
        run.log_dict(summary, f"{kind}/{kind}.json")
    except BaseException as exc:
        run.end_after_error(exc)
        raise
    run.end("FINISHED")
    return run.run_id


def log_calibration_run(model, source, X, y, groups) -> str:
    """The run of a site calibration (``kind`` calibration): its sensitivity and
    specificity on the calibration films with intervals, the threshold; returns its id."""
    c = model.calibration_

    def results(run, model_id, dataset):
        run.log_headline({"sensitivity": c["sensitivity"], "specificity": c["specificity"],
                          "ci95": {"sensitivity": c["sensitivity_ci95"],
                                   "specificity": c["specificity_ci95"]},
                          "n_images": c["n_NORMAL"] + c["n_PNEUMONIA"],
                          "threshold": c["threshold"]}, model_id=model_id, dataset=dataset)

    return log_site_run(model, kind="calibration", verb="calibrate", source=source, X=X, y=y,
                        groups=groups, params={"method": str(model.method),
                                               "target_sensitivity": str(
                                                   c["target_sensitivity"]),
                                               "confidence": str(c["confidence"])},
                        summary=c, log_results=results)


def log_adaptation_run(model, source, X, groups) -> str:
    """The run of a site adaptation (``kind`` adaptation): the estimated prevalence, the
    threshold and the expected sensitivity / specificity; returns its id."""
    a = model.adaptation_

    def results(run, model_id, dataset):
        run.log_metrics({"estimated_prevalence": a["prevalence"],
                         "decision_threshold": a["threshold"],
                         "expected_sensitivity": a["expected_sensitivity"],
                         "expected_specificity": a["expected_specificity"],
                         "n_images": a["n_films"]})

    return log_site_run(model, kind="adaptation", verb="adapt", source=source, X=X,
                        y=np.full(len(X), ""), groups=groups,
                        params={"target_sensitivity": str(a["target_sensitivity"]),
                                "batch_norm": str(a["batch_norm_recalibrated"])},
                        summary=a, log_results=results)


def log_site_evaluation(model, site: dict) -> None:
    """Log, to the run of a calibrated or adapted ``model``, how it and the network before
    it did on the held-out part of the site's films (``site`` as the command line's
    ``--evaluate-fraction`` builds it): ``site_<metric>`` and ``base_site_<metric>``, with
    ``site_balanced_accuracy`` (the mean of sensitivity and specificity at each one's
    threshold), and the tag ``site_eval_on``. :func:`~pneumonia_cnn.tracking.register`
    ranks the model on them."""
    client = get_client(model.tracking_uri)
    metrics = {}
    for prefix, part in (("site_", site["model"]), ("base_site_", site["network"])):
        for key in ("roc_auc", "sensitivity", "specificity"):
            if part.get(key) is not None:
                metrics[prefix + key] = float(part[key])
        if part.get("sensitivity") is not None and part.get("specificity") is not None:
            metrics[prefix + "balanced_accuracy"] = (part["sensitivity"]
                                                     + part["specificity"]) / 2
    metrics["site_n_images"] = float(site["n_images"])
    run = TrackedRun(client, model.mlflow_run_id_)
    run.log_metrics(metrics)
    client.set_tag(model.mlflow_run_id_, "site_eval_on", site["data"])
