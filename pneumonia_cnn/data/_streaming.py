"""Images that stay on disk: a memory-mapped image cache read one batch at a time.

When a data set's decoded images would not fit comfortably in memory (more than
:func:`in_memory_limit` bytes, 256 MiB unless ``$PNEUMONIA_CNN_IN_MEMORY_MB`` says otherwise),
the loaders return its images as an :class:`ImageStream` instead of an array: a view of the
decoded-image cache (``X.npy``, memory-mapped) and the rows that belong to the data. It
behaves like the array where the package needs it -- ``len``, ``shape``, indexing with rows
(which gives another stream, not a copy) -- and is read in batches:

- training feeds ``tf.data`` from it, one shuffled batch at a time (:func:`stream_batches`);
- prediction, hashing and intensity normalisation go through it in chunks
  (:func:`iter_chunks`);
- intensity normalisation of a stream is computed once and cached beside the images
  (``X.<method>.npy``), so epochs read finished pixels, as the in-memory path does.

Pages read through the map are handed back to the operating system after every chunk
(``madvise(MADV_DONTNEED)``): they stay in the file cache, but not in the process's resident
memory, so memory stays bounded by a few batches whatever the size of the data.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

__all__ = ["ImageStream", "in_memory_limit", "iter_chunks", "release", "stream_batches"]

#: Images per chunk for prediction, hashing and normalisation of a stream.
CHUNK = 2048


def in_memory_limit() -> int:
    """Bytes of decoded images above which the loaders stream from disk (``"auto"``):
    ``$PNEUMONIA_CNN_IN_MEMORY_MB`` MiB, default 256 (the in-memory training path peaks at
    about six times its decoded pixels on top of TensorFlow: 2.3 GiB for 250 MiB)."""
    try:
        mb = float(os.environ.get("PNEUMONIA_CNN_IN_MEMORY_MB", "256"))
    except ValueError:
        raise ValueError("PNEUMONIA_CNN_IN_MEMORY_MB must be a number of MiB, got "
                         f"{os.environ['PNEUMONIA_CNN_IN_MEMORY_MB']!r}") from None
    return int(mb * 2**20)


def release(array) -> None:
    """Drop the resident pages of a memory-mapped array (they stay in the file cache)."""
    base = array
    while base is not None and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
        base = getattr(base, "base", None)
    m = getattr(base, "_mmap", None)
    if isinstance(m, mmap.mmap) and hasattr(m, "madvise"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed, or a platform without it: harmless
            pass


class ImageStream:
    """Rows of a memory-mapped uint8 image array ``(n, size, size, 1)``, read on demand.

    Parameters
    ----------
    source : str, path-like or numpy.memmap
        The ``.npy`` file (opened read-only, memory-mapped) or the map.
    index : array of int or None, default=None
        The rows of the source in this stream, in order; None: all of them.
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, source, index=None):
        if isinstance(source, (str, os.PathLike)):
            self.path = str(source)
            self.base = np.load(self.path, mmap_mode="r")
        else:
            self.path = getattr(source, "filename", None)
            self.base = source
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple:
        return (len(self),) + tuple(self.base.shape[1:])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __repr__(self) -> str:
        return f"ImageStream({self.path}, {len(self)} images of {self.shape[1:]})"

    def _rows(self, key) -> np.ndarray:
        rows = np.arange(len(self))[key]
        return rows if self.index is None else self.index[rows]

    def __getitem__(self, key):
        """A row (an image array), or rows (another stream: nothing is read yet)."""
        if isinstance(key, (int, np.integer)):
            return np.array(self.base[self._rows(key)])
        if isinstance(key, tuple):  # X[rows, ...] (as scikeras writes it) is X[rows]
            if len(key) != 2 or key[1] is not Ellipsis:
                raise IndexError("an ImageStream is indexed by rows only; read rows with "
                                 ".read()")
            return self[key[0]]
        return ImageStream(self.base, self._rows(key))

    def read(self, rows=None, *, release_pages: bool = True) -> np.ndarray:
        """The images of ``rows`` (positions in this stream; all by default) as an array;
        the pages read are released unless ``release_pages=False`` (the caller does it)."""
        rows = self._rows(slice(None) if rows is None else rows)
        order = np.argsort(rows, kind="stable")  # read the file forwards
        out = np.empty((len(rows),) + self.shape[1:], np.uint8)
        out[order] = self.base[rows[order]]
        if release_pages:
            release(self.base)
        return out

    def __reduce__(self):
        """Pickled as its file and rows (joblib's worker processes open the same file), not
        as the pixels."""
        if self.path is None:
            return (ImageStream, (np.asarray(self.base), self.index))
        return (ImageStream, (self.path, self.index))

    def __array__(self, dtype=None, copy=None):
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)

    def with_base(self, base) -> "ImageStream":
        """The same rows of another array of the same length (e.g. its normalised copy)."""
        return ImageStream(base, self.index)


