"""Searches on a Dask cluster (optional extra: ``pip install 'pneumonia-cnn[cluster]'``).

A search given ``cluster=`` runs scikit-learn's own ``GridSearchCV`` / ``RandomizedSearchCV``
under joblib's Dask backend (``joblib.parallel_backend("dask")``): every fold fit is a Dask
task. The images are sent to every worker once (``scatter``, broadcast), so workers need
neither the data folder nor the tracking store; the process that owns the search logs every
candidate to MLflow when it returns.

``cluster`` is

- ``"tcp://scheduler:8786"`` (any scheduler address): an existing cluster, started with
  ``dask scheduler`` / ``dask worker`` or deployed with dask-kubernetes or dask-jobqueue. An
  address that does not answer fails within ``timeout`` seconds, naming it;
- ``"local"`` or ``"local:N"``: a ``dask.distributed.LocalCluster`` of N worker processes
  (default: one per core) on this machine, one thread each, closed when the search ends;
- a ``dask.distributed.Client``: used as it is (and left open).

Every worker runs TensorFlow with both its thread pools sized to the worker's thread count
(:class:`pneumonia_cnn.cluster.TensorFlowThreads`, loaded with ``distributed``), so that N
single-threaded workers on N cores do not each start a pool per core.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager

__all__ = ["ClusterError", "connect", "dask_backend", "total_threads", "wave_size",
           "worker_threads"]


#: Seconds to wait for a scheduler to answer before giving up.
CONNECT_TIMEOUT = 10


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message says why and what to do."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("searching on a Dask cluster needs dask.distributed: pip install "
                           "'pneumonia-cnn[cluster]' (or pip install 'dask[distributed]')"
                           ) from None
    return distributed


def worker_threads() -> tuple:
    """``(intra_op, inter_op)`` thread counts of TensorFlow in the calling process (run it
    on the workers with ``client.run``)."""
    import tensorflow as tf

    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def _local_cluster(spec: str, distributed):
    n = spec.partition(":")[2]
    try:
        workers = int(n) if n else (os.cpu_count() or 1)
    except ValueError:
        raise ClusterError(f"cluster {spec!r}: expected 'local' or 'local:N' with N worker "
                           "processes, e.g. local:4") from None
    if workers < 1:
        raise ClusterError(f"cluster {spec!r}: N must be at least 1")
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    return distributed.Client(cluster), cluster


@contextmanager
def connect(cluster, timeout: float | None = None):
    """A ``distributed.Client`` for ``cluster`` (see the module docstring), with
    :class:`TensorFlowThreads` on every worker; what this opened is closed on exit.

    Raises
    ------
    ClusterError
        dask.distributed is missing, the address does not answer within ``timeout``
        seconds (default :data:`CONNECT_TIMEOUT`), or ``cluster`` is not understood.
    """
    distributed = _distributed()
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    owned = []
    if isinstance(cluster, distributed.Client):
        client = cluster
    elif isinstance(cluster, str) and (cluster == "local" or cluster.startswith("local:")):
        client, local = _local_cluster(cluster, distributed)
        owned = [client, local]
    elif isinstance(cluster, str) and cluster:
        address = cluster if "://" in cluster else f"tcp://{cluster}"
        try:
            client = distributed.Client(address, timeout=f"{timeout}s")
        except Exception as exc:  # refused, timed out, or something else answered there
            why = type(exc).__name__ if isinstance(exc, (OSError, TimeoutError)) else (
                f"not a Dask scheduler: {type(exc).__name__}")
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                f"({why}): start it (`dask scheduler`, then `dask worker {address}` on each "
                "machine), check the address, or use --cluster local") from None
        owned = [client]
    else:
        raise ClusterError(f"cluster must be a scheduler address (tcp://host:8786), 'local', "
                           f"'local:N' or a dask.distributed.Client, got {cluster!r}")
    from ._dask_plugin import TensorFlowThreads  # imports distributed: only here

    try:
        client.register_plugin(TensorFlowThreads())
        yield client
    finally:
        for thing in owned:
            try:
                thing.close()
            except Exception:  # closing a cluster that lost its workers: nothing to keep
                pass


def total_threads(client) -> int:
    """Tasks the cluster runs at once (the sum of its workers' threads; at least 1)."""
    return max(1, sum(w.get("nthreads", 1) for w in
                      client.scheduler_info(n_workers=-1)["workers"].values()))


def wave_size(client, n_splits: int) -> int:
    """Candidates sent to the cluster together: enough to keep every thread busy, and a
    number whose fold fits fill the threads evenly (2 workers and 3 folds: 2 candidates,
    6 fits in 3 rounds of 2, not 1 candidate whose third fit leaves a worker idle)."""
    threads, n_splits = total_threads(client), max(1, n_splits)
    least = math.ceil(threads / n_splits)
    for wave in range(least, 4 * least + 1):
        tasks = wave * n_splits
        if tasks / (math.ceil(tasks / threads) * threads) >= 0.9:  # at most 10% idle
            return wave
    return least


@contextmanager
def dask_backend(client, scatter):
    """joblib's Dask backend on ``client`` with the arrays of ``scatter`` sent to every
    worker once, for every Parallel call inside the block."""
    import joblib

    with joblib.parallel_backend("dask", client=client, scatter=list(scatter)):
        yield
