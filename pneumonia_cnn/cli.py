"""Command line: ``pneumonia-cnn train | evaluate | calibrate | adapt | stress | explain | predict |
search | register | run``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

PROG = "pneumonia-cnn"

# Estimator parameters that get no command-line option (Python objects, or set by the CLI).
_NO_OPTION = {"callbacks", "metrics", "verbose"}


_MODEL_HELP = ("model folder written by `train`, or an MLflow model URI: "
               "models:/NAME@champion, models:/NAME/VERSION, models:/MODEL_ID, "
               "runs:/RUN_ID/MODEL_NAME (store: $MLFLOW_TRACKING_URI or ./mlflow.db)")


class CLIError(Exception):
    """An error to show as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# Options generated from the estimator's parameters
# ---------------------------------------------------------------------------------------------
def _estimator_spec() -> tuple:
    """``(defaults, docstring)`` of ``PneumoniaCNN``, read from the source of
    :mod:`pneumonia_cnn.estimator` without importing it (importing it imports TensorFlow:
    5 s before ``--help`` could answer). The estimator stays the one source of truth."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec(".estimator", __package__).origin
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PneumoniaCNN")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(init.args.kwonlyargs,
                                                           init.args.kw_defaults)}
    return defaults, ast.get_docstring(cls) or ""


def _plain(text: str) -> str:
    """reST roles and literals read badly in --help: ``"light"`` -> "light", :mod:`x` -> x."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


#: --help texts that differ from the docstring because the CLI offers less than Python does.
_CLI_HELP = {"optimizer": "Keras optimizer name: adam, sgd, rmsprop, adamw... (routed "
                          "optimizer__* parameters are Python-only)"}


def _param_help() -> dict:
    """Each parameter's first sentence in the PneumoniaCNN docstring, with its accepted
    values from the type line (``{"max", "average"}``, ``"balanced", dict or None``)."""
    doc = _estimator_spec()[1]
    section = doc.split("Parameters\n----------\n", 1)[-1].split("\n\nAttributes", 1)[0]
    helps, types, name = {}, {}, None
    for line in section.splitlines():
        m = re.match(r"^(\w+) : (.*)$", line)
        if m:
            name = m.group(1)
            helps[name] = ""
            types[name] = re.sub(r",?\s*default=.*$", "", m.group(2)).strip()
        elif name and line.startswith("    ") and not helps[name].endswith("."):
            helps[name] = (helps[name] + " " + line.strip()).strip()
    out = {}
    for k, v in helps.items():
        text = _CLI_HELP.get(k) or _plain(v.split(". ")[0].rstrip("."))
        kind = _plain(types.get(k, ""))
        if kind and k not in _CLI_HELP and not re.fullmatch(r"(int|float|bool|str)", kind):
            text += f"; accepts {kind.replace('None', 'none').replace('dict', 'a JSON dict')}"
        out[k] = text.replace("%", "%%")
    return out


def _none_or(parse):
    def parser(text: str):
        return None if text.lower() in ("none", "null", "off") else parse(text)
    parser.__name__ = getattr(parse, "__name__", "value")
    return parser


def _int_tuple(text: str):
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as "
                                         f"32,64,128, got {text!r}") from None


def _float_or_auto(text: str):
    if text.lower() in ("auto", "target", "conformal"):
        return text.lower()
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'target', 'conformal' or 'auto', "
                                         f"got {text!r}") from None