def iter_chunks(X, size: int = CHUNK):
    """``X`` (an array or an :class:`ImageStream`) in consecutive in-memory chunks."""
    for start in range(0, len(X), size):
        stop = min(start + size, len(X))
        yield X.read(slice(start, stop)) if isinstance(X, ImageStream) else X[start:stop]


def map_stream(stream: ImageStream, fn, tag: str, n_jobs: int | None = None) -> ImageStream:
    """``fn`` (an image batch -> same-shaped uint8 batch) applied to the whole source of
    ``stream``, once: the result is cached beside the source as ``X.<tag>.npy`` and reused
    by every later stream of that source (other rows, later fits)."""
    from concurrent.futures import ThreadPoolExecutor

    if stream.path is None:
        raise ValueError("map_stream needs a stream backed by a file")
    src = Path(stream.path)
    target = src.with_name(f"{src.stem}.{tag}{src.suffix}")
    if not target.is_file():
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=stream.base.shape)
        whole = ImageStream(stream.base)
        starts = range(0, len(whole), CHUNK // 4)

        def work(start):
            stop = min(start + CHUNK // 4, len(whole))
            out[start:stop] = fn(np.array(whole.base[start:stop]))
            return stop

        with ThreadPoolExecutor(n_jobs or os.cpu_count() or 1) as pool:
            for _ in pool.map(work, starts):
                release(whole.base)
                release(out)
        out.flush()
        del out
        os.replace(tmp, target)
    return stream.with_base(np.load(target, mmap_mode="r"))


def stream_batches(x: ImageStream, y, sample_weight=None, *, batch_size: int = 32,
                   shuffle: bool = False, seed=None):
    """A ``tf.data`` pipeline reading ``x`` from disk one batch at a time (reshuffled every
    epoch when ``shuffle``), for ``keras.Model.fit``."""
    import tensorflow as tf

    y = np.asarray(y)
    sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)
    rng = np.random.default_rng(seed)
    n = len(x)

    every = max(1, (32 << 20) // max(1, int(np.prod(x.shape[1:])) * batch_size))

    def batches():
        order = rng.permutation(n) if shuffle else np.arange(n)
        for i, start in enumerate(range(0, n, batch_size)):
            rows = order[start:start + batch_size]
            part = (x.read(rows, release_pages=False), y[rows])
            if i % every == every - 1:  # about every 32 MiB read
                release(x.base)
            yield part if sw is None else part + (sw[rows],)
        release(x.base)

    spec = [tf.TensorSpec((None,) + x.shape[1:], tf.uint8),
            tf.TensorSpec((None,) + y.shape[1:], tf.as_dtype(y.dtype))]
    if sw is not None:
        spec.append(tf.TensorSpec((None,), tf.float32))
    ds = tf.data.Dataset.from_generator(batches, output_signature=tuple(spec)).apply(
        tf.data.experimental.assert_cardinality(-(-n // batch_size)))  # Keras knows the epoch
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return ds.prefetch(4).with_options(options)
