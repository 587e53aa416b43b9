"""The README's path walked as a user would, on a small real subset, checking what every step
prints and writes: ``run`` -> ``register`` (the model folder) -> ``adapt --evaluate-fraction`` ->
``calibrate --evaluate-fraction`` (on another site's films) -> ``register`` the calibrated model ->
``evaluate models:/...@champion`` -> ``pneumonia-cnn serve`` answering a JPEG.

Real data: skipped without ``PNEUMONIA_CNN_DATA`` (CI sets it)."""

import base64
import json
import re
import shutil
import urllib.request

import numpy as np
import pytest
from conftest import free_port, stop_process

from pneumonia_cnn.cli import main

#: real components (servers, processes): in CI and the full run, not in the quick loop
pytestmark = pytest.mark.slow

SMALL = ["--backbone", "none", "--image-size", "32", "--epochs", "4", "--n-networks", "1", "--quiet",
         "--augmentation", "none"]


def _subset(src, dst, patients, per_class):
    """Copy the films of the patients ranked in ``patients`` (a slice of the sorted patient
    ids of each class) into ``dst/NORMAL`` and ``dst/PNEUMONIA``, at most ``per_class``."""
    from pneumonia_cnn.data import patient_id

    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((src / cls).glob("*.jpeg"))
        ids = sorted({patient_id(f) for f in files})[patients]
        keep = [f for f in files if patient_id(f) in set(ids)][:per_class]
        (dst / cls).mkdir(parents=True)
        for f in keep:
            shutil.copy(f, dst / cls / f.name)
    return dst


def test_the_readme_path_from_run_to_a_served_site_model(real_train_dir, tmp_path, capsys,
                                                         monkeypatch):
    from pneumonia_cnn.analysis import load_model

    train = _subset(real_train_dir, tmp_path / "train", slice(0, 200), 70)
    site = _subset(real_train_dir, tmp_path / "site", slice(-90, None), 60)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)

    # 1. run: trains, evaluates on held-out patients, saves, says where and how to register
    assert main(["run", str(train), "--out", "out", "--random-state", "0", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "Evaluation on" in out and (tmp_path / "out" / "model" / "model.keras").is_file()
    assert (tmp_path / "out" / "evaluation" / "metrics.json").is_file()
    run_id = re.search(r"MLflow:  run ([0-9a-f]{32}); logged model models:/(m-[0-9a-f]+)", out)
    assert run_id, out
    assert "pneumonia-cnn register out/model NAME" in out

    # 2. register the folder `run` wrote: the first version is the champion
    assert main(["register", "out/model", "pcnn"]) == 0
    assert "champion -> v1" in capsys.readouterr().out

    # 3. as the README: adapt the champion to the site (half of its patients, labels
    # unused), then calibrate that on the same half, each evaluated on the other half
    assert main(["adapt", "models:/pcnn@champion", str(site), "--model-out", "adapted",
                 "--evaluate-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Adapted to \d+ unlabelled films", out) and "after :" in out
    assert main(["calibrate", "adapted", str(site), "--model-out", "cal",
                 "--evaluate-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Split \d+ films of \d+ patients by patient", out)
    assert re.search(r"Evaluated on \d+ films the operating point never saw", out)
    assert "after :" in out and "before:" in out
    assert re.search(r"MLflow run [0-9a-f]{32}, logged model models:/m-", out)

    # 4. register the calibrated model: ranked on the site's held-out films, and says so
    assert main(["register", "cal", "pcnn"]) == 0
    out = capsys.readouterr().out
    assert "version 2" in out and "site (evaluation part)" in out.replace(str(site), "site")
    import mlflow

    version = mlflow.MlflowClient(uri).get_model_version("pcnn", "2")
    assert version.tags["kind"] == "calibration"
    assert version.tags["eval_on"].endswith("(evaluation part)")
    assert version.tags["calibration_data"].endswith("(calibration part)")
    # its lineage, step by step (user's path issue, item 3)
    steps = version.tags["lineage"].split(" -> ")
    assert [s.split()[0] for s in steps] == ["fit", "adaptation", "calibration"]
    assert version.tags["adaptation_data"].endswith("(adaptation part)")

    # 5. evaluate whatever the champion is now, by its URI
    assert main(["evaluate", "models:/pcnn@champion", str(site), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n_images"] == 120 and 0 <= metrics["roc_auc"] <= 1

    # 6. serve the champion as the README does (`pneumonia-cnn serve`, no activated
    # environment) and send it a JPEG of the site; Ctrl-C stops it
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
           "PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pneumonia-cnn")), "serve",
                             "models:/pcnn@champion", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        line = ""
        while "Serving" not in line:
            line = proc.stdout.readline()
            assert line, "serve exited before serving"
        film = sorted((site / "PNEUMONIA").iterdir())[0]
        body = json.dumps({"inputs": {"image": [base64.b64encode(film.read_bytes())
                                                 .decode()]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())["predictions"][0]
        os.killpg(proc.pid, signal.SIGINT)
        assert "Model server stopped." in proc.communicate(timeout=60)[0]
    finally:
        stop_process(proc)
    champion = load_model("models:/pcnn@champion", tracking_uri=uri)
    expected = champion.predict_proba([str(film)])[0, 1]
    assert answer["label"] in ("NORMAL", "PNEUMONIA")
    np.testing.assert_allclose(answer["probability"], expected, rtol=1e-5)
