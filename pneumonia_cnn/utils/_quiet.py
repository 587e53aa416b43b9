"""TensorFlow's native start-up lines, filtered out of stderr.

TensorFlow 2.21 writes a few lines straight to the process's file descriptor 2 before its
logging is configured (``oneDNN custom operations are on``, ``All log messages before
absl::InitializeLog() is called...``, ``NodeDef mentions attribute
use_unbounded_threadpool``); ``TF_CPP_MIN_LOG_LEVEL`` does not reach them. The command line
and the experiment scripts filter them; in your own Python call :func:`quiet_tensorflow`
right after ``import pneumonia_cnn``, before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
import threading

__all__ = ["filter_native_stderr", "quiet_tensorflow"]

#: The lines dropped; everything else on stderr goes through unchanged.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|"
    r"[IW]\d{4} .*(port\.cc|cpu_feature_guard\.cc)|To enable the following instructions|"
    r"E\d{4} .*NodeDef mentions attribute use_unbounded_threadpool)")


def filter_native_stderr():
    """Route fd 2 through a thread that drops :data:`NATIVE_NOISE` lines.

    Returns a function that restores fd 2 and waits until every line got through (calling
    it again does nothing). ``$PNEUMONIA_CNN_RAW_STDERR`` turns the filter off."""
    if os.environ.get("PNEUMONIA_CNN_RAW_STDERR"):
        return lambda: None
    try:
        saved = os.dup(2)          # restored at the end
        out = os.dup(2)            # where the filter writes
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return lambda: None

    def pump():
        with os.fdopen(read_end, "rb") as src, os.fdopen(out, "wb", buffering=0) as dst:
            for line in src:
                if not NATIVE_NOISE.match(line.decode("utf-8", "replace")):
                    dst.write(line)

    thread = threading.Thread(target=pump, daemon=True, name="stderr-filter")
    thread.start()
    done = []

    def finish():
        if done:
            return
        done.append(True)
        sys.stderr.flush()
        os.dup2(saved, 2)          # closes the pipe's last write end: the pump sees EOF
        os.close(saved)
        thread.join(timeout=5)

    return finish


_ACTIVE: list = []


def quiet_tensorflow() -> None:
    """Filter TensorFlow's native start-up lines from this process's stderr (once; the
    filter is removed at exit, after any last traceback got through). Call it before
    TensorFlow is imported: ``import pneumonia_cnn; pneumonia_cnn.quiet_tensorflow()``."""
    import atexit

    if _ACTIVE:
        return
    finish = filter_native_stderr()
    _ACTIVE.append(finish)
    atexit.register(finish)
