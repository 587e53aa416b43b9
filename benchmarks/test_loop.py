"""How long the test suite takes: in one process, on every core (the README's command), and
the quick loop.

    python benchmarks/test_loop.py [--data chest_xray/train] [--only full,quick,serial]

Runs, one after the other in this checkout, with the real-data tests pointed at ``--data``:

- ``serial``: ``python -m pytest -n 0`` (one process: the baseline);
- ``full``: ``python -m pytest`` (pytest-xdist on every core, at most 4: the README's test
  command and CI);
- ``quick``: ``python -m pytest -m "not slow"`` (without the tests that start real servers,
  clusters or processes);

and prints JSON: each command's wall time, pytest's summary line, the tests that failed (if
any), and the ratios to the serial run. About 20 minutes on two cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import data_dir, machine  # noqa: E402

RUNS = {"serial": ["-n", "0"], "full": [], "quick": ["-m", "not slow"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--only", default=",".join(RUNS))
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PNEUMONIA_CNN_DATA": str(data_dir(args.data))}
    out = {"command": "python benchmarks/test_loop.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine(),
        "date": time.strftime("%Y-%m-%d")}
    for name in args.only.split(","):
        cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
               *RUNS[name]]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        summary = [line for line in proc.stdout.splitlines() if " in " in line
                   and ("passed" in line or "failed" in line)]
        out[name] = {"args": " ".join(RUNS[name]) or "(none)", "exit_code": proc.returncode,
                     "wall_s": round(wall, 1), "summary": summary[-1] if summary else None,
                     "failed": [line for line in proc.stdout.splitlines()
                                if line.startswith("FAILED ")]}
    if "serial" in out:
        for name in RUNS:
            if name != "serial" and name in out:
                out[name]["over_serial"] = round(out[name]["wall_s"] / out["serial"]["wall_s"], 2)
    print(json.dumps(out, indent=1))
    return 0 if all(out[n]["exit_code"] == 0 for n in args.only.split(",")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
