"""Read a legacy-format (non-zip) ``torch.save`` state dict with NumPy alone, safely.

PyTorch's legacy format is four pickles and raw storages one after the other: a magic
number, a protocol version, system information, the state dict (tensors as persistent
references to storages), the list of storage keys, then each storage as an 8-byte element
count followed by its little-endian bytes.

A pickle can run arbitrary code when it is loaded. :class:`RestrictedUnpickler` admits only
the handful of names a state dict needs (``collections.OrderedDict``, the tensor rebuild
function and the storage types) and refuses every other global, so a crafted file raises
:class:`UnsafeWeightsError` instead of running anything. No ``torch`` import is needed.
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path

import numpy as np

__all__ = ["LEGACY_MAGIC", "RestrictedUnpickler", "UnsafeWeightsError", "read_torch_state_dict"]

#: The magic number that opens every legacy ``torch.save`` file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: ``torch.<name>Storage`` -> the NumPy dtype of its elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeWeightsError(pickle.UnpicklingError):
    """A weights file asked for something a plain state dict never needs (code to run)."""


class _Storage:
    """A storage named in the pickle; its bytes come after it in the file."""

    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), None


class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: remembers where the tensor lies in
    its storage; the array is cut out once the storages have been read."""
    return ("tensor", storage, int(storage_offset), tuple(size), tuple(stride))


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only what a PyTorch state dict is made of.

    Allowed globals: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (and
    ``_rebuild_tensor``), and the ``torch.*Storage`` types of :data:`STORAGE_DTYPES`;
    persistent ids must be storage references. Anything else raises
    :class:`UnsafeWeightsError`.
    """

    _REBUILD = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict = {}  # storage key -> _Storage, filled by persistent_load

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in self._REBUILD:
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeWeightsError(
            f"refusing to load {module}.{name} from a weights file: only a plain PyTorch "
            "state dict (tensors in an OrderedDict) is read, never code")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise UnsafeWeightsError(f"refusing persistent id {pid!r}: not a tensor storage")
        key, numel = str(pid[2]), int(pid[4])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1].dtype, numel)
        return self.storages[key]


def read_torch_state_dict(path) -> "collections.OrderedDict[str, np.ndarray]":
    """The tensors of a legacy-format ``torch.save(state_dict)`` file, as NumPy arrays.

    Parameters
    ----------
    path : str or Path
        The ``.pth`` file.

    Returns
    -------
    OrderedDict of str to ndarray
        Every tensor of the state dict under its name, with its shape (strides resolved, so
        each array is C-contiguous).

    Raises
    ------
    UnsafeWeightsError
        The file asks for anything but tensors in an ordered dict.
    ValueError
        The file is not a legacy ``torch.save`` file, or is truncated.
    """
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    try:
        magic = RestrictedUnpickler(f).load()
        if magic != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy-format torch.save file (a zip-format "
                             "file, or something else): re-save it with "
                             "torch.save(..., _use_new_zipfile_serialization=False)")
        RestrictedUnpickler(f).load()  # protocol version
        RestrictedUnpickler(f).load()  # system information (endianness, type sizes)
        unpickler = RestrictedUnpickler(f)
        state = unpickler.load()
        keys = RestrictedUnpickler(f).load()
    except (EOFError, pickle.UnpicklingError) as exc:
        if isinstance(exc, UnsafeWeightsError):
            raise
        raise ValueError(f"{path}: not a readable torch.save file ({exc})") from None
    storages = unpickler.storages
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise UnsafeWeightsError(f"{path} does not hold a state dict")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise ValueError(f"{path} is damaged: storage {key!r} is listed but no tensor uses it")
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        nbytes = count * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes or count != storage.numel:
            raise ValueError(f"{path} is truncated or damaged (storage {key})")
        storage.data = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
    out = collections.OrderedDict()
    for name, value in state.items():
        if not (isinstance(value, tuple) and value and value[0] == "tensor"):
            raise UnsafeWeightsError(f"{path}: entry {name!r} is not a tensor")
        _, storage, offset, size, stride = value
        item = storage.dtype.itemsize
        flat = storage.data
        if flat is None:
            raise ValueError(f"{path}: the storage of {name!r} is missing")
        extent = offset + 1 + sum((n - 1) * st for n, st in zip(size, stride))
        if extent > flat.size:
            raise ValueError(f"{path}: tensor {name!r} reaches past its storage")
        arr = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                              strides=[s * item for s in stride])
        out[name] = np.array(arr, dtype=storage.dtype.newbyteorder("="))
    return out
