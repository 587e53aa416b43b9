"""What the commands share: options generated from the estimator's parameters, data and
tracking options, reading data and images, printing metrics, model-folder checks."""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

PROG = "pneumonia-cnn"


NO_OPTION = {"callbacks", "fit_hooks", "metrics", "verbose"}


MODEL_HELP = ("model folder written by `train`, or an MLflow model URI: "
               "models:/NAME@champion, models:/NAME/VERSION, models:/MODEL_ID, "
               "runs:/RUN_ID/MODEL_NAME (store: $MLFLOW_TRACKING_URI or ./mlflow.db)")


class CLIError(Exception):
    """An error to show as one line, without a traceback."""


def estimator_spec() -> tuple:
    """``(defaults, docstring)`` of ``PneumoniaCNN``, read from the source of
    :mod:`pneumonia_cnn.estimator` without importing it (importing it imports TensorFlow:
    5 s before ``--help`` could answer). The estimator stays the one source of truth."""
    import ast

    origin = Path(__file__).resolve().parents[1] / "estimator" / "_classifier.py"
    tree = ast.parse(origin.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PneumoniaCNN")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(init.args.kwonlyargs,
                                                           init.args.kw_defaults)}
    return defaults, ast.get_docstring(cls) or ""


def plain(text: str) -> str:
    """reST roles and literals read badly in --help: ``"light"`` -> "light", :mod:`x` -> x."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


CLI_HELP = {"optimizer": "Keras optimizer name: adam, sgd, rmsprop, adamw... (routed "
                          "optimizer__* parameters are Python-only)"}


def param_help() -> dict:
    """Each parameter's first sentence in the PneumoniaCNN docstring, with its accepted
    values from the type line (``{"max", "average"}``, ``"balanced", dict or None``)."""
    doc = estimator_spec()[1]
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
        text = CLI_HELP.get(k) or plain(v.split(". ")[0].rstrip("."))
        kind = plain(types.get(k, ""))
        if kind and k not in CLI_HELP and not re.fullmatch(r"(int|float|bool|str)", kind):
            text += f"; accepts {kind.replace('None', 'none').replace('dict', 'a JSON dict')}"
        out[k] = text.replace("%", "%%")
    return out


def none_or(parse):
    def parser(text: str):
        return None if text.lower() in ("none", "null", "off") else parse(text)
    parser.__name__ = getattr(parse, "__name__", "value")
    return parser


def int_tuple(text: str):
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as "
                                         f"32,64,128, got {text!r}") from None


def float_or_auto(text: str):
    if text.lower() in ("auto", "target", "conformal"):
        return text.lower()
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'target', 'conformal' or 'auto', "
                                         f"got {text!r}") from None


def json_arg(text: str):
    """A JSON option value, or argparse's error naming it."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc}") from None


def str_or_json(text: str):
    return json_arg(text) if text.lstrip().startswith("{") else text


SIZE_CHOSEN = {"filters": (8,), "convs_per_block": 1, "global_pooling": False,
                "dense_units": 64}
#: None defaults chosen by backbone (estimator.BACKBONE_DEFAULTS), with their value's kind
BACKBONE_CHOSEN = {"image_size": 96, "n_networks": 3, "epochs": 14, "learning_rate": 1e-3,
                   "average_last": 0}


