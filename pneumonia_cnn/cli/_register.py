"""``pneumonia-cnn register``."""

from __future__ import annotations

from ._common import logged_model_uri, register_model


def add_parser(sub) -> None:
    """Add the ``register`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "register", help="register a logged model in the MLflow model registry",
        description="Add a logged model (of a fit, a search's refit or a site calibration) as "
                    "a new version of NAME in the MLflow model registry. The alias "
                    "'champion' moves to the new version only when its hold-out ROC AUC "
                    "beats the current champion's; the command says which way it went. "
                    "Serve the champion with: pneumonia-cnn serve models:/NAME@champion")
    p.add_argument("model_uri", metavar="MODEL_URI",
                   help="a model folder written by train, calibrate or adapt (the model it "
                        "logged), runs:/RUN_ID/MODEL_NAME, models:/MODEL_ID, or a run id (its "
                        "logged model); printed by train, search, calibrate and adapt")
    p.add_argument("name", metavar="NAME", type=registered_name,
                   help="registered model name, e.g. pneumonia-cnn")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")


def registered_name(text: str) -> str:
    """A registered model name: not empty, no surrounding spaces (checked by argparse,
    before MLflow loads: site issue, finding 13)."""
    import argparse

    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable model name: give a "
                                         "non-empty name without surrounding spaces, e.g. "
                                         "pneumonia-cnn")
    return text


def run(args) -> int:
    register_model(logged_model_uri(args.model_uri), args.name, args.tracking_uri)
    return 0
