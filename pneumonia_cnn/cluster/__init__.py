"""Searches on a Dask cluster (optional extra ``[cluster]``): connecting, sizing waves of fold
fits, and the worker plugin that sizes TensorFlow's thread pools.
"""

# Layout (for developers):
# Modules (private): ``_cluster`` (re-exported here; it imports ``distributed`` only when a
# cluster is used) and ``_dask_plugin`` (the worker plugin, which imports ``distributed``:
# ``from pneumonia_cnn.cluster import TensorFlowThreads`` loads it on first use).

from ._cluster import (
    ClusterError,
    connect,
    dask_backend,
    total_threads,
    wave_size,
    worker_threads,
)

__all__ = ["ClusterError", "TensorFlowThreads", "connect", "dask_backend", "total_threads",
           "wave_size", "worker_threads"]


def __getattr__(name):
    if name == "TensorFlowThreads":  # imports distributed: only when asked for
        from ._dask_plugin import TensorFlowThreads

        return TensorFlowThreads
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
