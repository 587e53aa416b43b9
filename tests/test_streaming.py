"""Data larger than memory: the memory-mapped cache, streams, and resumable decoding."""

import numpy as np
import pytest
from conftest import TINY

from pneumonia_cnn import PneumoniaCNN, load_image_folder
from pneumonia_cnn import data as data_mod
from pneumonia_cnn.data import ImageStream, iter_chunks
from pneumonia_cnn.data import _decode as decode_mod


def test_a_stream_holds_the_same_images_and_indexes_lazily(synthetic_dir, tmp_path):
    mem = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=False)
    st = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=True)
    assert isinstance(st.X, ImageStream) and isinstance(mem.X, np.ndarray)
    assert st.X.shape == mem.X.shape and len(st.X) == 60
    np.testing.assert_array_equal(np.asarray(st.X), mem.X)
    rows = np.array([7, 3, 50, 3])
    part = st.X[rows]
    assert isinstance(part, ImageStream)  # nothing read yet
    np.testing.assert_array_equal(part.read(), mem.X[rows])
    np.testing.assert_array_equal(st.X[rows, ...].read(), mem.X[rows])
    np.testing.assert_array_equal(part[1:3].read(), mem.X[rows[1:3]])
    np.testing.assert_array_equal(np.concatenate(list(iter_chunks(st.X, 16))), mem.X)


def test_a_stream_pickles_as_its_file_and_rows(synthetic_dir, tmp_path):
    """joblib's worker processes (search with n_jobs) get the file name, not the pixels."""
    import pickle

    st = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=True).X[np.arange(10, 40)]
    blob = pickle.dumps(st)
    assert len(blob) < 2000 < st.nbytes
    np.testing.assert_array_equal(pickle.loads(blob).read(), st.read())


def test_auto_streams_above_the_memory_limit(synthetic_dir, tmp_path, monkeypatch):
    assert isinstance(load_image_folder(synthetic_dir, 32, cache=tmp_path).X, np.ndarray)
    monkeypatch.setenv("PNEUMONIA_CNN_IN_MEMORY_MB", "0.01")  # 10 KiB < 60 images of 32x32
    assert isinstance(load_image_folder(synthetic_dir, 32, cache=tmp_path).X, ImageStream)
    with pytest.raises(data_mod.DataError, match="keep cache on"):
        load_image_folder(synthetic_dir, 32, cache=False, stream=True)


def test_training_and_prediction_from_a_stream(synthetic_dir, tmp_path):
    """A fit from disk (validation hold-out, CLAHE, balanced class weights, an ensemble)
    learns, predicts a stream like its arrays, and is reproducible."""
    st = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=True)
    params = {**TINY, "epochs": 3, "validation_fraction": 0.25, "intensity_norm": "clahe",
              "n_networks": 2, "threshold": "target"}
    clf = PneumoniaCNN(**params).fit(st)
    assert len(clf.history_["val_auc"]) == 3 and clf.n_train_ < 60
    assert list(tmp_path.glob("*/X.clahe.npy"))  # normalised once, beside the cache entry
    from_stream = clf.predict_proba(st.X)
    np.testing.assert_allclose(from_stream, clf.predict_proba(np.asarray(st.X)), rtol=1e-5)
    again = PneumoniaCNN(**params).fit(st)
    np.testing.assert_allclose(again.predict_proba(st.X), from_stream, rtol=1e-4, atol=1e-6)


def test_an_interrupted_decode_resumes_where_it_stopped(synthetic_dir, tmp_path, monkeypatch):
    reference = load_image_folder(synthetic_dir, 32, cache=False)
    monkeypatch.setattr(decode_mod, "_DECODE_STEP", 8)
    real = decode_mod._decode_or_reason
    decoded = []

    def interrupted_after_20(path, size):
        if len(decoded) == 20:
            raise KeyboardInterrupt
        decoded.append(path)
        return real(path, size)

    monkeypatch.setattr(decode_mod, "_decode_or_reason", interrupted_after_20)
    with pytest.raises(KeyboardInterrupt):
        load_image_folder(synthetic_dir, 32, cache=tmp_path, n_jobs=1)
    (entry,) = tmp_path.glob("*/done.npy")
    assert np.load(entry).sum() == 16  # two finished steps of 8 were saved

    decoded.clear()
    monkeypatch.setattr(decode_mod, "_decode_or_reason", lambda p, s: (decoded.append(p),
                                                                      real(p, s))[1])
    resumed = load_image_folder(synthetic_dir, 32, cache=tmp_path, n_jobs=1)
    assert len(decoded) == 60 - 16  # only what was not decoded before
    np.testing.assert_array_equal(resumed.X, reference.X)
    assert not list(tmp_path.glob("*/done.npy"))  # finished: progress files removed


@pytest.mark.slow
def test_evaluation_and_search_take_a_stream(synthetic_dir, tmp_path):
    from pneumonia_cnn.analysis import evaluate
    from pneumonia_cnn.tracking import search

    st = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=True)
    mem = load_image_folder(synthetic_dir, 32, cache=tmp_path, stream=False)
    clf = PneumoniaCNN(**TINY).fit(mem)
    a = evaluate(clf, st, out_dir=tmp_path / "eval", track=False)
    b = evaluate(clf, mem, track=False)
    assert a["n_images"] == 60 and a["roc_auc"] == pytest.approx(b["roc_auc"])
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    on_disk = search(st, {"filters": [(4,), (4, 8)]}, estimator=PneumoniaCNN(**TINY), cv=2,
                     holdout=0.25, tracking_uri=uri, name="stream", verbose=0)
    assert len(on_disk.cv_results) == 2 and 0 <= on_disk.holdout["roc_auc"] <= 1
    assert np.isfinite(on_disk.cv_results["mean_test_roc_auc"]).all()


def test_a_full_cache_disk_falls_back_to_memory_and_leaves_no_entry(synthetic_dir, tmp_path,
                                                                    monkeypatch):
    """A full disk was a SIGBUS (exit 135, no message) and a half-written entry that crashed
    every retry (issue 22, finding 17): the entry's blocks are reserved first."""
    import errno
    import os

    from pneumonia_cnn import load_image_folder

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.warns(UserWarning, match="No space left on device"):
        data = load_image_folder(synthetic_dir, 32, cache=tmp_path / "cache")
    reference = load_image_folder(synthetic_dir, 32, cache=False)
    np.testing.assert_array_equal(data.X, reference.X)
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert all(sorted(f.name for f in e.iterdir()) in ([], ["lock"]) for e in entries)
    monkeypatch.undo()  # disk space again: the cache works
    again = load_image_folder(synthetic_dir, 32, cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.X, reference.X)