def _json(text: str):
    """A JSON option value, or argparse's error naming it."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc}") from None


def _str_or_json(text: str):
    return _json(text) if text.lstrip().startswith("{") else text


#: Parameters whose default None means "chosen by image size", with an example of their
#: type (the option parses that type).
_SIZE_CHOSEN = {"filters": (8,), "convs_per_block": 1, "global_pooling": False,
                "dense_units": 64}


def _add_estimator_options(parser: argparse.ArgumentParser) -> None:
    defaults = _estimator_spec()[0]
    helps = _param_help()
    group = parser.add_argument_group("model and training hyperparameters "
                                      "(PneumoniaCNN parameters; defaults in brackets)")
    for name, default in defaults.items():
        if name in _NO_OPTION:
            continue
        flag = "--" + name.replace("_", "-")
        help_ = f"{helps.get(name, name)} [{default!r}]"
        kind_of = _SIZE_CHOSEN.get(name, default)  # None defaults chosen by image size
        if name in _SIZE_CHOSEN:
            help_ = f"{helps.get(name, name)} [by image size]"
        if isinstance(kind_of, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_)
            continue
        if isinstance(kind_of, tuple):
            kind, metavar = (_none_or(_int_tuple) if name in _SIZE_CHOSEN else _int_tuple,
                             "N,N,...")
        elif isinstance(default, int) or isinstance(kind_of, int):
            kind, metavar = _none_or(int), "N"
        elif name == "threshold":
            kind, metavar = _float_or_auto, "X|target|conformal|auto"
        elif isinstance(default, float):
            kind, metavar = float, "X"
        elif name == "random_state":
            kind, metavar = _none_or(int), "N"
        else:
            kind, metavar = _none_or(_str_or_json), "NAME"
        group.add_argument(flag, dest=name, type=kind, metavar=metavar,
                           default=argparse.SUPPRESS, help=help_)


def _json_object(text: str) -> dict:
    value = _json(text)
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        raise argparse.ArgumentTypeError('expected a JSON object of lists, e.g. '
                                         '\'{"filters": [[16,32],[32,64]]}\'')
    return {k: [tuple(x) if isinstance(x, list) else x for x in v] for k, v in value.items()}


_DATA_HELP = ("data: a folder with NORMAL/ and PNEUMONIA/, a split root (Kaggle's chest_xray "
              "with train/ val/ test/; pick one as chest_xray:test), a MedMNIST .npz "
              "(pneumoniamnist.npz[:train|val|test]) or a CSV of path,label[,patient]")


def _add_data_options(parser) -> None:
    group = parser.add_argument_group("data options")
    group.add_argument("--strict", action="store_true",
                       help="stop on an unreadable image file instead of skipping it "
                            "with a warning")
    group.add_argument("--label-map", metavar="JSON", type=_label_map,
                       help='CSV data: label strings to NORMAL/PNEUMONIA, e.g. \'{"No '
                            'Finding": "NORMAL", "Pneumonia": "PNEUMONIA"}\'; other '
                            "labels are left out with a warning [labels must already be "
                            "NORMAL/PNEUMONIA or 0/1]")
    group.add_argument("--columns", metavar="PATH,LABEL[,PATIENT]",
                       type=lambda t: [c.strip() for c in t.split(",")],
                       help="CSV data: the path, label and patient column names [recognised "
                            "from the header, e.g. 'Image Index,Finding Labels,Patient ID']")
    group.add_argument("--image-root", metavar="DIR",
                       help="CSV data: folder the relative paths start from [the CSV's folder]")


def _label_map(text: str) -> dict:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object, e.g. \'{"No Finding": '
                                         '"NORMAL", "Pneumonia": "PNEUMONIA"}\'')
    return value


def _load_data(args, image_size: int, role, verbose: int = 0, source=None):
    """The command's DATA (or ``source``), read with the data options as
    :func:`pneumonia_cnn.sources.load_data` reads it; says which split(s) were used when
    the source has several."""
    from .sources import load_data

    source = args.data_dir if source is None else source
    data = load_data(source, image_size, role=role, label_map=args.label_map,
                     columns=args.columns, image_root=args.image_root, strict=args.strict,
                     verbose=verbose)
    if str(data.root) != str(Path(source).expanduser()) and role is not None:
        print(f"Using {data.root} ({len(data)} images)", flush=True)
    return data


def _add_tracking_options(parser, default_help: str) -> None:
    parser.add_argument("--tracking", dest="tracking", action=argparse.BooleanOptionalAction,
                        default=None, help=f"log to MLflow {default_help}")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")


def _estimator_params(args) -> dict:

    names = set(_estimator_spec()[0])
    return {k: v for k, v in vars(args).items() if k in names}


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``pneumonia-cnn`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train, evaluate and use CNNs that tell pneumonia from normal chest "
                    "X-rays. Data folders hold NORMAL/ and PNEUMONIA/ sub-folders "
                    "(e.g. Kaggle's chest_xray/train).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a model on a data folder and save it",
                       description="Train PneumoniaCNN on a data folder and save the model.")
    p.add_argument("data_dir", metavar="DATA", help=_DATA_HELP)
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
    _add_data_options(p)
    _add_estimator_options(p)

    p = sub.add_parser("evaluate", help="evaluate a saved model on a data folder",
                       description="Evaluate a saved model on a labelled data folder: "
                                   "metrics, confusion matrix, ROC and precision-recall "
                                   "curves.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA", help=_DATA_HELP)
    p.add_argument("--out", metavar="DIR", help="write plots, metrics.json and the "
                                                "classification report here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threshold", type=float, help="decision threshold [the model's]")
    _add_data_options(p)
    _add_tracking_options(p, default_help="[the model's setting]")

    p = sub.add_parser(
        "calibrate", help="set a model's operating point on a new site's labelled images",
        description="Site calibration without retraining: with a small labelled set of the "
                    "new site (NORMAL/ and PNEUMONIA/, at least 10 of each, better 20+), "
                    "choose the decision threshold that keeps --target-sensitivity (or "
                    "use --threshold), optionally re-map the probabilities (--method), and "
                    "save the calibrated model. evaluate and predict then use its operating "
                    "point. It prints its promise: sensitivity >= --target-sensitivity on "
                    "the site's next films with probability --confidence, and how many "
                    "PNEUMONIA films that needs; --unlabelled adds the site's unlabelled "
                    "films. An adapted model (adapt) can be calibrated.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA",
                   help="the site's labelled images: a folder with NORMAL/ and PNEUMONIA/, a "
                        "CSV of path,label[,patient], or one split of a split root or "
                        "MedMNIST file (pneumoniamnist.npz:val)")
    p.add_argument("--model-out", required=True, metavar="PATH",
                   help="folder to save the calibrated model to")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --model-out to be an existing folder that is not a saved model "
                        "(its model files are replaced; a saved model is always replaced)")
    p.add_argument("--target-sensitivity", type=float, default=0.95, metavar="X",
                   help="the most specific threshold that keeps sensitivity X on the "
                        "site's next films (split-conformal rule on DATA's PNEUMONIA "
                        "images) [0.95]")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="a fixed threshold instead of --target-sensitivity")
    p.add_argument("--method", choices=["sigmoid", "isotonic", "temperature"],
                   help="also calibrate the probabilities (scikit-learn CalibratedClassifierCV)"
                        " [off: keep the network's]")
    p.add_argument("--confidence", type=float, default=0.9, metavar="C",
                   help="the promise: sensitivity >= X on the site's next films with "
                        "probability C [0.9]")
    p.add_argument("--unlabelled", metavar="DIR",
                   help="more films of the site without labels (searched recursively): the "
                        "threshold then comes from the site's score distributions, anchored "
                        "by the labelled films")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_options(p)
    _add_tracking_options(p, default_help="[the model's setting]")

    p = sub.add_parser(
        "adapt", help="move a model's operating point to a new site from its unlabelled films",
        description="Label-free site adaptation: from at least 50 UNLABELLED films of the new "
                    "site, re-estimate the network's batch-normalisation statistics "
                    "(--no-batch-norm to keep them), estimate the site's prevalence and its "
                    "score distributions (a two-class mixture fitted by EM), and move the "
                    "decision threshold to where the site's PNEUMONIA films keep "
                    "--target-sensitivity. Prints the estimated prevalence and the expected "
                    "sensitivity / specificity with 90% bootstrap intervals (estimates from "
                    "a model of the scores, not measurements), and saves the adapted model; "
                    "evaluate, predict, explain, calibrate, register and serving take it "
                    "like any model.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("site_dir", metavar="SITE_DIR",
                   help="folder of the site's films (searched recursively; class "
                        "sub-folders, if any, are ignored: no label is used)")
    p.add_argument("--model-out", required=True, metavar="PATH",
                   help="folder to save the adapted model to")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --model-out to be an existing folder that is not a saved model")
    p.add_argument("--target-sensitivity", type=float, default=0.95, metavar="X",
                   help="sensitivity the adapted threshold keeps on the site's estimated "
                        "PNEUMONIA score distribution [0.95]")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="re-estimate batch-normalisation statistics on the site's films "
                        "[on]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_tracking_options(p, default_help="[the model's setting]")

    p = sub.add_parser(
        "stress", help="shift-stress test: a model under acquisition-like perturbations",
        description="Score a saved model on a labelled folder of images it never trained on, "
                    "clean and under 13 acquisition-like perturbations (exposure, contrast, "
                    "blur, sharpening, noise, JPEG, resolution, rotation, positioning, "
                    "cropping, padding) at severities 1-3: ROC AUC, sensitivity and "
                    "specificity at the model's threshold, and the shift of NORMAL films' "
                    "mean P(PNEUMONIA).")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA", help=_DATA_HELP)
    p.add_argument("--severities", type=_int_tuple, default=(1, 2, 3), metavar="1,2,3",
                   help="severities to run [1,2,3]")
    p.add_argument("--perturbations", metavar="NAME,...",
                   help="comma-separated subset [all]")
    p.add_argument("--random-state", type=int, default=0, help="seed [0]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_options(p)

    p = sub.add_parser(
        "explain", help="heat maps (HiResCAM, or Grad-CAM): where the network looked",
        description="Write one overlay per image (film in grey, heat map in colour, "
                    "P(PNEUMONIA) and label in the title) and index.html showing them side "
                    "by side. The map shows the regions that raised the score of --target; "
                    "it does not show that the model is right.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files and/or folders (searched recursively), or data files: "
                        "a MedMNIST .npz[:split] (test by default) or a CSV of paths")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays")
    p.add_argument("--layer", metavar="NAME",
                   help="convolution layer to explain [the last convolution block]")
    p.add_argument("--target", choices=["PNEUMONIA", "NORMAL", "both"], default="PNEUMONIA",
                   help="whose evidence: PNEUMONIA (what raised its probability), NORMAL "
                        "(what lowered it) or both [PNEUMONIA]")
    p.add_argument("--method", choices=["hirescam", "gradcam"], default="hirescam",
                   help="HiResCAM (position-wise gradients, faithful for the flatten head) "
                        "or the original Grad-CAM [hirescam]")

    p = sub.add_parser("predict", help="predict images or folders of images",
                       description="Print one line per image: path, label, P(PNEUMONIA).")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files and/or folders (searched recursively), or data files: "
                        "a MedMNIST .npz[:split] (test by default) or a CSV of paths")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of tab-"
                                                       "separated text")

    p = sub.add_parser("search", help="grid or random search with patient-grouped CV, "
                                      "logged to MLflow",
                       description="Search PneumoniaCNN hyperparameters with StratifiedGroupKFold "
                                   "on patient ids. Every candidate is a child run of one "
                                   "MLflow parent run; the best is refit and evaluated on "
                                   "held-out patients. Re-running an interrupted search with "
                                   "the same --name and grid resumes it.")
    p.add_argument("data_dir", metavar="DATA", help=_DATA_HELP)
    p.add_argument("--grid", metavar="JSON", type=_json_object,
                   help='parameter grid, e.g. \'{"filters": [[16,32],[32,64]], '
                        '"augmentation": [null, "standard"]}\'')
    p.add_argument("--random", metavar="JSON", type=_json_object,
                   help="lists to sample from for a random search (with --n-iter)")
    p.add_argument("--n-iter", type=int, default=10, help="random-search candidates [10]")
    p.add_argument("--cv", type=int, default=3, help="patient-grouped CV folds [3]")
    p.add_argument("--name", default="search", help="search name (for resuming) [search]")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of patients held out to evaluate the refit best model [0.2]")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel fold fits [1]")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the fold fits on a Dask cluster: a scheduler address "
                        "(tcp://host:8786), or local[:N] for N worker processes on this "
                        "machine [off]; needs pip install 'pneumonia-cnn[cluster]'")
    p.add_argument("--stress", action="store_true",
                   help="also score every candidate under shift (stress_roc_auc, "
                        "stress_specificity...: slower)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start afresh even if an unfinished run of this search exists")
    p.add_argument("--register", metavar="NAME",
                   help="register the refit best model as a new version of NAME in the "
                        "MLflow model registry; the alias 'champion' moves to it only if its "
                        "hold-out ROC AUC beats the current champion's")
    p.add_argument("--quiet", action="store_true", help="less output")
    _add_data_options(p)
    _add_estimator_options(p)

    p = sub.add_parser(
        "register", help="register a logged model in the MLflow model registry",
        description="Add a logged model (of a fit, a search's refit or a site calibration) as "
                    "a new version of NAME in the MLflow model registry. The alias "
                    "'champion' moves to the new version only when its hold-out ROC AUC "
                    "beats the current champion's; the command says which way it went. "
                    "Serve the champion with: mlflow models serve -m "
                    "models:/NAME@champion --env-manager local")
    p.add_argument("model_uri", metavar="MODEL_URI",
                   help="a model folder written by train, calibrate or adapt (the model it "
                        "logged), runs:/RUN_ID/MODEL_NAME, models:/MODEL_ID, or a run id (its "
                        "logged model); printed by train, search, calibrate and adapt")
    p.add_argument("name", metavar="NAME", help="registered model name, e.g. pneumonia-cnn")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")

    p = sub.add_parser(
        "close-runs", help="mark runs left RUNNING by a killed process as KILLED",
        description="A process killed outright (SIGKILL, a power cut) cannot end its MLflow "
                    "runs: they stay RUNNING. This marks as KILLED every RUNNING run that was "
                    "started on this machine by a process that no longer exists, and, with "
                    "--older-than, runs from elsewhere that started more than HOURS ago. "
                    "Runs of live processes are left alone.")
    p.add_argument("--older-than", type=float, metavar="HOURS",
                   help="also close RUNNING runs of other machines older than this")
    p.add_argument("--experiment", default="pneumonia-cnn", help="[pneumonia-cnn]")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")

    p = sub.add_parser("run", help="the main job: train, evaluate, save model and plots",
                       description="Train on DATA (or, without DATA, on a small built-in "
                                   "SYNTHETIC set), evaluate, and save the model and the "
                                   "plots. A source with splits (Kaggle's chest_xray/, a "
                                   "MedMNIST .npz) trains on train + val and is evaluated on "
                                   "test; without a test split, 20%% of the patients are held "
                                   "out of training and evaluated.")
    p.add_argument("data_dir", metavar="DATA", nargs="?", help=_DATA_HELP)
    p.add_argument("--out", metavar="DIR", default="outputs", help="output folder [outputs]")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    _add_data_options(p)
    _add_estimator_options(p)
    return parser


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def _make_estimator(args):
    from .estimator import PneumoniaCNN

    params = _estimator_params(args)
    params["verbose"] = 0 if getattr(args, "quiet", False) else 2
    est = PneumoniaCNN(**params)
    est.check_params()  # before any data is loaded: a typo costs nothing
    return est


def _fmt(metrics: dict) -> str:
    keys = ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1")
    return "  ".join(f"{k}={metrics[k]:.3f}" for k in keys if k in metrics)


def check_model_out(path, overwrite: bool = False) -> None:
    """Refuse a --model-out that would lose the trained model or someone's files, before any
    work: a file, an existing folder that is not a saved model (unless ``overwrite``), or a
    place that cannot be written."""
    import tempfile

    from .estimator import META_FILE

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"--model-out {path} is a file: the model is saved as a folder; choose a "
                       "new folder name")
    if path.is_dir() and any(path.iterdir()) and not (path / META_FILE).is_file() \
            and not overwrite:
        raise CLIError(f"--model-out {path} exists and is not a saved model: choose a new folder, "
                       "or pass --overwrite to write the model files into it")
    probe = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise CLIError(f"--model-out {path}: cannot write to {probe} ({exc.strerror or exc}); "
                       "choose a folder you can write to") from None


def cmd_train(args) -> int:
    import numpy as np

    check_model_out(args.model_out, args.overwrite)  # before training: never lose the model
    clf = _make_estimator(args)
    data = _load_data(args, clf.image_size, "train", verbose=int(not args.quiet))
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
    if kept:
        print(("Networks' best epochs: " if len(kept) > 1 else "Best epoch: ")
              + ", ".join(f"{e}/{n} (validation ROC AUC {a:.3f})" for e, a, n in kept))
    rule = {"target": f"keeps sensitivity {clf.target_sensitivity:g} on the validation "
                      "hold-out's PNEUMONIA films (Harrell-Davis estimate)",
            "conformal": f"keeps sensitivity {clf.target_sensitivity:g} on new films "
                         "(split-conformal, on the validation hold-out)",
            "auto": "Youden's J on the validation hold-out"}.get(clf.threshold, "as given")
    print(f"Operating point: threshold {clf.threshold_:.3f} ({rule})")
    _print_stress(clf)
    if args.report_dir:
        from .evaluation import plot_history

        Path(args.report_dir).mkdir(parents=True, exist_ok=True)
        fig = plot_history(hist, best_epoch=clf.best_epoch_)
        fig.savefig(Path(args.report_dir) / "training_history.png", dpi=110)
    print(f"Trained in {clf.fit_time_:.1f} s; model saved to {path}")
    model_id = getattr(clf, "mlflow_model_id_", None)
    if model_id:
        print(f"MLflow run {clf.mlflow_run_id_}; logged model models:/{model_id}")
    if args.register:
        if not model_id:
            raise CLIError("--register needs the model logged to MLflow: drop --no-tracking "
                           "(the trained model is saved to " + str(path) + ")")
        _register(f"models:/{model_id}", args.register, clf.tracking_uri)
    return 0


def _register(model_uri: str, name: str, tracking_uri) -> None:
    from .registry import register

    r = register(model_uri, name, tracking_uri=tracking_uri)
    print(f"Registered {r.name!r} version {r.version}; {r.message}. Serve the champion: "
          f"mlflow models serve -m models:/{r.name}@champion --env-manager local")


def cmd_close_runs(args) -> int:
    from .tracking import close_stale_runs

    closed = close_stale_runs(args.tracking_uri, args.experiment, args.older_than)
    for run_id, name in closed:
        print(f"closed {run_id}  {name}")
    print(f"{len(closed)} run(s) marked KILLED")
    return 0


def cmd_register(args) -> int:
    _register(_logged_model_uri(args.model_uri), args.name, args.tracking_uri)
    return 0


def _logged_model_uri(model: str) -> str:
    """A model folder written by train / calibrate / adapt as the URI of the model it
    logged to MLflow (``models:/<id>``, recorded in the folder); anything else as given."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    # the outermost step first: a calibrated (adapted) folder is that model, not its network
    for name, key in (("site_calibration.json", "mlflow_model_id"),
                      ("site_adaptation.json", "mlflow_model_id"),
                      ("pneumonia_cnn.json", "mlflow_model_id")):
        file = folder / name
        if file.is_file():
            try:
                model_id = json.loads(file.read_text()).get(key)
            except (ValueError, AttributeError):
                raise CLIError(f"{file} is damaged: not a JSON object") from None
            if not model_id:
                raise CLIError(f"the model in {folder} was not logged to MLflow (made with "
                               "--no-tracking), so there is nothing to register: run that "
                               "command again with tracking on, then register the folder or "
                               "the models:/ URI it prints")
            return f"models:/{model_id}"
    raise CLIError(f"{folder} is not a saved model folder (no pneumonia_cnn.json): give a "
                   "model folder, a models:/ or runs:/ URI, or a run id")


