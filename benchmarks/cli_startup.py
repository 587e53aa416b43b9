"""How long the command line takes to answer --help (target: under 1 s).

    python benchmarks/cli_startup.py [--repeats 5]

Times, in the same process and machine, the baseline ``python -c pass`` and
``pneumonia-cnn --help``, ``--version`` and ``train --help`` (each a fresh process; median of
``--repeats``), and, for scale, ``python -c "import tensorflow"``. Prints JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402


def median_time(cmd, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
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
    out["import_tensorflow_s"] = median_time([sys.executable, "-c", "import tensorflow"], 1)
    out["train_help_over_python"] = round(out["train_help_s"] / out["python_pass_s"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
