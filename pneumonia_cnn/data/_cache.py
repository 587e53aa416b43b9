"""The on-disk cache of decoded images: one entry per file list and image size, resumable."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ._decode import decode_into, report_notes
from ._streaming import release

_CACHE_VERSION = 3

# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """Where decoded images are cached: ``$PNEUMONIA_CNN_CACHE_DIR`` or
    ``~/.cache/pneumonia-cnn``."""
    env = os.environ.get("PNEUMONIA_CNN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pneumonia-cnn"



def _cache_key(paths: Sequence[str], image_size: int) -> str:
    """The cache entry of these files at this size.

    Each file counts by its **resolved** path (the same relative folder name in two working
    directories is two entries), as bytes (a name that is not valid UTF-8 is still a name),
    and by its size, modification time, inode and **change time**: a file rewritten in
    place with the same size and the same modification time (``cp -p``, ``rsync -t``, an
    archive extracted again, ``touch -r``) gets a new change time, which no tool can set
    back, so its stale pixels are never served. A ``chmod`` or rename also changes it: that
    costs a new decode, never a wrong image.
    """
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{image_size}".encode())
    for p in paths:
        real = os.fsencode(os.path.realpath(p))
        try:
            st = os.stat(p)
            h.update(b"|" + real + f"|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|"
                                   f"{st.st_dev}:{st.st_ino}".encode())
        except OSError:
            h.update(b"|" + real + b"|missing")
    return h.hexdigest()[:32]


def _atomic_save(path: Path, arr) -> None:
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


@contextlib.contextmanager
def _entry_lock(entry: Path):
    """One process decodes an entry at a time; the others wait, then read its result."""
    try:
        import fcntl
    except ImportError:  # not POSIX: entries are still written atomically step by step
        yield
        return
    with open(entry / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_entry(entry: Path, n: int, image_size: int):
    """A finished cache entry: ``(X memory-mapped, ok, skipped)``; raises if damaged."""
    meta = json.loads((entry / "complete.json").read_text())
    X = np.load(entry / "X.npy", mmap_mode="r")
    ok = np.load(entry / "ok.npy")
    if len(ok) != n or X.shape != (n, image_size, image_size, 1):
        raise ValueError(f"it holds {X.shape} images for {n} files")
    report_notes(meta["noted"])  # the guesses of the first decoding, again
    return X, ok, [tuple(s) for s in meta["skipped"]]


def cached_decode(paths: Sequence[str], image_size: int, cache, n_jobs, verbose):
    """Decoded images ``(X, ok, skipped)``: X is memory-mapped from the cache entry (a
    folder ``<key>/`` with ``X.npy``), or an in-memory array without a cache."""
    n = len(paths)
    if not cache:
        X = np.zeros((n, image_size, image_size, 1), dtype=np.uint8)
        ok, skipped, noted = np.zeros(n, bool), [], []
        decode_into(X, ok, np.zeros(n, bool), paths, image_size, n_jobs, verbose, skipped,
                     noted)
        report_notes(noted)
        return X, ok, skipped
    entry = (default_cache_dir() if cache is True else Path(cache)) / _cache_key(paths,
                                                                                  image_size)
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(f"could not create the image cache {entry}: {exc}; decoding without it",
                      stacklevel=3)
        return cached_decode(paths, image_size, False, n_jobs, verbose)
    with _entry_lock(entry):
        if (entry / "complete.json").is_file():
            try:
                return _read_entry(entry, n, image_size)
            except Exception as exc:  # truncated file, bad header, wrong content: rebuild it
                warnings.warn(f"the image cache entry {entry} is damaged ({type(exc).__name__}"
                              f": {exc}); it is dropped and rebuilt", stacklevel=3)
                for f in entry.glob("*"):
                    if f.name != "lock":
                        f.unlink()
        return _decode_to_entry(entry, paths, image_size, n_jobs, verbose)


def _reserve(path: Path) -> None:
    """Allocate a cache file's blocks now. A memory map writes into a sparse file lazily:
    on a full disk that write is a SIGBUS that kills the process without a word (and the
    half-written entry crashed every retry); reserved, a full disk is an OSError here."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _decode_to_entry(entry: Path, paths, image_size: int, n_jobs, verbose):
    n = len(paths)
    shape = (n, image_size, image_size, 1)
    skipped, noted = [], []
    done = ok = None
    if (entry / "done.npy").is_file():  # an interrupted decode: go on from its last step
        try:
            done, ok = np.load(entry / "done.npy"), np.load(entry / "ok.npy")
            progress = json.loads((entry / "progress.json").read_text())
            skipped = [tuple(x) for x in progress["skipped"]]
            noted = [tuple(x) for x in progress["noted"]]
            X = np.lib.format.open_memmap(entry / "X.npy", mode="r+")
            if X.shape != shape or len(done) != n or len(ok) != n:
                raise ValueError("sizes differ")
        except Exception:  # half-written state: start again, from nothing
            done = ok = None
            skipped, noted = [], []
    try:
        if done is None:
            done, ok = np.zeros(n, bool), np.zeros(n, bool)
            X = np.lib.format.open_memmap(entry / "X.npy", mode="w+", dtype=np.uint8,
                                          shape=shape)
        _reserve(entry / "X.npy")
    except OSError as exc:  # a full disk: no entry, decode in memory
        X = None
        warnings.warn(f"could not write the image cache {entry}: {exc}; decoding without it",
                      stacklevel=4)
        for f in entry.glob("*"):
            if f.name != "lock":
                f.unlink(missing_ok=True)
        return cached_decode(paths, image_size, False, n_jobs, verbose)

    def save():
        X.flush()  # the pixels reach the file before the progress that counts them
        release(X)
        _atomic_json(entry / "progress.json", {"skipped": skipped, "noted": noted})
        _atomic_save(entry / "ok.npy", ok)
        _atomic_save(entry / "done.npy", done)

    try:
        decode_into(X, ok, done, paths, image_size, n_jobs, verbose, skipped, noted, save)
        save()
        _atomic_json(entry / "complete.json", {"skipped": skipped, "noted": noted})
        for name in ("done.npy", "progress.json"):
            (entry / name).unlink(missing_ok=True)
    except OSError as exc:  # a full or read-only disk: keep going in memory
        warnings.warn(f"could not write the image cache {entry}: {exc}", stacklevel=4)
        X = np.array(X)
        if not done.all():
            decode_into(X, ok, done, paths, image_size, n_jobs, verbose, skipped, noted)
        report_notes(noted)
        return X, ok, skipped
    X = None  # closes the writable map before the entry is read back read-only
    report_notes(noted)
    return np.load(entry / "X.npy", mmap_mode="r"), ok, skipped


