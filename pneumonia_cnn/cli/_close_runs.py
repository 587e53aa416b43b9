"""``pneumonia-cnn close-runs``."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add the ``close-runs`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "close-runs", help="mark runs left RUNNING by a killed process as KILLED",
        description="A process killed outright (SIGKILL, a power cut) cannot end its MLflow "
                    "runs: they stay RUNNING. This marks as KILLED every RUNNING run that was "
                    "started on this machine by a process that no longer exists, and, with "
                    "--older-than, runs from elsewhere that started more than HOURS ago. "
                    "Runs of live processes are left alone.")
    p.add_argument("--older-than", type=positive_hours, metavar="HOURS",
                   help="also close RUNNING runs of other machines older than this")
    p.add_argument("--experiment", default="pneumonia-cnn", help="[pneumonia-cnn]")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")


def positive_hours(text: str) -> float:
    """``--older-than``: a number of hours >= 0 (checked by argparse, before MLflow loads)."""
    import argparse
    import math

    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not hours >= 0 or math.isinf(hours):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours >= 0, e.g. 24")
    return hours


def run(args) -> int:
    from ..tracking import close_stale_runs

    closed = close_stale_runs(args.tracking_uri, args.experiment, args.older_than)
    for run_id, name in closed:
        print(f"closed {run_id}  {name}")
    print(f"{len(closed)} run(s) marked KILLED")
    return 0
