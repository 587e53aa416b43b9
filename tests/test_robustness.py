"""Messy folders and files, interruptions, unreachable tracking servers."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.cli import main
from pneumonia_cnn.data import (
    DataError,
    UnreadableImageWarning,
    decode_image,
    load_image_folder,
)
from pneumonia_cnn.tracking import TrackingError

GRAY = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))


def _tree(root: Path, n=3):
    for i in range(n):
        (root / "NORMAL").mkdir(parents=True, exist_ok=True)
        (root / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
        Image.fromarray(GRAY).save(root / "NORMAL" / f"IM-{i:04d}-0001.png")
        Image.fromarray(255 - GRAY).save(root / "PNEUMONIA" / f"person{i}_virus_{i}.png")
    return root


# ---------------------------------------------------------------------------------------------
# Odd but valid files decode
# ---------------------------------------------------------------------------------------------
def test_cmyk_jpeg_and_palette_png_and_unicode_names(tmp_path):
    cmyk = tmp_path / "ünïcødé name with spaces.jpg"
    Image.fromarray(np.stack([GRAY] * 3, -1)).convert("CMYK").save(cmyk)
    pal = tmp_path / "palette.png"
    Image.fromarray(GRAY).convert("P").save(pal)
    for path in (cmyk, pal):
        arr = decode_image(path, 16)
        assert arr.shape == (16, 16) and arr.std() > 10


def test_symlink_loop_does_not_hang(tmp_path):
    root = _tree(tmp_path / "data")
    os.symlink(root / "NORMAL", root / "NORMAL" / "loop")
    t = time.monotonic()
    d = load_image_folder(root, 16, cache=False)
    assert len(d) == 6 and time.monotonic() - t < 10


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    root = _tree(tmp_path / "data")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(root / "NORMAL" / "IM-9999-0001.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300x300 > 2 x limit
    with pytest.warns(UnreadableImageWarning, match="DecompressionBombError"):
        d = load_image_folder(root, 16, cache=False)
    assert len(d) == 6


@pytest.mark.parametrize("content, name", [
    (b"", "IM-0100-0001.jpeg"),                           # zero bytes
    (None, "IM-0101-0001.jpeg"),                          # truncated JPEG (filled below)
    (b"hello, I am text", "IM-0102-0001.jpeg"),           # text named .jpeg
    (bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)), "r.png"),
])
def test_broken_files_skipped_or_strict_error(tmp_path, content, name):
    root = _tree(tmp_path / "data")
    if content is None:
        full = tmp_path / "full.jpeg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)
                        ).save(full, quality=95)
        content = full.read_bytes()[:600]
    (root / "NORMAL" / name).write_bytes(content)
    with pytest.warns(UnreadableImageWarning, match=name):
        d = load_image_folder(root, 16, cache=False)
    assert len(d) == 6
    with pytest.raises(DataError, match=name):
        load_image_folder(root, 16, cache=False, strict=True)


def test_only_one_class_cannot_train(tmp_path):
    root = _tree(tmp_path / "data")
    for f in (root / "PNEUMONIA").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="needs exactly 2 classes.*NORMAL/ and PNEUMONIA/"):
        PneumoniaCNN(**TINY).fit(root)


# ---------------------------------------------------------------------------------------------
# Fuzzing the loader: it loads or reports, never crashes or hangs
# ---------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(st.sampled_from(["NORMAL", "PNEUMONIA", "normal/sub", "other",
                                                 "__MACOSX", "."]),
                                st.sampled_from([".jpeg", ".png", ".jpg", ".txt", ""]),
                                st.binary(max_size=300)), max_size=8),
       valid=st.booleans())
def test_fuzz_loader(tmp_path_factory, files, valid):
    root = tmp_path_factory.mktemp("fuzz")
    for i, (folder, ext, content) in enumerate(files):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"f{i}{ext}").write_bytes(content)
    if valid:
        (root / "PNEUMONIA").mkdir(exist_ok=True)
        Image.fromarray(GRAY).save(root / "PNEUMONIA" / "person1_virus_1.png")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = load_image_folder(root, 16, cache=False)
        except DataError as exc:
            assert str(exc)
        else:
            assert d.X.shape[1:] == (16, 16, 1) and len(d.X) == len(d.y) == len(d.paths)
            assert len(d) >= 1


# ---------------------------------------------------------------------------------------------
# Interruptions
# ---------------------------------------------------------------------------------------------
class _InterruptAt(__import__("keras").callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_best_weights_and_logs_checkpoint(synthetic_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'i.db'}"
    clf = PneumoniaCNN(**{**TINY, "epochs": 10, "tracking": True, "tracking_uri": uri,
                          "validation_fraction": 0.25, "callbacks": [_InterruptAt(3)]})
    with pytest.raises(KeyboardInterrupt):
        clf.fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    assert clf.interrupted_ and len(clf.history_["loss"]) == 3
    assert clf.best_epoch_ == int(np.argmax(clf.history_["val_auc"])) + 1
    assert clf.predict(synthetic_data.X[:2]).shape == (2,)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(clf.mlflow_run_id_)
    assert run.info.status == "KILLED"
    files = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert "checkpoint/model.keras" in files
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3


def test_ctrl_c_with_a_failing_store_still_keeps_the_model(synthetic_data, tmp_path,
                                                          monkeypatch):
    from mlflow.exceptions import MlflowException

    from pneumonia_cnn.tracking import TrackedRun

    def broken(self, *args, **kwargs):
        raise MlflowException("database is locked")

    clf = PneumoniaCNN(**{**TINY, "epochs": 10, "tracking": True,
                          "tracking_uri": f"sqlite:///{tmp_path / 'b.db'}",
                          "validation_fraction": 0.25, "callbacks": [_InterruptAt(2)]})
    monkeypatch.setattr(TrackedRun, "log_artifacts", broken)
    monkeypatch.setattr(TrackedRun, "end", broken)
    with pytest.warns(UserWarning, match="could not log the interrupted fit's checkpoint"):
        with pytest.raises(KeyboardInterrupt):  # not the store's error
            clf.fit(synthetic_data.X, synthetic_data.y, groups=synthetic_data.groups)
    assert clf.interrupted_ and len(clf.history_["loss"]) == 2
    assert clf.predict(synthetic_data.X[:2]).shape == (2,)


def test_signal_in_the_middle_of_a_store_write_is_held_until_it_is_done(tmp_path,
                                                                         monkeypatch):
    # Regression: a signal inside a SQLite metrics write lost the write, and in CI
    # (2026-11-25) the transaction it left open kept the database locked, so the salvage
    # writes of the interrupted fit failed with "database is locked".
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from pneumonia_cnn.tracking import TrackedRun

    uri = f"sqlite:///{tmp_path / 's.db'}"
    run = TrackedRun.start(tracking_uri=uri, experiment="signals")
    original = SqlAlchemyStore._update_latest_metrics_if_necessary
    inside = []

    def interrupted_mid_transaction(self, *args, **kwargs):
        inside.append(True)
        signal.raise_signal(signal.SIGINT)  # Python runs the handler at the next bytecode
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "_update_latest_metrics_if_necessary",
                        interrupted_mid_transaction)
    with pytest.raises(KeyboardInterrupt):
        run.log_metrics({"loss": 0.5}, step=1)
    assert inside
    monkeypatch.setattr(SqlAlchemyStore, "_update_latest_metrics_if_necessary", original)
    t = time.monotonic()
    run.log_metrics({"fit_time_s": 1.0})  # the database is not left locked
    run.end("KILLED")
    assert time.monotonic() - t < 5
    client = mlflow.MlflowClient(uri)
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [0.5]
    assert client.get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_signal_during_a_write_stops_at_once():
    from pneumonia_cnn.utils import deferred_interrupts

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            reached.append("held")
            signal.raise_signal(signal.SIGINT)
            reached.append("not reached")
    assert reached == ["held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_sigterm_during_cli_train_saves_model_and_exits_cleanly(synthetic_dir, tmp_path):
    model = tmp_path / "model"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 't.db'}",
           }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pneumonia_cnn", "train", str(synthetic_dir), "--model-out",
         str(model), "--backbone", "none", "--image-size", "32", "--filters", "4,8", "--epochs", "500",
         "--patience", "none", "--validation-fraction", "0.25", "--batch-size", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while sum("Epoch" in x for x in lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert (model / "model.keras").is_file()
    loaded = PneumoniaCNN.load(model)
    assert loaded.best_epoch_ >= 1


# ---------------------------------------------------------------------------------------------
# Tracking server trouble
# ---------------------------------------------------------------------------------------------
def _dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_server_fails_fast_before_training(synthetic_data):
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": _dead_url()})
    t = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server"):
        clf.fit(synthetic_data.X, synthetic_data.y)
    assert time.monotonic() - t < 15
    assert not hasattr(clf, "model_")


def test_unreachable_server_cli_message(synthetic_dir, tmp_path, capsys):
    code = main(["train", str(synthetic_dir), "--model-out", str(tmp_path / "m"),
                 "--tracking-uri", _dead_url(), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--no-tracking" in err and "Traceback" not in err


@pytest.mark.slow
def test_server_dying_mid_fit_keeps_training(synthetic_data, tmp_path):
    from conftest import free_port

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backend-store-uri",
         f"sqlite:///{tmp_path / 's.db'}", "--artifacts-destination", str(tmp_path / "a")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def kill_server():  # the whole process group: mlflow server starts uvicorn workers
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()

    try:
        import urllib.request
        for _ in range(180):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)

        class KillServer(__import__("keras").callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    kill_server()

        clf = PneumoniaCNN(**{**TINY, "epochs": 3, "tracking": True, "tracking_uri": url,
                              "callbacks": [KillServer()]})
        with pytest.warns(UserWarning, match="MLflow logging failed"):
            clf.fit(synthetic_data.X, synthetic_data.y)
        assert len(clf.history_["loss"]) == 3
        clf.save(tmp_path / "model")
        assert (tmp_path / "model" / "model.keras").is_file()
    finally:
        kill_server()


@pytest.mark.slow
def test_two_searches_share_a_local_store(synthetic_dir, tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from conftest import TINY\n"
        "from pneumonia_cnn import PneumoniaCNN\n"
        "from pneumonia_cnn.search import search\n"
        "r = search(sys.argv[1], {'dropout': [0.0, 0.2]}, cv=2, holdout=0, verbose=0,\n"
        "           estimator=PneumoniaCNN(**{**TINY, 'epochs': 1}), name=sys.argv[2])\n"
        "print(len(r.cv_results))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'shared.db'}"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(synthetic_dir), name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=Path(__file__).parents[1])
             for name in ("one", "two")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == "2"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("pneumonia-cnn")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2 * (1 + 2 + 1)  # parent + 2 candidates + refit, each
    assert all(r.info.status == "FINISHED" for r in runs)


def test_ctrl_c_while_the_graph_is_traced_stops_the_fit_after_the_first_batch(
        synthetic_data, tmp_path):
    """An interrupt during the first batch (graph tracing) is held until that batch is done,
    then stops the fit (it was rarely swallowed, or surfaced as a SystemError)."""
    import signal

    import keras
    import mlflow

    seen = {}

    class InterruptDuringFirstBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                signal.raise_signal(signal.SIGINT)
                seen["returned"] = True  # the interrupt was held, not raised here

    uri = f"sqlite:///{tmp_path / 'g.db'}"
    clf = PneumoniaCNN(**{**TINY, "tracking": True, "tracking_uri": uri,
                          "callbacks": [InterruptDuringFirstBatch()]})
    with pytest.raises(KeyboardInterrupt):
        clf.fit(synthetic_data.X, synthetic_data.y)
    assert seen.get("returned") and clf.interrupted_
    assert mlflow.MlflowClient(uri).get_run(clf.mlflow_run_id_).info.status == "KILLED"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


@pytest.mark.slow
def test_sigterm_at_any_moment_of_an_evaluation_leaves_no_run_running(fitted_tiny, tmp_path,
                                                                      synthetic_dir):
    """SIGTERM sent to `pneumonia-cnn evaluate` at spread-out moments (process start, data,
    run creation, logging): every run it created ends FINISHED or KILLED, never RUNNING."""
    model = fitted_tiny.save(tmp_path / "model")
    uri = f"sqlite:///{tmp_path / 'e.db'}"
    exe = Path(sys.executable).with_name("pneumonia-cnn")
    cmd = [str(exe), "evaluate", str(model), str(synthetic_dir), "--tracking",
           "--tracking-uri", uri, "--out", str(tmp_path / "out")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # how long a whole one takes
    total = time.perf_counter() - start
    for fraction in (0.55, 0.7, 0.8, 0.9, 0.97):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(total * fraction)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("pneumonia-cnn").experiment_id])
    assert runs and {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