def add_estimator_options(parser: argparse.ArgumentParser) -> None:
    defaults = estimator_spec()[0]
    helps = param_help()
    group = parser.add_argument_group("model and training hyperparameters "
                                      "(PneumoniaCNN parameters; defaults in brackets)")
    for name, default in defaults.items():
        if name in NO_OPTION:
            continue
        flag = "--" + name.replace("_", "-")
        help_ = f"{helps.get(name, name)} [{default!r}]"
        kind_of = SIZE_CHOSEN.get(name, default)  # None defaults chosen by image size
        if name in SIZE_CHOSEN:
            help_ = f"{helps.get(name, name)} [by image size]"
        elif name in BACKBONE_CHOSEN:
            kind_of = BACKBONE_CHOSEN[name]
            help_ = f"{helps.get(name, name)} [by backbone]"
        if isinstance(kind_of, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_)
            continue
        if isinstance(kind_of, tuple):
            kind, metavar = (none_or(int_tuple) if name in SIZE_CHOSEN else int_tuple,
                             "N,N,...")
        elif isinstance(default, int) or isinstance(kind_of, int):
            kind, metavar = none_or(int), "N"
        elif name == "threshold":
            kind, metavar = float_or_auto, "X|target|conformal|auto"
        elif isinstance(default, float) or isinstance(kind_of, float):
            kind, metavar = none_or(float), "X"
        elif name == "random_state":
            kind, metavar = none_or(int), "N"
        else:
            kind, metavar = none_or(str_or_json), "NAME"
        group.add_argument(flag, dest=name, type=kind, metavar=metavar,
                           default=argparse.SUPPRESS, help=help_)


def json_object(text: str) -> dict:
    value = json_arg(text)
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        raise argparse.ArgumentTypeError('expected a JSON object of lists, e.g. '
                                         '\'{"filters": [[16,32],[32,64]]}\'')
    return {k: [tuple(x) if isinstance(x, list) else x for x in v] for k, v in value.items()}


DATA_HELP = ("data: a folder with NORMAL/ and PNEUMONIA/, a split root (Kaggle's chest_xray "
              "with train/ val/ test/; pick one as chest_xray:test), a MedMNIST .npz "
              "(pneumoniamnist.npz[:train|val|test]) or a CSV of path,label[,patient]")


