"""How long the command line takes to answer --help and to refuse bad input (target: under 1 s).

    python benchmarks/cli_startup.py [--repeats 5]

Times, in the same process and machine, the baseline ``python -c pass`` and
``pneumonia-cnn --help``, ``--version`` and ``train --help``, and five refusals (a missing
model, a missing data folder behind a model folder, a missing training folder, a wrong
setting of ``train`` given a real data folder -- checked by scikit-learn's parameter
validation, without TensorFlow --, a missing model folder to register: each must exit 2
with a one-line error), each a fresh process, median of ``--repeats``; and, for scale,
``python -c "import tensorflow"`` and ``python -c "import sklearn.base"``. Prints JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402


def median_time(cmd, repeats, code=0):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode != code:
            raise SystemExit(f"{cmd} exited {done.returncode}, expected {code}")
    return round(statistics.median(times), 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    exe = os.path.join(os.path.dirname(sys.executable), "pneumonia-cnn")
    out = {"command": "python benchmarks/cli_startup.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "date": time.strftime("%Y-%m-%d"), "repeats": args.repeats}
    out["python_pass_s"] = median_time([sys.executable, "-c", "pass"], args.repeats)
    for label, extra in (("help_s", ["--help"]), ("version_s", ["--version"]),
                         ("train_help_s", ["train", "--help"])):
        out[label] = median_time([exe, *extra], args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp) / "model"  # passes the model check; the data check then refuses
        fake.mkdir()
        (fake / "model.keras").write_bytes(b"")
        (fake / "pneumonia_cnn.json").write_text("{}")
        data = Path(tmp) / "data"  # a valid training folder: the setting is what is refused
        for label in ("NORMAL", "PNEUMONIA"):
            (data / label).mkdir(parents=True)
            (data / label / "a.png").write_bytes(b"")
        for label, extra in (
                ("error_missing_model_s", ["evaluate", f"{tmp}/none", tmp]),
                ("error_missing_data_s", ["evaluate", str(fake), f"{tmp}/none"]),
                ("error_missing_train_data_s", ["train", f"{tmp}/none", "--model-out",
                                                f"{tmp}/m"]),
                ("error_bad_setting_s", ["train", str(data), "--model-out", f"{tmp}/m",
                                         "--epochs", "0"]),
                ("error_register_missing_folder_s", ["register", f"{tmp}/none", "x"])):
            out[label] = median_time([exe, *extra], args.repeats, code=2)
    out["import_tensorflow_s"] = median_time([sys.executable, "-c", "import tensorflow"], 1)
    out["import_sklearn_s"] = median_time([sys.executable, "-c", "import sklearn.base"], 1)
    out["train_help_over_python"] = round(out["train_help_s"] / out["python_pass_s"], 1)
    out["slowest_error_without_tensorflow_over_python"] = round(max(
        v for k, v in out.items() if k.startswith("error_"))
        / out["python_pass_s"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