def _print_stress(clf) -> None:
    """The fit's shift-stress summary of its validation hold-out, when it has one."""
    s = getattr(clf, "stress_", None)
    if s:
        print(f"Under shift (stress test of the validation hold-out, 39 perturbed copies): "
              f"ROC AUC {s['stress_roc_auc']:.3f} (clean {s['clean_roc_auc']:.3f}), "
              f"specificity {s['stress_specificity']:.3f} (clean "
              f"{s['clean_specificity']:.3f}, worst {s['stress_min_specificity']:.3f}). "
              "Calibrate on your site's images before use: `pneumonia-cnn calibrate`.")


def cmd_evaluate(args) -> int:
    from .calibration import load_model
    from .evaluation import evaluate, public_metrics

    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    _set_tracking_uri(clf, args.tracking_uri)
    data = _load_data(args, clf.image_size, "evaluate")
    result = evaluate(clf, data, out_dir=args.out, threshold=args.threshold,
                      track=args.tracking, data_name=str(data.root))
    metrics = public_metrics(result)
    if args.json:
        metrics.pop("classification_report_text", None)
        print(json.dumps(metrics))
        return 0
    print(f"{metrics['n_images']} images from {data.root} (threshold "
          f"{metrics['threshold']:.3f})")
    print(_fmt(metrics))
    print(_fmt_ci(metrics))
    print(metrics["classification_report_text"])
    if args.out:
        print(f"Plots and metrics written to {args.out}")
    return 0