def add_data_options(parser) -> None:
    group = parser.add_argument_group("data options")
    group.add_argument("--strict", action="store_true",
                       help="stop on an unreadable image file instead of skipping it "
                            "with a warning")
    group.add_argument("--label-map", metavar="JSON", type=label_map,
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


def label_map(text: str) -> dict:
    value = json_arg(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object, e.g. \'{"No Finding": '
                                         '"NORMAL", "Pneumonia": "PNEUMONIA"}\'')
    return value


def load_data_arg(args, image_size: int, role, verbose: int = 0, source=None):
    """The command's DATA (or ``source``), read with the data options as
    :func:`pneumonia_cnn.data.load_data` reads it; says which split(s) were used when
    the source has several."""
    from ..data import load_data

    source = args.data_dir if source is None else source
    data = load_data(source, image_size, role=role, label_map=args.label_map,
                     columns=args.columns, image_root=args.image_root, strict=args.strict,
                     verbose=verbose)
    if str(data.root) != str(Path(source).expanduser()) and role is not None:
        print(f"Using {data.root} ({len(data)} images)", flush=True)
    return data


def add_tracking_options(parser, default_help: str) -> None:
    parser.add_argument("--tracking", dest="tracking", action=argparse.BooleanOptionalAction,
                        default=None, help=f"log to MLflow {default_help}")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")


def estimator_params(args) -> dict:

    names = set(estimator_spec()[0])
    return {k: v for k, v in vars(args).items() if k in names}


def checked_settings(args) -> dict:
    """The estimator's parameters given on the command line, checked with its defaults
    without importing TensorFlow: a typo is refused in a fraction of a second."""
    from ..estimator import check_settings

    params = estimator_params(args)
    params["verbose"] = 0 if getattr(args, "quiet", False) else 2
    check_settings({**estimator_spec()[0], **params})
    return params


def make_estimator(args, params: dict | None = None):
    """The estimator of the command line's settings (``params`` from
    :func:`checked_settings`, else checked here first)."""
    params = checked_settings(args) if params is None else params
    from ..estimator import PneumoniaCNN

    return PneumoniaCNN(**params)


def _defined(v) -> bool:
    return v is not None and v == v  # None (strict JSON) or NaN: undefined


def fmt(metrics: dict) -> str:
    """The headline metrics on one line; an undefined one (no film of a class, or none called
    PNEUMONIA) is printed as ``n/a``, never a crash."""
    keys = ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1")
    return "  ".join(f"{k}={metrics[k]:.3f}" if _defined(metrics[k]) else f"{k}=n/a"
                     for k in keys if k in metrics)


def refuse_inside_inputs(flag: str, path, inputs) -> None:
    """Refuse an output folder (``flag``'s ``path``) that is one of the command's
    ``inputs`` (data folders, image files, the model it reads) or inside one, before any
    work: what it writes would replace the input or be read back as films (site issue,
    findings 6 and 7)."""
    if path is None:
        return
    out = Path(path).resolve()
    for given in inputs:
        if given is None or "://" in str(given) or str(given).startswith("models:"):
            continue  # a model URI: not a folder here
        source = Path(given).resolve()
        if out == source or source in out.parents:
            harm = ("replace what it reads" if out == source else
                    "mix its files into the input (plots would be read as films next time)")
            raise CLIError(f"{flag} {path} is {'' if out == source else 'inside '}{given}, "
                           f"which this command reads: writing there would {harm}; choose "
                           "a folder outside the data and the model")


def check_model_out(path, overwrite: bool = False, inputs=()) -> None:
    """Refuse a --model-out that would lose the trained model or someone's files, before any
    work: the current folder, one of the command's ``inputs`` (the model it reads, its data
    folder) or a folder inside one, a file, an existing folder that is not a saved model
    (unless ``overwrite``), or a place that cannot be written."""
    import tempfile

    from ..utils import META_FILE

    if not Path(path).resolve().name or Path(path).resolve() == Path.cwd().resolve():
        raise CLIError(f"--model-out {path} names the current folder: the model is saved as a "
                       "folder of its own; give it a new name, e.g. --model-out ./model")
    refuse_inside_inputs("--model-out", path, inputs)
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


def register_model(model_uri: str, name: str, tracking_uri) -> None:
    from ..tracking import register

    r = register(model_uri, name, tracking_uri=tracking_uri)
    print(f"Registered {r.name!r} version {r.version}; {r.message}. Serve the champion: "
          f"pneumonia-cnn serve models:/{r.name}@champion")


def logged_model_uri(model: str) -> str:
    """A model folder written by train / calibrate / adapt as the URI of the model it
    logged to MLflow (``models:/<id>``, recorded in the folder); anything else as given."""
    import re

    folder = Path(model)
    if not folder.is_dir():
        if re.fullmatch(r"[0-9a-f]{32}", model) or model.startswith(("models:/", "runs:/")):
            return model  # a run id or a URI: MLflow says whether it exists
        raise CLIError(f"{model}: no such model folder, and not a run id or a model URI: give "
                       "a model folder (written by train, calibrate or adapt), a models:/ or "
                       "runs:/ URI, or a run id")
    # the outermost step first: a calibrated (adapted) folder is that model, not its network
    from ..utils import META_FILE, WRAPPER_FILES

    for name in (*WRAPPER_FILES, META_FILE):  # calibration, adaptation, then the network
        file = folder / name
        if file.is_file():
            try:
                model_id = json.loads(file.read_text()).get("mlflow_model_id")
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


def print_stress(clf) -> None:
    """The fit's shift-stress summary of its validation hold-out, when it has one."""
    s = getattr(clf, "stress_", None)
    if s:
        # the hold-out chose the epoch and the threshold: its unperturbed numbers are not an
        # evaluation, and are named for what they are (user's path issue, item 4)
        print(f"Under shift (stress test of the validation hold-out, 39 perturbed copies): "
              f"ROC AUC {s['stress_roc_auc']:.3f}, specificity "
              f"{s['stress_specificity']:.3f} (worst {s['stress_min_specificity']:.3f}); "
              f"unperturbed, that hold-out gives {s['clean_roc_auc']:.3f} / "
              f"{s['clean_specificity']:.3f}, optimistic: it chose the threshold. "
              "Calibrate on your site's images before use: `pneumonia-cnn calibrate`.")


def collect_images(inputs) -> list[str]:
    from ..data import IMAGE_EXTENSIONS, image_files

    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += [str(f) for f in image_files(path)]
        elif path.is_file():
            files.append(str(path))
        else:
            raise CLIError(f"{item}: no such file or folder")
    if not files:
        raise CLIError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
                       f"{', '.join(inputs)}")
    return files


