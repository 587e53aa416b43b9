"""Searches on a real Dask cluster (a LocalCluster of 2 worker processes; no mocks)."""

import os
import signal
import threading
import time

import mlflow
import numpy as np
import pytest
from conftest import TINY, free_port

distributed = pytest.importorskip("distributed")

from pneumonia_cnn import PneumoniaCNN  # noqa: E402
from pneumonia_cnn.cluster import _cluster as cluster_mod  # noqa: E402
from pneumonia_cnn.tracking import _search as search_mod  # noqa: E402
from pneumonia_cnn.tracking import search  # noqa: E402

GRID = {"filters": [(4,), (4, 8)]}
#: Seeded fits are identical in any process (measured: equal to the last digit). ROC AUC is a
#: rank statistic: float round-off (oneDNN sums in an order that depends on the thread count:
#: 1 per worker, 2 here) could change it only by swapping two near-tied scores; a fold here
#: has about 12 x 18 = 216 (NORMAL, PNEUMONIA) pairs, so one swap moves it by 0.0046.
AUC_TOLERANCE = 0.005  # one swap


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _search(data, uri, name, **kwargs):
    return search(data, GRID, estimator=PneumoniaCNN(**{**TINY, "epochs": 2}), cv=2,
                  holdout=0, refit=False, tracking_uri=uri, name=name, verbose=0, **kwargs)


@pytest.fixture(scope="module")
def sequential(synthetic_data, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('seq') / 'm.db'}"
    return _search(synthetic_data, uri, "sequential")


def _scores(result):
    table = result.cv_results.sort_values("candidate_key")
    return table["candidate_key"].tolist(), table["mean_test_roc_auc"].to_numpy()


def test_a_cluster_search_matches_the_sequential_one_and_logs_the_same_tree(
        client, sequential, synthetic_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = _search(synthetic_data, uri, "on-cluster", cluster=client)
    keys, auc = _scores(result)
    seq_keys, seq_auc = _scores(sequential)
    assert keys == seq_keys
    np.testing.assert_allclose(auc, seq_auc, atol=AUC_TOLERANCE)
    # every worker's TensorFlow uses its one thread, not one per core
    assert set(client.run(cluster_mod.worker_threads).values()) == {(1, 1)}
    # the MLflow tree, written by this process: a parent and one child per candidate
    mc = mlflow.MlflowClient(uri)
    parent = mc.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = mc.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.kind = 'candidate'"))
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


def test_a_dead_scheduler_fails_within_seconds_naming_it(synthetic_data, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT", 3)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    start = time.perf_counter()
    with pytest.raises(cluster_mod.ClusterError, match=f"cannot reach .* {address}"):
        _search(synthetic_data, uri, "dead", cluster=address)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "m.db").exists()  # failed before any run was created


def test_ctrl_c_on_the_client_ends_the_parent_killed_and_the_search_resumes(
        client, sequential, synthetic_data, tmp_path, monkeypatch):
    """SIGINT to this process while the cluster runs the second candidate's folds."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    real = search_mod.MLflowGridSearchCV._log_candidate
    first_logged = threading.Event()

    def log_and_tell(self, *args, **kwargs):
        real(self, *args, **kwargs)
        first_logged.set()

    monkeypatch.setattr(search_mod.MLflowGridSearchCV, "_log_candidate", log_and_tell)

    def ctrl_c_while_tasks_run():
        first_logged.wait(60)
        deadline = time.time() + 30
        while time.time() < deadline and not any(client.processing().values()):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_while_tasks_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _search(synthetic_data, uri, "interrupted", cluster=client)
    monkeypatch.setattr(search_mod.MLflowGridSearchCV, "_log_candidate", real)
    mc = mlflow.MlflowClient(uri)
    exp = mc.get_experiment_by_name("pneumonia-cnn").experiment_id
    (parent,) = mc.search_runs([exp], filter_string="tags.kind = 'search'")
    assert parent.info.status == "KILLED"
    done = mc.search_runs([exp], filter_string="tags.kind = 'candidate'")
    assert len(done) == 1
    resumed = _search(synthetic_data, uri, "interrupted", cluster=client)
    assert resumed.parent_run_id == parent.info.run_id and resumed.resumed == len(done)
    keys, auc = _scores(resumed)
    assert keys == _scores(sequential)[0]
    np.testing.assert_allclose(auc, _scores(sequential)[1], atol=AUC_TOLERANCE)


def test_a_worker_killed_mid_search_does_not_lose_it(client, synthetic_data, tmp_path):
    """A third worker, a separate `dask worker --no-nanny` process (nothing restarts it), is
    killed while it runs a fold fit: its tasks run again on the others and the results are
    the sequential ones. 300 images, so that a fold's index array is over joblib's 1 kB
    auto-scatter size: before the folds were broadcast too, they lived on one worker and
    its tasks were cancelled ("already forgotten") instead of rerun."""
    import subprocess
    import sys

    from pneumonia_cnn.data import ImageData

    n = 5 * len(synthetic_data)
    big = ImageData(X=np.concatenate([synthetic_data.X] * 5), y=np.tile(synthetic_data.y, 5),
                    paths=np.arange(n).astype(str), groups=np.arange(n).astype(str))
    expected = _search(big, f"sqlite:///{tmp_path / 'seq.db'}", "big-sequential")

    extra = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", client.scheduler.address,
         "--nthreads", "1", "--no-nanny", "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.wait_for_workers(3, timeout=60)
        address = next(a for a, pid in client.run(os.getpid).items() if pid == extra.pid)
        killed = []

        def kill_it_while_busy():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                if client.processing().get(address):
                    time.sleep(0.5)  # well inside the task
                    extra.kill()
                    killed.append(address)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_it_while_busy, daemon=True)
        killer.start()
        uri = f"sqlite:///{tmp_path / 'm.db'}"
        result = _search(big, uri, "worker-killed", cluster=client)
        killer.join()
    finally:
        extra.kill()
        extra.wait()
    assert killed, "the extra worker was never seen running a task"
    keys, auc = _scores(result)
    assert keys == _scores(expected)[0] and len(result.cv_results) == 2
    np.testing.assert_allclose(auc, _scores(expected)[1], atol=AUC_TOLERANCE)


def test_cluster_specs_and_a_missing_dask_are_explained(monkeypatch):
    with pytest.raises(cluster_mod.ClusterError, match="'local' or 'local:N'"):
        with cluster_mod.connect("local:two"):
            pass
    with pytest.raises(cluster_mod.ClusterError, match="scheduler address"):
        with cluster_mod.connect(42):
            pass
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # not installed
    with pytest.raises(cluster_mod.ClusterError, match=r"pip install 'pneumonia-cnn\[cluster\]'"):
        with cluster_mod.connect("local"):
            pass


def test_searching_image_size_on_a_cluster_is_refused_before_any_work(synthetic_data):
    with pytest.raises(ValueError, match="image_size on a cluster is not supported"):
        search(synthetic_data, {"image_size": [32, 48]}, cluster="tcp://127.0.0.1:1")
