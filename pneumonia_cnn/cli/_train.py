"""``pneumonia-cnn train``."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import (
    DATA_HELP,
    CLIError,
    add_data_options,
    add_estimator_options,
    check_data_arg,
    check_model_out,
    checked_settings,
    load_data_arg,
    make_estimator,
    print_stress,
    print_view_link,
    refuse_inside_inputs,
    register_model,
)


def add_parser(sub) -> None:
    """Add the ``train`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("train", help="train a model on a data folder and save it",
                       description="Train PneumoniaCNN on a data folder and save the model.")
    p.add_argument("data_dir", metavar="DATA", help=DATA_HELP)
    p.add_argument("--model-out", required=True, metavar="PATH",
                   help="folder to save the trained model to")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --model-out to be an existing folder that is not a saved model "
                        "(its model files are replaced; a saved model is always replaced)")
    p.add_argument("--report-dir", metavar="DIR",
                   help="also write the training-history plot here")
    p.add_argument("--register", metavar="NAME",
                   help="register the logged model as a new version of NAME in the MLflow "
                        "model registry; 'champion' moves to it only if its validation "
                        "hold-out ROC AUC beats the current champion's")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    add_data_options(p)
    add_estimator_options(p)


def run(args) -> int:
    import numpy as np

    # before training: never lose the model
    check_model_out(args.model_out, args.overwrite, inputs=(args.data_dir,))
    refuse_inside_inputs("--report-dir", args.report_dir, (args.data_dir,))
    # the data source (at once), then the settings (scikit-learn's checks, about a second),
    # before TensorFlow loads or any image is read
    check_data_arg(args, "train")
    clf = make_estimator(args, checked_settings(args))
    data = load_data_arg(args, clf.input_size(), "train", verbose=int(not args.quiet))
    print(f"Training on {len(data)} images {data.class_counts()} from {data.root}",
          flush=True)
    try:
        clf.fit(data)
    except KeyboardInterrupt:
        if getattr(clf, "history_", None) and hasattr(clf, "model_"):
            path = clf.save(args.model_out)
            if getattr(clf, "interrupted_", False):
                what = (f"the best of the {len(clf.history_['loss'])} finished epoch(s) "
                        f"(epoch {clf.best_epoch_})")
            else:
                what = ("the trained model (training had finished; the interrupt came while "
                        "its results were being logged to MLflow, which are incomplete)")
            logged = getattr(clf, "checkpoint_run_id_", None)
            print(f"Interrupted: {what} is saved to {path}"
                  + (f" and to MLflow run {logged} (artifact checkpoint/)" if logged else ""),
                  file=sys.stderr)
        raise
    problem = clf.learned_nothing()
    if problem:
        raise CLIError(f"{problem}; no model was saved")
    path = clf.save(args.model_out)
    hist = clf.history_
    histories = getattr(clf, "member_histories_", None) or [hist]
    kept = [(int(np.argmax(h["val_auc"])) + 1, max(h["val_auc"]), len(h["val_auc"]))
            for h in histories if h.get("val_auc")]
    averaged = getattr(clf, "averaged_epochs_", None)
    if averaged:
        print(f"Weights: the average of epochs {averaged[0]}-{averaged[-1]} of "
              f"{len(hist['loss'])} (average_last)")
    elif kept:
        print(("Networks' best epochs: " if len(kept) > 1 else "Best epoch: ")
              + ", ".join(f"{e}/{n} (validation ROC AUC {a:.3f})" for e, a, n in kept))
    print(f"Operating point: threshold {clf.threshold_:.3f} ({operating_rule(clf)})")
    print_stress(clf)
    if args.report_dir:
        from ..data import mark_outputs
        from ..metrics import plot_history

        Path(args.report_dir).mkdir(parents=True, exist_ok=True)
        fig = plot_history(hist, best_epoch=clf.best_epoch_, n_networks=len(histories),
                           histories=histories,
                           averaged_epochs=getattr(clf, "averaged_epochs_", None))
        fig.savefig(Path(args.report_dir) / "training_history.png", dpi=110)
        mark_outputs(args.report_dir, ["training_history.png"])
    print(f"Trained in {clf.fit_time_:.1f} s; model saved to {path}")
    model_id = getattr(clf, "mlflow_model_id_", None)
    if model_id:
        print(f"MLflow run {clf.mlflow_run_id_}; logged model models:/{model_id}")
        print_view_link(clf.mlflow_run_id_, clf.tracking_uri, "models",
                        "trained models on their validation hold-outs")
    if args.register:
        if not model_id:
            raise CLIError("--register needs the model logged to MLflow: drop --no-tracking "
                           "(the trained model is saved to " + str(path) + ")")
        register_model(f"models:/{model_id}", args.register, clf.tracking_uri)
    return 0


def operating_rule(clf) -> str:
    """How the fit's threshold was set, with what it keeps of the hold-out's PNEUMONIA films
    (site issue, finding 9: "keeps sensitivity 0.95" was printed where it kept 14/15)."""
    import numpy as np

    t = clf.target_sensitivity
    rule = {"target": f"Harrell-Davis estimate of where sensitivity {t:g} holds on new films "
                      "like the validation hold-out",
            "conformal": f"split-conformal: sensitivity >= {t:g} expected on new films like "
                         "the validation hold-out",
            "auto": "Youden's J on the validation hold-out"}.get(clf.threshold, "as given")
    scores, labels = clf.validation_scores_, clf.validation_labels_
    if scores is not None:
        pos = np.asarray(scores)[np.asarray(labels) == 1]
        kept = int((pos >= clf.threshold_).sum())
        rule += (f"; on the hold-out it keeps {kept}/{pos.size} = {kept / pos.size:.3f} of "
                 "the PNEUMONIA films")
    return rule