def _collect_images(inputs) -> list[str]:
    from .data import IMAGE_EXTENSIONS, _image_files

    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += [str(f) for f in _image_files(path)]
        elif path.is_file():
            files.append(str(path))
        else:
            raise CLIError(f"{item}: no such file or folder")
    if not files:
        raise CLIError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
                       f"{', '.join(inputs)}")
    return files


def _set_tracking_uri(model, uri) -> None:
    if uri:
        net = getattr(model, "estimator", model)  # a site-calibrated model logs as its network
        net.set_params(tracking_uri=uri)


def _fmt_ci(metrics: dict) -> str:
    ci = metrics.get("ci95", {})
    def defined(v):
        return v is not None and v == v  # None (strict JSON) or NaN: undefined

    parts = [f"{k} {lo:.3f}-{hi:.3f}" if defined(lo) and defined(hi)
             else f"{k} n/a (too few images)" for k, (lo, hi) in ci.items()]
    return (f"95% CI: {', '.join(parts)}; Brier score {metrics['brier']:.3f} "
            "(ROC AUC: bootstrap over patients; others: Wilson)")


def cmd_calibrate(args) -> int:
    from .calibration import calibrate, load_model

    check_model_out(args.model_out, args.overwrite)
    # an adapted model is calibrated with its adaptation; a calibrated one is refused
    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    _set_tracking_uri(clf, args.tracking_uri)
    if args.target_sensitivity is not None and not 0 < args.target_sensitivity <= 1:
        raise CLIError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    if not 0 < args.confidence < 1:
        raise CLIError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.unlabelled is not None and not Path(args.unlabelled).is_dir():
        raise CLIError(f"--unlabelled {args.unlabelled}: no such folder")
    data = _load_data(args, clf.image_size, None)  # a source with splits: name the one
    unlabelled = _site_films(args.unlabelled, clf.image_size) if args.unlabelled else None
    model = calibrate(clf, data, target_sensitivity=args.target_sensitivity,
                      threshold=args.threshold, method=args.method, track=args.tracking,
                      confidence=args.confidence, unlabelled=unlabelled,
                      data_name=str(data.root))
    path = model.save(args.model_out)
    c = model.calibration_
    if args.json:
        return _print_saved_json(c, path, model)
    print(f"Calibrated on {c['n_NORMAL']} NORMAL and {c['n_PNEUMONIA']} PNEUMONIA images of "
          f"{args.data_dir}" + (f" (probabilities: {args.method})" if args.method else ""))
    print(f"Threshold {c['threshold']:.4f} (was {c['base_threshold']:.4f})"
          + (f", chosen for sensitivity >= {c['target_sensitivity']:g}"
             if c["target_sensitivity"] is not None else ""))
    if c["rule"] == "conformal":
        print(f"Promise: sensitivity >= {c['target_sensitivity']:g} on the site's next films "
              f"with probability {c['promise_confidence']:.2f} (asked: {c['confidence']:g}); "
              f"{c['confidence']:g} lower bound on that sensitivity: "
              f"{c['sensitivity_lower_bound']:.3f}")
    elif c["rule"] == "mixture":
        print(f"Threshold from the site's score distributions ({c['n_unlabelled']} unlabelled "
              f"films, anchored by the labelled ones), at the {1 - c['confidence']:.2f} "
              "bootstrap quantile: an estimate from a model of the scores, not a guarantee")
    lo, hi = c["sensitivity_ci95"]
    print(f"On the calibration set: sensitivity {c['sensitivity']:.3f} (95% CI {lo:.3f}-"
          f"{hi:.3f}), specificity {c['specificity']:.3f} (95% CI "
          f"{c['specificity_ci95'][0]:.3f}-{c['specificity_ci95'][1]:.3f})")
    print(f"Calibrated model saved to {path}"
          + (f"; MLflow run {model.mlflow_run_id_}, logged model "
             f"models:/{model.mlflow_model_id_}" if model.mlflow_run_id_ else ""))
    return 0


