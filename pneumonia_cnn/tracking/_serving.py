"""The model as MLflow logs and serves it: one pyfunc model per fit.

A fitted model is logged **once**, as an MLflow pyfunc model whose artifact ``model/`` is
the package's own model folder (:meth:`PneumoniaCNN.save`). ``mlflow.pyfunc.load_model``
and ``mlflow models serve`` use :class:`PneumoniaPyfunc`; ``PneumoniaCNN.load``,
:func:`pneumonia_cnn.analysis.load_model` and every CLI command that takes a MODEL read
the same files (a folder, or a ``runs:/``, ``models:/`` URI; see
:mod:`pneumonia_cnn.tracking`).

What the served model answers
-----------------------------
``POST /invocations`` takes images as

- encoded image files (PNG, JPEG, TIFF... any Pillow reads, 8 or 16 bit; DICOM files too,
  read as in :mod:`pneumonia_cnn.data`): a DataFrame column
  ``image`` holding the file bytes -- base64 in JSON, as MLflow documents for binary
  columns: ``{"dataframe_split": {"columns": ["image"], "data": [["iVBORw0..."]]}}`` -- or a
  list of base64 strings, ``{"inputs": {"image": ["iVBORw0...", ...]}}``;
- pixel arrays, values 0-255, shape ``(n, height, width)`` or ``(n, height, width, 1 or
  3)``: ``{"inputs": [[[0, 12, ...], ...], ...]}``.

and returns one row per image: ``probability`` (P(PNEUMONIA)) and ``label`` (PNEUMONIA when
the probability is at or above the model's operating point, ``threshold``). Input that is
not an image gets HTTP 400 with a message naming the image and the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..analysis import load_model, network_of
from ..data import decode_image
from ..estimator import PneumoniaCNN
from ..metrics import NEGATIVE, POSITIVE, decision_threshold
from ._names import model_params
from ._runs import quiet_run_links
from ._store import global_tracking_uri, resolve_tracking_uri

__all__ = ["MODEL_ARTIFACT", "PneumoniaPyfunc", "ServingInputError", "decode_request", "log_model",
           "save_pyfunc", "start_server", "stop_server",
           "wait_until_serving"]

#: Name of the package's model folder inside the logged pyfunc model (``artifacts/model``).
MODEL_ARTIFACT = "model"


class ServingInputError(ValueError):
    """A request that does not hold images; the message says which row and why."""


def _invalid(message: str):
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(message)  # -> HTTP 400


def decode_request(model_input, image_size: int) -> np.ndarray:
    """The images of a pyfunc / serving request as a uint8 array ``(n, size, size, 1)``.

    Parameters
    ----------
    model_input : pandas.DataFrame, dict, list or ndarray
        A DataFrame or dict with an ``image`` column of encoded image files (bytes or
        base64 strings), a list of them, or a pixel array (see the module docstring).
    image_size : int
        The model's input size; images are converted to grayscale and resized to it.

    Raises
    ------
    ServingInputError
        Naming the offending image and what is wrong with it.
    """
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            raise ServingInputError(
                f"expected a column 'image' (encoded image files, base64 in JSON), got "
                f"columns {list(model_input.columns)}; or send pixel arrays as "
                '{"inputs": [[[...]]]}')
        model_input = list(model_input["image"])
    elif isinstance(model_input, dict):
        if set(model_input) != {"image"}:
            raise ServingInputError(f"expected {{'image': [...]}}, got keys {sorted(model_input)}")
        model_input = list(np.atleast_1d(np.asarray(model_input["image"], dtype=object)))
    arr = None
    if isinstance(model_input, np.ndarray) and model_input.dtype.kind in "uifb":
        arr = model_input
    elif not isinstance(model_input, (list, tuple, np.ndarray)):
        raise ServingInputError(f"expected images, got {type(model_input).__name__}")
    if arr is None:
        items = list(model_input)
        if not items:
            raise ServingInputError("the request holds no images")
        if not all(isinstance(v, (bytes, bytearray, str)) for v in items):
            try:  # nested lists of numbers: a pixel array
                arr = np.asarray(items, dtype=np.float64)
            except (ValueError, TypeError):
                raise ServingInputError(
                    "expected a list of encoded images (bytes or base64 strings) or a pixel "
                    "array of one shape (n, height, width[, 1 or 3]); got a ragged or mixed "
                    "list") from None
    if arr is not None:
        return _pixels(arr, image_size)
    def one(i_item):
        i, item = i_item
        raw = item
        if isinstance(item, str):
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise ServingInputError(f"image {i}: not base64-encoded image bytes (encode "
                                        "the file with base64, as MLflow expects for binary "
                                        "data in JSON)") from None
        try:
            return decode_image(io.BytesIO(bytes(raw)), image_size)
        except Exception as exc:  # Pillow raises many types for a bad file
            raise ServingInputError(f"image {i}: not a readable image file ({len(raw)} bytes; "
                                    f"{type(exc).__name__}: {exc}); send PNG/JPEG/TIFF "
                                    "or DICOM bytes") from None

    if len(items) == 1:  # a single film: no pool to start
        return one((0, items[0]))[np.newaxis, ..., np.newaxis]
    # Pillow decodes without the GIL: a batch is decoded on every core, in order (the first
    # bad image, by position, is the one reported)
    with ThreadPoolExecutor(min(len(items), os.cpu_count() or 1)) as pool:
        out = list(pool.map(one, enumerate(items)))
    return np.stack(out)[..., np.newaxis]


def _pixels(arr: np.ndarray, image_size: int) -> np.ndarray:
    if arr.ndim == 2:  # one image
        arr = arr[np.newaxis]
    checker = PneumoniaCNN(image_size=image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # 0-1 scaled pixels: refuse here
            return checker.prepare_images(arr)
    except (ValueError, TypeError, UserWarning) as exc:
        raise ServingInputError(f"pixel array of shape {arr.shape}: {exc}") from None


def _predictions(model, X):
    import pandas as pd

    classes = [str(c) for c in model.classes_]
    proba = np.asarray(model.predict_proba(X))[:, classes.index(POSITIVE)]
    threshold = decision_threshold(model)
    return pd.DataFrame({"probability": proba.astype(float),
                         "label": np.where(proba >= threshold, POSITIVE, NEGATIVE)})


try:
    import mlflow.pyfunc as _pyfunc

    _Base = _pyfunc.PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    _Base = object


class PneumoniaPyfunc(_Base):
    """MLflow pyfunc model around a saved ``PneumoniaCNN`` (or site-calibrated) folder.

    ``predict`` takes images (see the module docstring) and returns a DataFrame with
    ``probability`` = P(PNEUMONIA) and ``label`` at the model's operating point.
    """

    #: predict takes images in several forms and checks them itself: no MLflow type-hint
    #: validation (and none of its warnings)
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.model = load_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input, params=None):
        net = getattr(self.model, "estimator", self.model)
        try:
            X = decode_request(model_input, int(net.input_size()))
        except ServingInputError as exc:
            raise _invalid(str(exc)) from None
        return _predictions(self.model, X)


def _example_png(size: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), 128, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def log_model(run, estimator, name: str) -> str:
    """Log a fitted estimator to ``run`` as one pyfunc model named ``name``; returns its
    MLflow model id (``models:/<id>`` loads it)."""
    import keras
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    net = network_of(estimator)
    output = Schema([ColSpec("double", "probability"), ColSpec("string", "label")])
    # no input schema: the model takes image files *and* pixel arrays and checks them itself
    signature = ModelSignature(inputs=None, outputs=output)
    example = pd.DataFrame({"image": [_example_png(int(net.input_size()))]})
    params = {k: str(v)[:500] for k, v in model_params(net).items()}
    mlflow_logger = logging.getLogger("mlflow")
    old_level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)  # MLflow's notes on type hints and examples
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = estimator.save(Path(tmp) / MODEL_ARTIFACT)
            with quiet_run_links(), global_tracking_uri(run.client.tracking_uri), \
                    mlflow.start_run(run_id=run.run_id, nested=mlflow.active_run() is not None):
                info = mlflow.pyfunc.log_model(
                    name=name, python_model=PneumoniaPyfunc(),
                    artifacts={MODEL_ARTIFACT: str(folder)}, signature=signature,
                    input_example=example, params=params,
                    tags={"pneumonia_cnn.version": __version__},
                    pip_requirements=[f"pneumonia-cnn=={__version__}",
                                      f"keras=={keras.__version__}",
                                      f"mlflow=={mlflow.__version__}"])
    finally:
        mlflow_logger.setLevel(old_level)
    # leaving MLflow's run context marked the run FINISHED: it is not done yet
    run.client.update_run(run.run_id, status="RUNNING")
    return info.model_id


def save_pyfunc(model_folder, dest) -> Path:
    """Write the MLflow pyfunc model of a saved model folder (any model :func:`load_model`
    reads: a network, an adapted or a calibrated one) to the new folder ``dest``, which
    ``mlflow models serve -m dest`` serves; returns ``dest``. No run or store is needed."""
    import keras
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    output = Schema([ColSpec("double", "probability"), ColSpec("string", "label")])
    mlflow_logger = logging.getLogger("mlflow")
    old_level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # its note on input examples: the model has none
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.save_model(
                path=str(dest), python_model=PneumoniaPyfunc(),
                artifacts={MODEL_ARTIFACT: str(model_folder)},
                signature=ModelSignature(inputs=None, outputs=output),
                pip_requirements=[f"pneumonia-cnn=={__version__}",
                                  f"keras=={keras.__version__}",
                                  f"mlflow=={mlflow.__version__}"])
    finally:
        mlflow_logger.setLevel(old_level)
    return Path(dest)


def start_server(model_uri: str, port: int, *, tracking_uri: str | None = None,
                 host: str = "127.0.0.1", log_file=None):
    """Start ``mlflow models serve -m MODEL_URI --env-manager local`` (the docs' command)
    as a child process in its own session; returns the :class:`subprocess.Popen`. Wait for
    ``GET /ping`` before sending requests; stop it with ``os.killpg(proc.pid, SIGTERM)``.

    Parameters
    ----------
    model_uri : str
        ``models:/NAME@champion`` and the like.
    port : int
    tracking_uri : str, default=None
        The store that resolves the URI (default ``$MLFLOW_TRACKING_URI`` / ``./mlflow.db``).
    host : str, default="127.0.0.1"
    log_file : path-like, default=None
        Where the server's output goes (default: discarded).
    """
    import os
    import shutil
    import subprocess
    import sys


    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else (shutil.which("mlflow") or "mlflow"), "models",
           "serve", "-m", model_uri, "--env-manager", "local", "--host", host,
           "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": resolve_tracking_uri(tracking_uri),
           # MLflow runs `uvicorn` by name: it must find this environment's
           "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                    os.environ.get("PATH", "")])}
    out = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    finally:
        if log_file:
            out.close()  # the child has its own handle


def stop_server(proc) -> None:
    """Stop a server started by :func:`start_server` (its whole process group): SIGTERM,
    then SIGKILL after 20 s."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_until_serving(url: str, proc, timeout: float) -> bool:
    """Poll ``url`` until it answers 200 (True), or until ``proc`` exits or ``timeout``
    seconds pass (False)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
