"""A saved model folder: its file names, and how it is written (whole, or not at all)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["META_FILE", "MODEL_FILE", "WRAPPER_FILES", "atomic_model_folder"]

MODEL_FILE = "model.keras"
META_FILE = "pneumonia_cnn.json"
#: Files that post-fit wrappers (site calibration, site adaptation) add to a model folder.
WRAPPER_FILES = ("site_calibration.json", "site_adaptation.json")


@contextlib.contextmanager
def atomic_model_folder(path):
    """Where a model folder is written: a new sibling folder that replaces ``path`` in one
    rename when everything in it is written, under an exclusive lock (``.<name>.lock``
    beside it), so that two saves to one folder at once leave one whole model, never one
    model's network with the other's threshold, and a failed save leaves the old one.

    A folder that holds other files than a model's (allowed by the CLI's ``--overwrite``)
    keeps them: its model files are replaced one by one, still under the lock.
    """
    import fcntl
    import shutil
    import uuid

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: save() writes a folder; choose a new name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # mkdir, not mkdtemp: the folder gets the user's umask (mkdtemp's is owner-only)
        tmp = path.with_name(f".{path.name}.saving-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            yield tmp
            ours = {MODEL_FILE, META_FILE, *WRAPPER_FILES}
            if path.exists() and any(p.name not in ours for p in path.iterdir()):
                for stale in ours - {p.name for p in tmp.iterdir()}:
                    (path / stale).unlink(missing_ok=True)
                for f in tmp.iterdir():
                    os.replace(f, path / f.name)
                tmp.rmdir()
            else:
                old = None
                if path.exists():
                    old = path.with_name(f".{path.name}.old-{os.getpid()}")
                    os.replace(path, old)
                os.replace(tmp, path)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
