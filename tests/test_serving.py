"""Serving: the pyfunc model's input decoding, and a real `mlflow models serve` process."""

import base64
import io
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, free_port, stop_process, wait_for_http
from PIL import Image

from pneumonia_cnn import PneumoniaCNN, load_images
from pneumonia_cnn.tracking import (
    ServingInputError,
    decode_request,
    register,
    start_server,
)


def _png(a: np.ndarray, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_request_reads_files_base64_and_pixel_arrays():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    from_bytes = decode_request(pd.DataFrame({"image": [_png(img)]}), 32)
    from_b64 = decode_request({"image": [base64.b64encode(_png(img)).decode()]}, 32)
    assert from_bytes.shape == (1, 32, 32, 1) and from_bytes.dtype == np.uint8
    np.testing.assert_array_equal(from_bytes, from_b64)
    wide = (img.astype(np.uint16) * 257)  # 16-bit files are scaled to 8 bits
    np.testing.assert_array_equal(decode_request([_png(wide)], 32), from_bytes)
    pixels = decode_request(rng.integers(0, 256, (3, 32, 32)).astype(float), 32)
    assert pixels.shape == (3, 32, 32, 1)
    rgb = decode_request(rng.integers(0, 256, (2, 64, 64, 3)).tolist(), 32)
    assert rgb.shape == (2, 32, 32, 1)


@pytest.mark.parametrize("bad, match", [
    (pd.DataFrame({"img": ["x"]}), "expected a column 'image'"),
    ({"image": ["***"]}, "image 0: not base64-encoded"),
    ({"image": [base64.b64encode(b"not a picture").decode()]}, "image 0: not a readable image"),
    (np.full((2, 8, 8), 300.0), "pixel values 0-255"),
    (np.zeros((2, 8, 8, 2)), "shape"),
    ([[1, 2], [3]], "ragged"),
    ([], "no images"),
])
def test_decode_request_names_what_is_wrong(bad, match):
    with pytest.raises(ServingInputError, match=match):
        decode_request(bad, 32)


def _post(url: str, payload: dict):
    req = urllib.request.Request(url + "/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def served(mlflow_server, synthetic_data, tmp_path_factory):
    """The champion of a registry on a real tracking server, served by a real
    `mlflow models serve` process on a free port (stopped at the end)."""
    url, _ = mlflow_server
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": url,
                          "validation_fraction": 0.3, "experiment": "serving-test"})
    clf.fit(synthetic_data)
    reg = register(f"models:/{clf.mlflow_model_id_}", "served-cnn", tracking_uri=url)
    assert reg.champion == reg.version
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = start_server("models:/served-cnn@champion", port, tracking_uri=url, log_file=log)
    serve_url = f"http://127.0.0.1:{port}"
    wait_for_http(serve_url + "/ping", proc, log, "mlflow models serve", timeout=180)
    yield serve_url, clf
    stop_process(proc)


def test_served_model_answers_image_files_like_predict(served, synthetic_data):
    url, clf = served
    paths = list(synthetic_data.paths[:6])
    files = [base64.b64encode(open(p, "rb").read()).decode() for p in paths]
    status, body = _post(url, {"dataframe_split": {"columns": ["image"],
                                                   "data": [[f] for f in files]}})
    assert status == 200, body
    rows = body["predictions"]
    expected = clf.predict_proba(load_images(paths, clf.input_size()).X)[:, 1]
    np.testing.assert_allclose([r["probability"] for r in rows], expected, rtol=1e-5)
    assert [r["label"] for r in rows] == list(clf.predict(paths))


def test_served_model_answers_dicom_files_like_predict(served, synthetic_data, tmp_path):
    pytest.importorskip("pydicom")
    from test_dicom import make_dicom

    url, clf = served
    pixels = [synthetic_data.X[i, :, :, 0].astype(np.uint16) * 16 for i in range(3)]  # 12 bit
    paths = [make_dicom(tmp_path / f"film{i}.dcm", p, bits=12) for i, p in enumerate(pixels)]
    files = [base64.b64encode(open(p, "rb").read()).decode() for p in paths]
    status, body = _post(url, {"inputs": {"image": files}})
    assert status == 200, body
    expected = clf.predict_proba(load_images(paths, clf.input_size()).X)[:, 1]
    np.testing.assert_allclose([r["probability"] for r in body["predictions"]], expected,
                               rtol=1e-5)


def test_served_model_answers_pixel_arrays(served, synthetic_data):
    url, clf = served
    X = synthetic_data.X[:4]
    status, body = _post(url, {"inputs": X[..., 0].tolist()})
    assert status == 200, body
    np.testing.assert_allclose([r["probability"] for r in body["predictions"]],
                               clf.predict_proba(X)[:, 1], rtol=1e-5)


@pytest.mark.parametrize("payload, match", [
    ({"dataframe_split": {"columns": ["image"],
                          "data": [[base64.b64encode(b"%PDF-1.4 not an image").decode()]]}},
     "image 0: not a readable image file"),
    ({"inputs": np.zeros((2, 8, 8, 2)).tolist()}, "shape"),
])
def test_bad_input_gets_http_400_with_a_clear_message(served, payload, match):
    url, _ = served
    status, body = _post(url, payload)
    assert status == 400
    assert match in body["message"] and "Traceback" not in body["message"]


def test_a_batch_is_decoded_in_order_and_its_first_bad_image_is_named(synthetic_data):
    """Requests are decoded on every core (issue 21); the rows keep the request's order and
    an error still names the first bad image by its position."""
    paths = list(synthetic_data.paths[:5])
    files = [base64.b64encode(open(p, "rb").read()).decode() for p in paths]
    X = decode_request({"image": files}, 32)
    np.testing.assert_array_equal(X, load_images(paths, 32).X)
    bad = files[:2] + [base64.b64encode(b"not an image").decode()] + files[3:]
    bad[4] = "%%%"
    with pytest.raises(ServingInputError, match="^image 2: not a readable image file"):
        decode_request({"image": bad}, 32)


@pytest.mark.slow
def test_serve_command_serves_a_model_folder_and_stops_on_ctrl_c(fitted_tiny, synthetic_dir,
                                                                tmp_path):
    """User's path issue, item 1: the README's `mlflow models serve` failed without an
    activated environment. `pneumonia-cnn serve MODEL` starts the server from the package's
    own environment, prints the URL and a curl example, answers, and stops on Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    model = fitted_tiny.save(tmp_path / "model")
    port = free_port()
    exe = Path(sys.executable).with_name("pneumonia-cnn")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"  # not activated: the package finds its own server
    proc = subprocess.Popen([str(exe), "serve", str(model), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 240
        while "Serving" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "serve exited early"
        url = f"http://127.0.0.1:{port}/invocations"
        assert url in line
        assert "curl -s " + url in proc.stdout.readline()
        film = sorted((synthetic_dir / "PNEUMONIA").iterdir())[0]
        body = json.dumps({"inputs": {"image": [base64.b64encode(film.read_bytes())
                                                 .decode()]}}).encode()
        request = urllib.request.Request(url, data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())["predictions"][0]
        np.testing.assert_allclose(answer["probability"],
                                   fitted_tiny.predict_proba([str(film)])[0, 1], rtol=1e-5)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Model server stopped." in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
