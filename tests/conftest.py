"""Shared fixtures: fixed seeds, a private image cache, tiny synthetic data, the real data."""

import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Environment variable naming the real ``chest_xray/train`` folder (set by .ci/run).
REAL_DATA_ENV = "PNEUMONIA_CNN_DATA"

#: Hyperparameters of a tiny, fast network for logic tests: the from-scratch network, one of
#: it, no augmentation or normalisation, a fixed threshold (the defaults' backbone and CLAHE
#: have tests of their own).
TINY = dict(backbone=None, image_size=32, filters=(4, 8), dense_units=8, convs_per_block=1,
            global_pooling=False, epochs=2, batch_size=16,
            augmentation=None, intensity_norm=None, n_networks=1, threshold=0.5,
            validation_fraction=0.0, random_state=0, tracking=False)


@pytest.fixture(autouse=True)
def fixed_seeds():
    """Every test starts from the same random state."""
    import keras

    random.seed(0)
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Decoded-image cache in a temporary folder, not in the user's home."""
    old = os.environ.get("PNEUMONIA_CNN_CACHE_DIR")
    os.environ["PNEUMONIA_CNN_CACHE_DIR"] = str(tmp_path_factory.mktemp("image_cache"))
    yield
    if old is None:
        os.environ.pop("PNEUMONIA_CNN_CACHE_DIR", None)
    else:
        os.environ["PNEUMONIA_CNN_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def private_mlflow_store(tmp_path_factory):
    """MLflow runs of the tests go to a temporary sqlite store, never to ./mlflow.db."""
    folder = tmp_path_factory.mktemp("mlflow")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    yield folder
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small synthetic data folder (NORMAL/, PNEUMONIA/) with Kaggle-style names."""
    from pneumonia_cnn.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "train",
                                  n_normal=24, n_pneumonia=36, size=48, random_state=1)


@pytest.fixture(scope="session")
def synthetic_data(synthetic_dir):
    from pneumonia_cnn import load_image_folder

    return load_image_folder(synthetic_dir, 32, cache=False)


@pytest.fixture(scope="session")
def fitted_tiny(synthetic_data):
    """A tiny PneumoniaCNN fitted on the synthetic data (shared; do not modify)."""
    from pneumonia_cnn import PneumoniaCNN

    return PneumoniaCNN(**TINY).fit(synthetic_data.X, synthetic_data.y)


@pytest.fixture(scope="session")
def real_train_dir() -> Path:
    """The real chest_xray/train folder, or skip."""
    path = os.environ.get(REAL_DATA_ENV)
    if not path or not Path(path).is_dir():
        pytest.skip(f"real data not available (set {REAL_DATA_ENV} to chest_xray/train)")
    return Path(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (tracking, artifacts and model registry) on a free local port,
    stopped at the end of the session: yields ``(url, folder)``."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow"), "server",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
           "--artifacts-destination", str(folder / "artifacts")]
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health", proc, folder / "server.log", "mlflow server")
    yield url, folder
    stop_process(proc)  # the server and its uvicorn workers
    log.close()


def wait_for_http(url: str, proc, log_file, what: str, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200, or fail with the process's log."""
    from pneumonia_cnn.tracking import wait_until_serving

    if not wait_until_serving(url, proc, timeout):
        stop_process(proc)
        pytest.fail(f"{what} did not start:\n" + Path(log_file).read_text()[-5000:])


def stop_process(proc) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    from pneumonia_cnn.tracking import stop_server

    stop_server(proc)


#: Fixtures that start a real component (an `mlflow server`, `mlflow models serve`, a Dask
#: LocalCluster): every test using one is marked ``slow``. The quick loop
#: (``pytest -m "not slow"``) leaves them out; CI and the README's command run them all.
REAL_COMPONENTS = {"mlflow_server", "served", "three_fits", "client"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REAL_COMPONENTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most 4 (each imports TensorFlow: about 1 GB)."""
    return max(1, min(4, os.cpu_count() or 1))