def set_tracking_uri(model, uri) -> None:
    if uri:
        from ..analysis import network_of

        network_of(model).set_params(tracking_uri=uri)  # a site model logs as its network


def fmt_ci(metrics: dict) -> str:
    ci = metrics.get("ci95", {})
    parts = [f"{k} {lo:.3f}-{hi:.3f}" if _defined(lo) and _defined(hi)
             else f"{k} n/a (too few images)" for k, (lo, hi) in ci.items()]
    brier = f"{metrics['brier']:.3f}" if _defined(metrics.get("brier")) else "n/a"
    return (f"95% CI: {', '.join(parts)}; Brier score {brier} "
            "(ROC AUC: bootstrap over patients; others: Wilson)")


def print_saved_json(summary: dict, path, model) -> int:
    """A site step's summary, where the model was saved and its run, as strict JSON."""
    from ..metrics import strict_json

    print(json.dumps(strict_json({**summary, "model_out": str(path),
                                  "mlflow_run_id": model.mlflow_run_id_}), allow_nan=False))
    return 0


def site_films(folder, image_size: int):
    """Every image under ``folder`` (recursively), without labels; class sub-folders are
    said to be ignored. Unreadable films are warned about and skipped."""
    from ..data import load_images

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
    files = collect_images([str(site)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(files, image_size, strict=False)
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    data.root = str(site)
    return data


def read_inputs(inputs, image_size: int):
    """The images named on the command line (files and folders), unreadable ones reported
    as warnings; an error if none can be read."""
    from ..data import (
        ImageData,
        is_data_file,
        load_data,
        load_images,
        parse_source,
        source_kind,
    )

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
            parts.append(load_images(collect_images(rest), image_size, strict=False,
                                     cache=False))
        parts += [load_data(i, image_size, role="evaluate") for i in whole]
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    data = parts[0] if len(parts) == 1 else ImageData.concat(parts)
    if len(data) == 0:
        raise CLIError("none of the images could be read")
    return data


def check_model_arg(path) -> None:
    """Refuse a MODEL that is no saved model folder, before anything heavy is imported (a
    model URI is checked when it is fetched)."""
    from ..utils import (
        META_FILE,
        MODEL_FILE,
        is_model_uri,
        model_files_folder,
        not_a_model,
    )

    if is_model_uri(path):
        return
    folder = model_files_folder(path)
    if not (folder / META_FILE).is_file() or not (folder / MODEL_FILE).is_file():
        raise CLIError(not_a_model(path))


def check_layer_arg(model, layer) -> None:
    """Refuse ``explain --layer NAME`` when the saved network (a local model folder) has no
    such layer, from the model file's own config, before TensorFlow loads (site issue,
    finding 13)."""
    import json
    import zipfile

    from ..utils import MODEL_FILE, is_model_uri, model_files_folder

    if layer is None or is_model_uri(model):
        return
    try:
        with zipfile.ZipFile(model_files_folder(model) / MODEL_FILE) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return  # loading the model will say what is wrong with it
    names = []

    def walk(cfg):
        for entry in cfg.get("config", {}).get("layers", []) or []:
            names.append((entry.get("config", {}).get("name") or entry.get("name"),
                          entry.get("class_name", "")))
            walk(entry)

    walk(config)
    if layer not in {n for n, _ in names}:
        convs = [n for n, kind in names if "Conv" in kind or "Activation" in kind
                 or "ReLU" in kind][-6:]
        raise CLIError(f"--layer {layer!r}: {model} has no layer {layer!r}; its last "
                       f"convolution and activation layers are {', '.join(convs)} (leave out "
                       "--layer for the default)")


def check_data_arg(args, role, source=None) -> None:
    """Refuse a DATA source that :func:`load_data_arg` would refuse (missing folder, split
    or class folders; CSV options without a CSV), without reading an image or importing
    TensorFlow."""
    from ..data import check_source

    check_source(args.data_dir if source is None else source, role,
                 label_map=args.label_map, columns=args.columns, image_root=args.image_root)


def check_inputs_exist(inputs) -> None:
    """Every image file or folder named on the command line exists."""
    from ..data import parse_source

    missing = [str(i) for i in inputs if not Path(i).exists()
               and not parse_source(i)[0].exists()]  # a split of a source: data.npz:val
    if missing:
        raise CLIError(f"{len(missing)} input(s) do not exist, first: {missing[0]}; pass "
                       "image files or folders of images")


def split_by_patient(data, fraction: float, random_state: int = 0) -> tuple:
    """``data`` as (the part to calibrate or adapt on, the part to evaluate on): a
    patient-grouped, class-stratified split holding out ``fraction`` of the patients."""
    from ..data import grouped_split

    keep, held = grouped_split(data.y, data.groups, fraction, random_state=random_state)
    first, second = data.subset(keep), data.subset(held)
    print(f"Split {len(data)} films of {len(set(data.groups))} patients by patient: "
          f"{len(first)} {first.class_counts()} to fit the operating point on, "
          f"{len(second)} {second.class_counts()} ({len(set(second.groups))} patients) to "
          "evaluate it on", flush=True)
    return first, second


def evaluate_site_part(model, network, held, args) -> dict:
    """Evaluate the calibrated (adapted) ``model`` and the ``network`` before it on the
    held-out part of the site's films; with tracking, the evaluation is a run under the
    model's run and both scores are logged to the model's run, where `register` finds them.
    Returns the summary printed by :func:`print_site_evaluation`."""
    from ..analysis import evaluate
    from ..metrics import public_metrics

    name = f"{held.root} (evaluation part)"
    after = public_metrics(evaluate(model, held, out_dir=getattr(args, "report_dir", None),
                                    track=args.tracking, data_name=name))
    with warnings.catch_warnings():  # the same films: their warnings were just given
        warnings.simplefilter("ignore")
        before = public_metrics(evaluate(network, held, track=False, gallery=False,
                                         data_name=name))
    site = {"data": name, "n_images": after["n_images"], "model": after, "network": before}
    if getattr(model, "mlflow_run_id_", None):
        from ..tracking import log_site_evaluation

        log_site_evaluation(model, site)
    for part in ("model", "network"):
        site[part] = {k: site[part][k] for k in ("roc_auc", "sensitivity", "specificity",
                                                 "threshold", "ci95")}
    return site


def print_site_evaluation(site: dict) -> None:
    """Print :func:`evaluate_site_part`'s summary: before and after, with intervals."""
    print(f"Evaluated on {site['n_images']} films the operating point never saw "
          f"({site['data']}):")
    for label, part in (("after ", site["model"]), ("before", site["network"])):
        ci = part["ci95"]
        print(f"  {label}: threshold {part['threshold']:.3f}  sensitivity "
              f"{part['sensitivity']:.3f} ({ci['sensitivity'][0]:.3f}-"
              f"{ci['sensitivity'][1]:.3f})  specificity {part['specificity']:.3f} "
              f"({ci['specificity'][0]:.3f}-{ci['specificity'][1]:.3f})  ROC AUC "
              f"{part['roc_auc']:.3f}")


def print_view_link(run_id, tracking_uri, view: str, what: str, search_filter=None) -> None:
    """Print where ``mlflow ui`` shows ``what``: a saved view of the runs table of the run's
    experiment ("models", "candidates" or "evaluations"; narrowed by ``search_filter`` into
    a view of its own). Tracking problems are not this command's: they only cost the link."""
    try:
        from ..tracking import get_client, save_view, ui_url

        client = get_client(tracking_uri)
        exp_id = client.get_run(run_id).info.experiment_id
        if search_filter:
            view = save_view(client, exp_id, f"{view}-{run_id[:8]}", view, search_filter)
        print(f"Compare {what}: run `mlflow ui --port 5000` in this folder, then open "
              f"{ui_url(exp_id, view=view)}")
    except Exception as exc:  # the runs are logged; only the link is missing
        print(f"{PROG}: warning: no MLflow link ({exc})", file=sys.stderr)


def refuse_split_root(source) -> None:
    """A site's operating point is set on the site's own labelled films: a split root given
    without a split (Kaggle's chest_xray/) is refused with how many films of each class
    every split holds, and how to calibrate and evaluate on one folder."""
    from ..data import (
        CLASS_NAMES,
        find_class_folders,
        image_files,
        parse_source,
        source_kind,
    )

    path, splits = parse_source(source)
    if splits or not path.is_dir() or source_kind(path) != "splits":
        return
    sizes, usable = [], []
    for split in sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")):
        try:
            folders = find_class_folders(split)
        except ValueError:
            continue
        counts = {c: len(image_files(folders[c])) for c in CLASS_NAMES if c in folders}
        sizes.append(f"{split.name}: " + ", ".join(f"{n} {c}" for c, n in counts.items()))
        if split.name.lower() != "train" and len(counts) == 2 and min(counts.values()) >= 20:
            usable.append((sum(counts.values()), split.name))
    hint = (f"to try it on this data, name a split with enough films: {path}:{max(usable)[1]}"
            if usable else "none of its splits but train (the model's own films, most likely) "
            "has 20 films of each class")
    raise CLIError(f"{source} is a split root ({'; '.join(sizes)}). Calibrate on labelled "
                   "films of the site the model will serve, at least 10 of each class (20+ "
                   "better), e.g. a folder with NORMAL/ and PNEUMONIA/; add --evaluate-fraction "
                   f"0.5 to calibrate on half of its patients and evaluate on the other half; "
                   f"{hint}")


def add_site_evaluation_options(parser, verb: str, what: str) -> None:
    """``--evaluate-fraction`` and ``--report-dir`` of ``calibrate`` and ``adapt``: fit the
    operating point (``verb``: "calibrate", "adapt") on part of ``what``, evaluate on the
    rest."""
    parser.add_argument("--evaluate-fraction", type=float, metavar="F",
                        help=f"hold out this fraction of the patients of {what} (patient-"
                             f"grouped, stratified; at most 0.5): {verb} on the rest, then "
                             "evaluate the new model and the network before it on the held-out "
                             "films, "
                             f"which the {verb} step never saw. With tracking, `register` "
                             "then ranks the new model on them [off]")
    parser.add_argument("--report-dir", metavar="DIR",
                        help="with --evaluate-fraction: write the evaluation's plots and "
                             "metrics here")


def evaluate_fraction(args) -> float | None:
    """``--evaluate-fraction``, checked: in (0, 0.5] (the part the operating point is fitted
    on keeps at least half of the films), or None."""
    fraction = args.evaluate_fraction
    if fraction is None and getattr(args, "report_dir", None):
        raise CLIError("--report-dir writes the evaluation of --evaluate-fraction's part of "
                       "the site, so it needs --evaluate-fraction (e.g. 0.5); without it "
                       "nothing would be evaluated or written")
    if fraction is not None and not 0 < fraction <= 0.5:
        raise CLIError(f"--evaluate-fraction must be in (0, 0.5], got {fraction}: the part "
                       "the operating point is fitted on keeps at least half of the films")
    refuse_inside_inputs("--report-dir", getattr(args, "report_dir", None),
                         [getattr(args, k, None) for k in ("model", "site_dir", "data_dir",
                                                           "unlabelled")])
    return fraction
