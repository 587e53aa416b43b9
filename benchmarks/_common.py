"""Helpers shared by the benchmark scripts (data location, the lab's reference model)."""

import os
import platform
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chest_xray" / "train"


def data_dir(arg: str | None) -> Path:
    """--data, else $PNEUMONIA_CNN_DATA, else ../shared/data/chest_xray/train."""
    path = Path(arg or os.environ.get("PNEUMONIA_CNN_DATA") or DEFAULT_DATA).resolve()
    if not path.is_dir():
        raise SystemExit(f"data folder {path} not found: pass --data chest_xray/train")
    return path


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def build_reference_model(meta=None, compile_kwargs=None):
    """The lab's reference CNN: 150x150 RGB, Conv 32-64-128-128 (3x3, valid) each with 2x2
    max pooling, Flatten, Dense 512, sigmoid; RMSprop 1e-4 (Chollet's cats-vs-dogs CNN)."""
    import keras
    from keras import layers

    inputs = keras.Input((150, 150, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="lab_reference")
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def reference_classifier(epochs: int = 30, random_state: int = 0):
    """The reference model as a scikeras classifier: batch 20, ``epochs`` epochs."""
    from scikeras.wrappers import KerasClassifier

    return KerasClassifier(model=build_reference_model, batch_size=20, epochs=epochs,
                           random_state=random_state, verbose=0)


def to_rgb(X):
    """Grayscale (n, h, w, 1) -> (n, h, w, 3), as the lab read its JPEGs."""
    import numpy as np

    return np.repeat(X, 3, axis=-1)
