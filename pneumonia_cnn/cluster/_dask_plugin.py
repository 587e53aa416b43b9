"""The Dask worker plugin of :mod:`pneumonia_cnn.cluster` (this module imports
dask.distributed: it is imported only when a search runs on a cluster)."""

from __future__ import annotations

import logging
import os

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["TensorFlowThreads"]


class TensorFlowThreads(WorkerPlugin):
    """Dask worker plugin: TensorFlow's intra-op and inter-op thread pools sized to the
    worker's thread count (set before the worker's first task starts TensorFlow)."""

    name = "pneumonia-cnn-tensorflow-threads"
    idempotent = True

    def setup(self, worker):
        n = int(getattr(getattr(worker, "state", worker), "nthreads", 0) or worker.nthreads)
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(n)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already ran in this worker: keep what it has
            logging.getLogger(__name__).warning(
                "TensorFlow had already started in worker %s; its thread pools keep their "
                "size", worker.address)