def _print_saved_json(summary: dict, path, model) -> int:
    """A site step's summary, where the model was saved and its run, as strict JSON."""
    from .plots import strict_json

    print(json.dumps(strict_json({**summary, "model_out": str(path),
                                  "mlflow_run_id": model.mlflow_run_id_}), allow_nan=False))
    return 0


def _site_films(folder, image_size: int):
    """Every image under ``folder`` (recursively), without labels; class sub-folders are
    said to be ignored. Unreadable films are warned about and skipped."""
    from .data import load_images

    site = Path(folder)
    splits = sorted(d.name for d in site.iterdir()
                    if d.is_dir() and d.name.lower() in ("train", "val", "test"))
    if splits:  # a split root: its training films are not the site's
        raise CLIError(f"{site} holds split folders ({', '.join(splits)}): give the folder "
                       f"of the site's films only, e.g. {site / splits[-1]}")
    classes = sorted(d.name for d in site.iterdir()
                     if d.is_dir() and d.name.upper() in ("NORMAL", "PNEUMONIA"))
    if classes:
        print(f"{site} has class sub-folders ({', '.join(classes)}): their films are used, "
              "their labels are not (no label is used from this folder)", flush=True)
    files = _collect_images([str(site)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(files, image_size, strict=False)
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    data.root = str(site)
    return data


def cmd_adapt(args) -> int:
    check_model_out(args.model_out, args.overwrite)
    if not 0 < args.target_sensitivity < 1:
        raise CLIError(f"--target-sensitivity must be in (0, 1), got {args.target_sensitivity}")
    site = Path(args.site_dir)
    if not site.is_dir():
        raise CLIError(f"{site}: no such folder; SITE_DIR is a folder of the site's films")
    from .adaptation import adapt
    from .calibration import load_model

    clf = load_model(args.model, tracking_uri=args.tracking_uri)
    _set_tracking_uri(clf, args.tracking_uri)
    data = _site_films(site, clf.image_size)
    model = adapt(clf, data, target_sensitivity=args.target_sensitivity,
                  batch_norm=args.batch_norm, track=args.tracking, data_name=str(site))
    path = model.save(args.model_out)
    a = model.adaptation_
    if args.json:
        return _print_saved_json(a, path, model)

    def ci(key):
        if a[key] is None:
            return "unknown (see the warning)"
        if not a[key + "_ci90"]:
            return f"{a[key]:.3f}"
        lo, hi = a[key + "_ci90"]
        return f"{a[key]:.3f} (90% interval {lo:.3f}-{hi:.3f})"

    print(f"Adapted to {a['n_films']} unlabelled films of {site}"
          + (" (batch-norm statistics re-estimated)" if a["batch_norm_recalibrated"] else ""))
    print(f"Estimated prevalence of PNEUMONIA: {ci('prevalence')} "
          f"(training hold-out: {a['holdout_prevalence']:.3f})")
    print(f"Threshold {ci('threshold')} (was {a['base_threshold']:.4f}), for sensitivity "
          f"{a['target_sensitivity']:g} on the site's estimated PNEUMONIA scores")
    print(f"Expected at this threshold: sensitivity {ci('expected_sensitivity')}, "
          f"specificity {ci('expected_specificity')}")
    print("These are estimates from the films' score distribution, not measurements: "
          "evaluate on labelled films of the site, or calibrate on 20+ of each class")
    print(f"Adapted model saved to {path}"
          + (f"; MLflow run {model.mlflow_run_id_}, logged model "
             f"models:/{model.mlflow_model_id_}" if model.mlflow_run_id_ else ""))
    return 0


def cmd_stress(args) -> int:
    from .calibration import load_model
    from .robustness import PERTURBATIONS, SEVERITIES, stress_test

    names = args.perturbations.split(",") if args.perturbations else None
    unknown = [n for n in names or [] if n not in PERTURBATIONS]
    if unknown:
        raise CLIError(f"--perturbations: unknown {', '.join(unknown)}; choose from "
                       f"{', '.join(PERTURBATIONS)}")
    if not args.severities or any(v not in SEVERITIES for v in args.severities):
        raise CLIError(f"--severities must be a subset of 1,2,3, got {args.severities}")
    clf = load_model(args.model)
    data = _load_data(args, clf.image_size, "evaluate")
    result = stress_test(clf, data, perturbations=names, severities=tuple(args.severities),
                         random_state=args.random_state)
    if args.json:  # strict JSON: an undefined ROC AUC (one class) is null
        from .plots import strict_json

        print(json.dumps(strict_json(result.to_dict()), allow_nan=False))
        return 0
    table = result.to_frame()
    print(table.to_string(index=False, float_format="%.3f"))
    s = result.summary
    print(f"\nClean: ROC AUC {s['clean_roc_auc']:.3f}, sensitivity {s['clean_sensitivity']:.3f}"
          f", specificity {s['clean_specificity']:.3f} at threshold {result.threshold:.3f}")
    print(f"Under shift (mean of {len(table) - 1}): ROC AUC {s['stress_roc_auc']:.3f}, "
          f"sensitivity {s['stress_sensitivity']:.3f}, specificity "
          f"{s['stress_specificity']:.3f} (worst {s['stress_min_specificity']:.3f}); NORMAL "
          f"films' mean P(PNEUMONIA) moves by {s['stress_normal_shift']:+.3f} on average")
    return 0


def _read_inputs(inputs, image_size: int):
    """The images named on the command line (files and folders), unreadable ones reported
    as warnings; an error if none can be read."""
    from .data import ImageData, load_images
    from .sources import is_data_file, load_data, parse_source, source_kind

    def whole_source(item) -> bool:
        path, splits = parse_source(item)
        return is_data_file(path) or splits is not None or (
            path.is_dir() and source_kind(path) == "splits")

    # data sets named as a whole (a MedMNIST .npz[:split], a label CSV, a split root or one
    # of its splits) are read as such: a split root gives its test split, as evaluate reads
    # it (its train+val films were scored too, silently, before)
    whole = [i for i in inputs if whole_source(i)]
    rest = [i for i in inputs if i not in whole]
    parts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if rest:
            parts.append(load_images(_collect_images(rest), image_size, strict=False,
                                     cache=False))
        parts += [load_data(i, image_size, role="evaluate") for i in whole]
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    data = parts[0] if len(parts) == 1 else ImageData.concat(parts)
    if len(data) == 0:
        raise CLIError("none of the images could be read")
    return data


def cmd_explain(args) -> int:
    from .calibration import load_model
    from .explain import explain

    clf = load_model(args.model)
    data = _read_inputs(args.inputs, clf.image_size)
    targets = ["PNEUMONIA", "NORMAL"] if args.target == "both" else [args.target]
    for target in targets:
        out = Path(args.out) / target.lower() if len(targets) > 1 else Path(args.out)
        print(f"Explaining {len(data)} image(s): {target} evidence, layer "
              f"{args.layer or 'last convolution block'} -> {out}", flush=True)
        result = explain(clf, data, layer=args.layer, target=target, method=args.method,
                         out_dir=out, progress=len(data) > 20)
        print(f"{len(result.files)} overlays and {out / 'index.html'}")
    return 0


def cmd_predict(args) -> int:
    from .calibration import load_model

    clf = load_model(args.model)
    data = _read_inputs(args.inputs, clf.image_size)
    proba = clf.predict_proba(data.X)[:, list(clf.classes_).index("PNEUMONIA")]
    labels = clf.predict(data.X)
    import csv

    # a real TSV writer: a tab, newline or quote in a file name is quoted, never a new row
    writer = None if args.json else csv.writer(sys.stdout, delimiter="\t",
                                               lineterminator="\n")
    for path, label, p in zip(data.paths, labels, proba):
        if args.json:
            print(json.dumps({"path": str(path), "label": str(label),
                              "probability_pneumonia": round(float(p), 6)}))
        else:
            writer.writerow([str(path), str(label), f"{p:.4f}"])
    return 0


def cmd_search(args) -> int:
    from .search import search

    if (args.grid is None) == (args.random is None):
        raise CLIError("give exactly one of --grid and --random")
    base = _make_estimator(args)
    base.set_params(verbose=0)
    tracking_uri = vars(args).get("tracking_uri")
    from .search import check_space

    check_space(base, args.grid, args.random, args.n_iter, 0)  # before reading any image
    import contextlib

    with contextlib.ExitStack() as stack:
        cluster = None
        if args.cluster:  # connect first: a dead scheduler fails before the data is read
            from .cluster import connect

            cluster = stack.enter_context(connect(args.cluster))
        data = _load_data(args, base.image_size, "train", verbose=0 if args.quiet else 1)
        result = search(data, args.grid, param_distributions=args.random,
                        n_iter=args.n_iter, estimator=base, cv=args.cv, n_jobs=args.n_jobs,
                        name=args.name, tracking_uri=tracking_uri, resume=args.resume,
                        holdout=args.holdout, verbose=0 if args.quiet else 1,
                        scoring="stress" if args.stress else None, register=args.register,
                        cluster=cluster)
    cols = [c for c in result.cv_results.columns if c.startswith("param_")]
    scores = ["mean_test_roc_auc", "std_test_roc_auc", "mean_test_accuracy",
              "mean_test_sensitivity", "mean_test_specificity", "mean_test_stress_roc_auc",
              "mean_test_stress_specificity", "mean_fit_time"]
    table = result.cv_results.sort_values("mean_test_roc_auc", ascending=False)
    print(table[cols + [c for c in scores if c in table]].to_string(index=False,
                                                                     float_format="%.4f"))
    if result.holdout:
        print(f"Refit best on held-out patients: {_fmt(result.holdout)}")
    from .tracking import get_client, ui_url

    exp_id = get_client(tracking_uri).get_run(result.parent_run_id).info.experiment_id
    print(f"MLflow parent run: {result.parent_run_id}; compare the candidates: `mlflow ui "
          f"--port 5000`, then {ui_url(exp_id)}")
    return 0


def cmd_run(args) -> int:
    from .data import grouped_split
    from .evaluation import evaluate, public_metrics
    from .sources import evaluation_split
    from .synthetic import make_synthetic_dataset

    out = Path(args.out)
    clf = _make_estimator(args)
    synthetic = args.data_dir is None
    if synthetic:  # every result of the demo says SYNTHETIC, its folder too
        out = out / "SYNTHETIC-demo"
        out.mkdir(parents=True, exist_ok=True)
        args.data_dir = str(make_synthetic_dataset(out / "synthetic_data", n_normal=60,
                                                   n_pneumonia=120))
        print("=" * 78)
        print("No DATA given: using a small built-in SYNTHETIC data set "
              f"({args.data_dir}).\nThese are drawn images, not radiographs; the numbers below "
              "only show that the\npipeline works. Pass chest_xray/train (or chest_xray) for "
              "real results.")
        print("=" * 78, flush=True)
        # the demo set is small: more, smaller steps (unless the user chose otherwise)
        clf.set_params(**{k: v for k, v in {"epochs": 25, "batch_size": 16}.items()
                          if k not in vars(args)})
    out.mkdir(parents=True, exist_ok=True)
    data = _load_data(args, clf.image_size, "train", verbose=int(not args.quiet))
    test_source = evaluation_split(args.data_dir)  # chest_xray:test, data.npz:test, or None
    if test_source is None:
        tr, te = grouped_split(data.y, data.groups, 0.2, random_state=0)
        train, held = data.subset(tr), data.subset(te)
        held_out = (f"20% of the patients of {data.root}, held out from training "
                    "(patient-grouped)")
        held_name = f"{data.root} (held-out 20% of patients)"
    else:
        train, held = data, None
        held_out = held_name = test_source
    print(f"Training on {len(train)} images {train.class_counts()} from {data.root}; "
          f"evaluating on {held_out}", flush=True)
    clf.fit(train)
    model_path = clf.save(out / "model")
    if held is None:
        held = _load_data(args, clf.image_size, None, source=test_source)
    result = evaluate(clf, held, out_dir=out / "evaluation", data_name=held_name)
    metrics = public_metrics(result)
    print(f"\nEvaluation on {metrics['n_images']} images: {held_out}"
          + (" [SYNTHETIC DATA]" if synthetic else ""))
    print(_fmt(metrics))
    print(_fmt_ci(metrics))
    print(metrics["classification_report_text"])
    _print_stress(clf)
    print(f"Training time: {clf.fit_time_:.1f} s")
    print(f"Model:   {model_path}")
    print(f"Plots:   {', '.join(result['figures'].values())}")
    print(f"Metrics: {out / 'evaluation' / 'metrics.json'}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "calibrate": cmd_calibrate,
            "adapt": cmd_adapt,
            "stress": cmd_stress, "explain": cmd_explain, "predict": cmd_predict,
            "search": cmd_search, "register": cmd_register, "close-runs": cmd_close_runs,
            "run": cmd_run}


from .quiet import filter_native_stderr as _filter_native_stderr  # noqa: E402


def main(argv=None) -> int:
    """Entry point of ``pneumonia-cnn``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import signal

    from .cluster import ClusterError
    from .data import DataError
    from .tracking import TrackingError

    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        MlflowException = TrackingError

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if "Add type hints to the `predict` method" in str(message):
            return  # MLflow's advice to library authors; warning filters do not stop it
        print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)

    def terminate(signum, frame):  # SIGTERM ends a fit like Ctrl-C: nothing done is lost
        raise KeyboardInterrupt

    old_show, old_term = warnings.showwarning, None
    warnings.showwarning = show_warning
    if threading.current_thread() is threading.main_thread():  # signals live there only
        old_term = signal.signal(signal.SIGTERM, terminate)
    start = time.perf_counter()
    try:
        return COMMANDS[args.command](args)
    except (CLIError, DataError, TrackingError, MlflowException, ValueError, OSError,
            ClusterError) as exc:
        msg = str(exc).strip() or type(exc).__name__
        print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted after {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = old_show
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def console_main() -> None:
    """``pneumonia-cnn`` console script: ``main`` with TensorFlow's native noise filtered."""
    finish = _filter_native_stderr()
    try:
        code = main()
    finally:
        finish()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
