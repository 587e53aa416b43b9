"""Brief training on a sample of the real chest X-rays (skipped without them).

.ci/run sets PNEUMONIA_CNN_DATA to ../shared/data/chest_xray/train.
"""

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumonia_cnn import PneumoniaCNN, load_image_folder
from pneumonia_cnn.data import grouped_split


def test_real_data_loads_with_patients(real_train_dir):
    data = load_image_folder(real_train_dir, 64)
    counts = data.class_counts()
    assert set(counts) == {"NORMAL", "PNEUMONIA"} and sum(counts.values()) == len(data)
    assert len(np.unique(data.groups)) < len(data)  # several images per patient exist


def test_model_learns_on_unseen_patients(real_train_dir):
    data = load_image_folder(real_train_dir, 64)
    rng = np.random.default_rng(0)
    # a small budget: ~600 images, 64x64, a few epochs
    idx = rng.choice(len(data), size=min(600, len(data)), replace=False)
    X, y, g = data.X[idx], data.y[idx], data.groups[idx]
    tr, te = grouped_split(y, g, 0.25, random_state=0)
    assert set(g[tr]).isdisjoint(g[te])
    clf = PneumoniaCNN(image_size=64, filters=(16, 32, 64), epochs=6, augmentation="light",
                       validation_fraction=0.0, random_state=0)
    clf.fit(X[tr], y[tr])
    auc = roc_auc_score(y[te] == "PNEUMONIA", clf.predict_proba(X[te])[:, 1])
    assert auc > 0.85, f"validation ROC AUC {auc:.3f}"
