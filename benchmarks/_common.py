"""Helpers shared by the benchmark scripts (data location, the lab's reference model)."""

import os
import platform
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chest_xray" / "train"


def data_dir(arg: str | None) -> Path:
    """--data, else $PNEUMONIA_CNN_DATA, else ../shared/data/chest_xray/train."""
    path = Path(arg or os.environ.get("PNEUMONIA_CNN_DATA") or DEFAULT_DATA).resolve()
    if not path.is_dir():
        raise SystemExit(f"data folder {path} not found: pass --data chest_xray/train")
    return path


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def epoch_timer():
    """A Keras callback recording the wall time of every epoch in its ``times`` list."""
    import time

    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def build_reference_model(meta=None, compile_kwargs=None):
    """The lab's reference CNN: 150x150 RGB, Conv 32-64-128-128 (3x3, valid) each with 2x2
    max pooling, Flatten, Dense 512, sigmoid; RMSprop 1e-4 (Chollet's cats-vs-dogs CNN)."""
    import keras
    from keras import layers

    inputs = keras.Input((150, 150, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="lab_reference")
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def reference_classifier(epochs: int = 30, random_state: int = 0):
    """The reference model as a scikeras classifier: batch 20, ``epochs`` epochs."""
    from scikeras.wrappers import KerasClassifier

    return KerasClassifier(model=build_reference_model, batch_size=20, epochs=epochs,
                           random_state=random_state, verbose=0)


def to_rgb(X):
    """Grayscale (n, h, w, 1) -> (n, h, w, 3), as the lab read its JPEGs."""
    import numpy as np

    return np.repeat(X, 3, axis=-1)


#: The whole official training split at 224 px (the batch-design benchmarks' default).
DATA_224 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chest_xray_224" / "train"


def batch_design(data):
    """The acquisition-batch design of ``robustness.py``, ``adaptation.py`` and
    ``site_calibration.py`` on a loaded Kaggle folder: boolean masks ``early``, ``late``
    (the ends of every file-name family), ``indist`` (15% of the other patients, grouped,
    seed 0), ``train`` (the rest) and ``late_balanced`` (``late`` with PNEUMONIA films
    subsampled to the NORMAL count, seed 0), and the 0/1 labels."""
    import numpy as np

    from pneumonia_cnn.data import batch_masks, grouped_split

    y = (data.y == "PNEUMONIA").astype(int)
    early, late = batch_masks(data.paths)
    rest = np.flatnonzero(~early & ~late)
    tr, te = grouped_split(data.y[rest], data.groups[rest], 0.15, random_state=0)
    train = np.zeros(len(y), bool)
    train[rest[tr]] = True
    indist = np.zeros(len(y), bool)
    indist[rest[te]] = True
    late_rows = np.flatnonzero(late)
    neg, pos = late_rows[y[late_rows] == 0], late_rows[y[late_rows] == 1]
    balanced = np.zeros(len(y), bool)
    balanced[np.r_[neg, np.random.default_rng(0).choice(pos, neg.size, replace=False)]] = True
    return {"early": early, "late": late, "indist": indist, "train": train,
            "late_balanced": balanced}, y


def batch_sites(data, masks, y, severity: int = 2) -> dict:
    """Sites for the site benchmarks: the real batches (``early``, ``late``,
    ``late_balanced``) and the within-distribution hold-out under each shift-stress
    perturbation at ``severity`` (``stress:<name>``), as ``{name: (X, y)}``."""
    from pneumonia_cnn.analysis import PERTURBATIONS, perturb

    sites = {k: (data.X[masks[k]], y[masks[k]]) for k in ("early", "late", "late_balanced")}
    X_in, y_in = data.X[masks["indist"]], y[masks["indist"]]
    for name in PERTURBATIONS:
        sites[f"stress:{name}"] = (perturb(X_in, name, severity, random_state=0), y_in)
    return sites


def data_224(arg) -> Path:
    """--data, else $PNEUMONIA_CNN_DATA_224, else ../shared/data/chest_xray_224/train."""
    path = Path(arg or os.environ.get("PNEUMONIA_CNN_DATA_224") or DATA_224).resolve()
    if not path.is_dir():
        raise SystemExit(f"data folder {path} not found: pass --data chest_xray_224/train")
    return path


def train_on_middle(data, masks, seed: int, **params):
    """The default PneumoniaCNN (plus ``params``) trained on ``masks["train"]``; returns
    it and the seconds ``fit`` took."""
    import time

    from pneumonia_cnn import PneumoniaCNN

    clf = PneumoniaCNN(**params, random_state=seed, tracking=False)
    start = time.perf_counter()
    tr = masks["train"]
    clf.fit(data.X[tr], data.y[tr], groups=data.groups[tr])
    return clf, time.perf_counter() - start


def site_benchmark(description: str, out_name: str, add_arguments, argv=None):
    """What the site benchmarks (``adaptation.py``, ``site_calibration.py``) share: their
    options (``--data``, ``--seed``, ``--out`` and those ``add_arguments`` adds), the
    default trained on the middle batches, and the sites. Returns ``(args, clf, fit_s,
    sites)``."""
    import argparse
    import warnings

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="chest_xray_224/train [$PNEUMONIA_CNN_DATA_224 or "
                                       "../shared/data/chest_xray_224/train]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sites", choices=("all", "real"), default="all",
                        help="all sites, or only the real batches (early, late, "
                             "late_balanced) [all]")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      out_name))
    add_arguments(parser)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from pneumonia_cnn import PneumoniaCNN, load_image_folder

    data = load_image_folder(data_224(args.data), PneumoniaCNN().input_size(), verbose=0)
    masks, y = batch_design(data)
    clf, fit_s = train_on_middle(data, masks, args.seed)
    sites = batch_sites(data, masks, y)
    if args.sites == "real":
        sites = {k: v for k, v in sites.items() if not k.startswith("stress:")}
    return args, clf, fit_s, sites
