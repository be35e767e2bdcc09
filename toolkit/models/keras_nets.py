"""Keras (tf-keras, Keras 2) side of the reference models: build, train, predict, clone, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.errors import ModelError
from toolkit.frameworks import keras as _keras
from toolkit.models.spec import ModelSpec, TrainRecipe

NAME = "keras"


def owns(model) -> bool:
    import sys

    mod = sys.modules.get("tf_keras")
    return mod is not None and isinstance(model, mod.Model)


def build(spec: ModelSpec, seed: int = 0):
    """A ``tf_keras.Sequential`` for ``spec`` with weights drawn from ``seed``."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    layers: list = [L.InputLayer(input_shape=spec.input_shape)]
    if spec.arch == "mlp":
        layers.append(L.Flatten())
        for h in spec.hidden:
            layers.append(L.Dense(h, activation="relu"))
    else:
        h, w, _ = spec.input_shape
        for ch in spec.channels:
            layers += [L.Conv2D(ch, 3, padding="same", activation="relu"), L.MaxPooling2D(2)]
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ModelError(f"input {spec.input_shape} is too small for {len(spec.channels)} pooling stages")
        layers += [L.Flatten(), L.Dense(spec.dense, activation="relu")]
    layers.append(L.Dense(spec.n_classes))
    return keras.Sequential(layers)


def make_optimizer(recipe: TrainRecipe):
    keras = _keras()
    wd = recipe.effective_weight_decay or None
    if recipe.effective_optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=recipe.effective_lr, momentum=recipe.momentum, weight_decay=wd)
    return keras.optimizers.Adam(learning_rate=recipe.effective_lr, weight_decay=wd)


def compile_for_training(model, recipe: TrainRecipe, loss=None):
    keras = _keras()
    model.compile(optimizer=make_optimizer(recipe),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def train(model, x: np.ndarray, y: np.ndarray, recipe: TrainRecipe, epochs: int | None = None,
          callbacks=None, compile: bool = True, sample_weight: np.ndarray | None = None):
    """Train ``model`` in place with ``fit`` (seeded shuffling) and return it.

    ``compile=False`` keeps a compile done by the caller (tfmot wrappers, custom losses).
    """
    keras = _keras()
    keras.utils.set_random_seed(recipe.seed)
    if compile:
        compile_for_training(model, recipe)
    model.fit(np.asarray(x, np.float32), np.asarray(y, np.int64), epochs=recipe.effective_epochs if epochs is None else epochs,
              batch_size=recipe.batch_size, shuffle=True, verbose=0, callbacks=callbacks or [],
              sample_weight=sample_weight)
    return model


def predict_logits(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch_size):
        # Calling the model directly avoids predict()'s per-call tf.function overhead on small batches.
        out.append(np.asarray(model(np.asarray(x[i:i + batch_size], np.float32), training=False), np.float32))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_proba(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    from scipy.special import softmax

    out = predict_logits(model, x, batch_size).astype(np.float64)
    # A model may end in a softmax already (tfmot/QAT or user models): do not apply it twice.
    if out.size and np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return out.astype(np.float32)
    return softmax(out, axis=1).astype(np.float32)


def clone(model):
    """A fresh copy with the same weights. tfmot wrappers mutate the layers they wrap: always clone first."""
    import contextlib
    import sys

    keras = _keras()
    scope = contextlib.nullcontext()
    if any(type(layer).__module__.startswith("tensorflow_model_optimization") for layer in model.layers):
        # QAT models hold tfmot layers and quantizers: Keras can rebuild them only inside tfmot's scope.
        scope = sys.modules["tensorflow_model_optimization"].quantization.keras.quantize_scope()
    with scope:
        c = keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def n_params(model) -> int:
    return int(model.count_params())


def weight_arrays(model) -> dict[str, np.ndarray]:
    """Named kernels of Dense / Conv layers, as numpy.

    A tfmot quantize wrapper (QAT/PQAT/CQAT models) holds its Dense/Conv layer in ``.layer``; its float kernel
    *variable* (tracked by the wrapper) is reported under the inner layer's name: the inner ``layer.kernel``
    attribute is replaced by the last fake-quantized tensor on every call, so it is not read.
    """
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if inner is not None and hasattr(layer, "quantize_config"):
            kernel = next((w for w in layer.weights if w.name.split(":")[0].endswith(f"{inner.name}/kernel")), None)
            name = inner.name
        else:
            kernel, name = getattr(layer, "kernel", None), layer.name
        if kernel is not None:
            out[f"{name}.kernel"] = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
    return out


def save(model, spec: ModelSpec, path: str | Path) -> Path:
    """Save weights as HDF5 (``.weights.h5``) + the spec as JSON (``<path>.json``). No code is serialized."""
    from toolkit.io import atomic_path, atomic_write_json

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ModelError(f"keras weights must be saved to a '*.weights.h5' path, got {path.name}")
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))
    atomic_write_json(path.with_suffix(path.suffix + ".json"), {"framework": NAME, "spec": spec.model_dump(mode="json")})
    return path


def load(path: str | Path):
    """Rebuild from the JSON spec and load HDF5 weights. Returns ``(model, spec)``."""
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    try:
        meta = json.loads(meta_path.read_text())
        spec = ModelSpec(**meta["spec"])
    except Exception as exc:
        raise ModelError(f"cannot read model spec {meta_path}: {exc}") from None
    model = build(spec)
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise ModelError(f"cannot load weights {path}: {' '.join(str(exc).split())[:300]}") from None
    return model, spec
