"""Data sources: split roots (Kaggle's layout), MedMNIST .npz files and label CSVs."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.cli import main
from pneumonia_cnn.data import (
    DataError,
    evaluation_split,
    load_csv,
    load_data,
    load_image_folder,
    parse_source,
)


@pytest.fixture(scope="module")
def split_root(synthetic_dir, tmp_path_factory):
    """Kaggle's layout made of the synthetic images: train 40, val 8, test 12 (by patient
    id order, so that no patient is in two splits)."""
    root = tmp_path_factory.mktemp("kaggle") / "chest_xray"
    files = sorted(p for p in synthetic_dir.rglob("*.jpeg"))
    for i, f in enumerate(files):
        split = "train" if i % 5 in (0, 1, 2) else ("val" if i % 10 == 3 else "test")
        dest = root / split / f.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest / f.name)
    return root


def _count(root, split):
    return len(list((root / split).rglob("*.jpeg")))


def test_a_split_root_trains_on_train_and_val_and_evaluates_on_test(split_root):
    train = load_data(split_root, 32, role="train")
    assert len(train) == _count(split_root, "train") + _count(split_root, "val")
    assert train.root.endswith("chest_xray/train+val")
    test = load_data(split_root, 32, role="evaluate")
    assert len(test) == _count(split_root, "test") and test.root.endswith("chest_xray/test")
    val = load_data(f"{split_root}:val", 32)
    assert len(val) == _count(split_root, "val")
    np.testing.assert_array_equal(np.sort(val.paths), np.sort(
        load_image_folder(split_root / "val", 32).paths))
    assert evaluation_split(split_root) == f"{split_root}:test"
    assert evaluation_split(split_root / "train") is None


def test_splits_that_are_missing_or_unnamed_are_explained(split_root, tmp_path):
    with pytest.raises(DataError, match="name the one to use"):
        load_data(split_root, 32, role=None)
    with pytest.raises(DataError, match="must be a split"):
        parse_source(f"{split_root}:tset")
    small = tmp_path / "chest_xray"  # the downsampled layout: train/ and val/ only
    shutil.copytree(split_root / "train", small / "train")
    shutil.copytree(split_root / "val", small / "val")
    assert evaluation_split(small) is None
    with pytest.raises(DataError, match="no test split"):
        load_data(small, 32, role="evaluate")
    with pytest.raises(DataError, match="only a split root .* has splits"):
        load_data(f"{small / 'train'}:test", 32)


@pytest.fixture(scope="module")
def medmnist(synthetic_data, tmp_path_factory):
    """A PneumoniaMNIST-format file (28x28 uint8, labels (n, 1)) from the synthetic films."""
    X = np.stack([np.asarray(Image.fromarray(x[..., 0]).resize((28, 28)))
                  for x in synthetic_data.X])
    y = (synthetic_data.y == "PNEUMONIA").astype(np.uint8)[:, None]
    path = tmp_path_factory.mktemp("medmnist") / "pneumoniamnist.npz"
    np.savez(path, train_images=X[:40], train_labels=y[:40], val_images=X[40:48],
             val_labels=y[40:48], test_images=X[48:], test_labels=y[48:])
    return path, X, y[:, 0]


def test_medmnist_loads_with_its_labels_and_splits(medmnist):
    path, X, y = medmnist
    with pytest.warns(UserWarning, match="no patient ids"):
        train = load_data(path, 28)
    assert len(train) == 48 and train.root.endswith("pneumoniamnist.npz:train+val")
    np.testing.assert_array_equal(train.X[..., 0], X[:48])  # same size: the same pixels
    np.testing.assert_array_equal(train.y == "PNEUMONIA", y[:48] == 1)
    with pytest.warns(UserWarning):
        test = load_data(f"{path}:test", 56)
    assert test.X.shape == (12, 56, 56, 1) and list(test.paths[:1]) == [f"{path}:test/0"]
    assert len(set(test.groups)) == 12  # no patient ids: every image its own


def test_a_file_that_is_not_medmnist_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="not a MedMNIST file"):
        load_data(tmp_path / "other.npz", 28)
    np.savez(tmp_path / "chest.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.array([[0], [3]]))
    with pytest.raises(DataError, match="is this PneumoniaMNIST"):
        load_data(tmp_path / "chest.npz:train", 28)


def test_the_estimator_and_the_cli_take_a_medmnist_file(medmnist, tmp_path, capsys):
    path, _, _ = medmnist
    with pytest.warns(UserWarning, match="no patient ids"):
        clf = PneumoniaCNN(**TINY).fit(str(path))
    assert clf.n_train_ == 48  # train + val
    model = tmp_path / "model"
    args = ["--backbone", "none", "--image-size", "32", "--filters", "4,8", "--dense-units", "8", "--epochs", "1",
            "--augmentation", "none", "--intensity-norm", "none", "--n-networks", "1",
            "--threshold", "0.5", "--validation-fraction", "0", "--quiet", "--no-tracking"]
    assert main(["train", str(path), "--model-out", str(model), *args]) == 0
    assert main(["evaluate", str(model), str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["n_images"] == 12  # the test split
    assert main(["predict", str(model), f"{path}:val"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 8 and lines[0].startswith(f"{path}:val/0\t")
    assert main(["calibrate", str(model), str(path), "--model-out", str(tmp_path / "c"),
                 "--no-tracking"]) == 2
    assert "name the one to use" in capsys.readouterr().err
    assert main(["stress", str(model), str(path), "--json", "--severities", "1",
                 "--perturbations", "blur"]) == 0
    # strict JSON: the test split is all PNEUMONIA here, so its ROC AUC is null, not NaN
    stress = json.loads(capsys.readouterr().out.strip().splitlines()[-1],
                        parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert stress["summary"]["clean_roc_auc"] is None


def test_run_says_what_it_trained_and_evaluated_on(split_root, tmp_path, capsys):
    args = ["--backbone", "none", "--image-size", "32", "--filters", "4,8", "--dense-units", "8", "--epochs", "1",
            "--augmentation", "none", "--intensity-norm", "none", "--n-networks", "1",
            "--threshold", "0.5", "--validation-fraction", "0.25", "--quiet", "--no-tracking"]
    assert main(["run", str(split_root), "--out", str(tmp_path), *args]) == 0
    out = capsys.readouterr().out
    n_train = _count(split_root, "train") + _count(split_root, "val")
    assert f"Training on {n_train} images" in out and "chest_xray/train+val" in out
    assert f"evaluating on {split_root}:test" in out
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["n_images"] == _count(split_root, "test")


def _nih_csv(tmp_path, synthetic_dir, header=True):
    """An NIH ChestX-ray14-style label file: Image Index, Finding Labels, Patient ID."""
    files = sorted(synthetic_dir.rglob("*.jpeg"))
    (tmp_path / "images").mkdir()
    rows = []
    for i, f in enumerate(files):
        shutil.copy(f, tmp_path / "images" / f"{i:05d}.jpeg")
        normal = f.parent.name == "NORMAL"
        label = "No Finding" if normal else ("Pneumonia|Effusion" if i % 2 else "Pneumonia")
        if i % 7 == 0:
            label = "Cardiomegaly"  # neither class: left out
        rows.append((f"{i:05d}.jpeg", label, f"P{i // 2}", normal))
    text = ("Image Index,Finding Labels,Patient ID\n" if header else "") + "".join(
        f"{a},{b},{c}\n" for a, b, c, _ in rows)
    (tmp_path / "labels.csv").write_text(text)
    return tmp_path / "labels.csv", rows


NIH_MAP = {"No Finding": "NORMAL", "Pneumonia": "PNEUMONIA"}


def test_a_label_csv_maps_labels_and_takes_patients_from_its_column(synthetic_dir, tmp_path):
    csv, rows = _nih_csv(tmp_path, synthetic_dir)
    with pytest.warns(UserWarning, match=r"rows have labels .* left out: 'Cardiomegaly' \(9\)"):
        data = load_data(csv, 32, label_map=NIH_MAP, image_root=tmp_path / "images")
    kept = [r for r in rows if r[1] != "Cardiomegaly"]
    assert len(data) == len(kept)
    by_name = {r[0]: r for r in kept}
    for path, label, group in zip(data.paths, data.y, data.groups):
        name, _, patient, normal = by_name[path.rsplit("/", 1)[1]]
        assert label == ("NORMAL" if normal else "PNEUMONIA") and group == patient
    with pytest.raises(DataError, match=r"not NORMAL / PNEUMONIA .* 'Pneumonia' .*--label-map"):
        load_data(csv, 32, image_root=tmp_path / "images")


def test_a_headerless_csv_relative_paths_and_bad_rows(synthetic_dir, tmp_path):
    files = sorted(synthetic_dir.rglob("*.jpeg"))[:6]
    lines = [f"{f},{f.parent.name.lower()}" for f in files]
    (tmp_path / "plain.csv").write_text("\n".join(lines) + "\n")
    data = load_csv(tmp_path / "plain.csv", 32)
    assert list(data.paths) == [str(f) for f in files]
    assert list(data.y) == [f.parent.name for f in files]
    (tmp_path / "twice.csv").write_text(f"path,label\n{files[0]},NORMAL\n{files[0]},PNEUMONIA\n")
    with pytest.raises(DataError, match="labelled both NORMAL and PNEUMONIA"):
        load_csv(tmp_path / "twice.csv", 32)
    (tmp_path / "elsewhere.csv").write_text("path,label\nimg.png,0\n")
    with pytest.raises(DataError, match="none of its 1 image files exist.*--image-root"):
        load_csv(tmp_path / "elsewhere.csv", 32)


def test_csv_options_on_other_sources_and_bad_columns_are_refused(synthetic_dir, tmp_path):
    """Options that would be ignored are refused: the data would be read another way."""
    with pytest.raises(DataError, match=r"label_map \(--label-map\) apply to CSV"):
        load_data(synthetic_dir, 32, label_map=NIH_MAP)
    files = sorted(synthetic_dir.rglob("*.jpeg"))[:4]
    (tmp_path / "a.csv").write_text("path,label\n" + "".join(
        f"{f},{f.parent.name}\n" for f in files))
    with pytest.raises(DataError, match="2 or 3 CSV columns"):
        load_csv(tmp_path / "a.csv", 32, columns=["path", "label", "patient", "site"])


def test_a_csv_film_under_both_labels_is_warned_about(synthetic_dir, tmp_path):
    files = sorted(synthetic_dir.rglob("*.jpeg"))
    normal = next(f for f in files if f.parent.name == "NORMAL")
    copy = tmp_path / "copy.jpeg"
    shutil.copy(normal, copy)
    others = [f for f in files if f != normal][:8]
    rows = [f"{f},{f.parent.name}" for f in others] + [f"{normal},NORMAL", f"{copy},PNEUMONIA"]
    (tmp_path / "b.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="appear in more than one class"):
        load_csv(tmp_path / "b.csv", 32)


def test_a_medmnist_file_with_more_labels_than_images_is_refused(tmp_path):
    """Joined train+val labels would shift onto the wrong images (issue 22, finding 8)."""
    X = np.zeros((6, 28, 28), np.uint8)
    np.savez(tmp_path / "bad.npz", train_images=X, train_labels=np.zeros((7, 1), np.uint8),
             val_images=X, val_labels=np.zeros((6, 1), np.uint8))
    with pytest.raises(DataError, match="7 labels for 6 images"):
        load_data(str(tmp_path / "bad.npz") + ":train", 28)
    with pytest.raises(DataError, match="7 labels for 6 images"):
        load_data(str(tmp_path / "bad.npz"), 28, role="train")


def test_predict_on_a_split_root_reads_its_test_split_as_evaluate_does(split_root, fitted_tiny,
                                                                      tmp_path, capsys):
    """It scored every train+val film, silently, where evaluate refused (issue 20, item 7)."""
    import shutil

    fitted_tiny.save(tmp_path / "model")
    assert main(["predict", str(tmp_path / "model"), str(split_root)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    n_test = len(list((split_root / "test").rglob("*.jpeg")))
    assert len(rows) == n_test and all("/test/" in r for r in rows)
    no_test = tmp_path / "no_test"
    shutil.copytree(split_root, no_test)
    shutil.rmtree(no_test / "test")
    assert main(["predict", str(tmp_path / "model"), str(no_test)]) == 2
    assert "has no test split" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "model"), f"{no_test}:val"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(
        list((split_root / "val").rglob("*.jpeg")))
