"""The parser of every command and ``main``: dispatch, one-line errors, interrupts."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import warnings

from . import (
    _adapt,
    _calibrate,
    _close_runs,
    _evaluate,
    _explain,
    _predict,
    _register,
    _run,
    _search,
    _serve,
    _stress,
    _train,
)
from ._common import PROG, CLIError

__all__ = ["COMMANDS", "build_parser", "console_main", "main"]

#: Command name -> its module (``add_parser(sub)`` and ``run(args)``), in ``--help`` order.
COMMANDS = {"train": _train, "evaluate": _evaluate, "calibrate": _calibrate, "adapt": _adapt,
            "stress": _stress, "explain": _explain, "predict": _predict, "search": _search,
            "register": _register, "serve": _serve, "close-runs": _close_runs, "run": _run}


def build_parser() -> argparse.ArgumentParser:
    """The ``pneumonia-cnn`` argument parser."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train, evaluate and use CNNs that tell pneumonia from normal chest "
                    "X-rays. Data folders hold NORMAL/ and PNEUMONIA/ sub-folders "
                    "(e.g. Kaggle's chest_xray/train).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


#: Errors shown as one line (what is wrong and what to do), by module and class name: the
#: modules are not imported for this (TensorFlow and MLflow would load before every error);
#: an error of a module that was never imported cannot have been raised.
USER_ERRORS = (("pneumonia_cnn.data._images", "DataError"),
               ("pneumonia_cnn.tracking._store", "TrackingError"),
               ("pneumonia_cnn.cluster._cluster", "ClusterError"),
               ("mlflow.exceptions", "MlflowException"))


def _user_error(exc: BaseException) -> bool:
    if isinstance(exc, (CLIError, ValueError, OSError)):
        return True
    return any(isinstance(exc, getattr(sys.modules[m], name)) for m, name in USER_ERRORS
               if m in sys.modules)


def _printable(obj) -> str:
    """A message that any output takes: a file name that is not UTF-8 in it (lone
    surrogates) shows its bad bytes as U+FFFD instead of failing the print."""
    from ..data import display_path

    return display_path(str(obj))


def main(argv=None) -> int:
    """Entry point of ``pneumonia-cnn``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import signal

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if "Add type hints to the `predict` method" in str(message):
            return  # MLflow's advice to library authors; warning filters do not stop it
        print(f"{PROG}: warning: {_printable(message)}", file=sys.stderr, flush=True)

    def terminate(signum, frame):  # SIGTERM ends a fit like Ctrl-C: nothing done is lost
        raise KeyboardInterrupt

    old_show, old_term = warnings.showwarning, None
    warnings.showwarning = show_warning
    if threading.current_thread() is threading.main_thread():  # signals live there only
        old_term = signal.signal(signal.SIGTERM, terminate)
    start = time.perf_counter()
    try:
        return COMMANDS[args.command].run(args)
    except Exception as exc:
        if not _user_error(exc):
            raise
        msg = _printable(exc).strip() or type(exc).__name__
        print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted after {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = old_show
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def console_main() -> None:
    """``pneumonia-cnn`` console script: ``main`` with TensorFlow's native noise filtered."""
    from ..utils import filter_native_stderr

    finish = filter_native_stderr()
    try:
        code = main()
    finally:
        finish()
    sys.exit(code)
