"""Models: one spec, two frameworks; training, prediction and safe persistence.

Framework backends are modules registered in :data:`FRAMEWORKS` (``torch``, ``keras``, ``tflite``); each
provides ``owns(model)``, ``predict_proba(model, x)``, ``clone(model)``, ``n_params(model)`` and (for
trainable frameworks) ``build(spec, seed)``, ``train(model, x, y, recipe)``, ``save``/``load``.
The functions here dispatch on the framework of the model object, found without importing a framework
that is not already loaded.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from toolkit.errors import ModelError
from toolkit.models.spec import ModelSpec, TrainRecipe
from toolkit.registry import Registry

FRAMEWORKS = Registry("framework")
FRAMEWORKS.register("torch", "toolkit.models.torch_nets", trainable=True, weights_suffix=".safetensors")
FRAMEWORKS.register("keras", "toolkit.models.keras_nets", trainable=True, weights_suffix=".weights.h5")
FRAMEWORKS.register("tflite", "toolkit.models.tflite_model", trainable=False)


def backend(framework: str) -> ModuleType:
    return FRAMEWORKS.get(framework)


def framework_of(model) -> str:
    """``'torch'``, ``'keras'`` or ``'tflite'`` for a model object; :class:`ModelError` otherwise."""
    import sys

    for name in FRAMEWORKS:
        # A framework whose package is not imported cannot own the object: skip without importing it.
        if name == "torch" and "torch" not in sys.modules:
            continue
        if name == "keras" and "tf_keras" not in sys.modules:
            continue
        if backend(name).owns(model):
            return name
    raise ModelError(f"unsupported model object of type {type(model).__module__}.{type(model).__name__}; "
                     f"expected one of: {', '.join(FRAMEWORKS)}")


def build_model(spec: ModelSpec, framework: str, seed: int = 0):
    b = backend(framework)
    if not FRAMEWORKS.meta(framework).get("trainable"):
        raise ModelError(f"framework {framework!r} cannot build models")
    if hasattr(spec, "build"):  # specs outside ModelSpec build themselves (text_nets.TextModelSpec)
        return spec.build(framework, seed)
    return b.build(spec, seed)


def train_model(model, x: np.ndarray, y: np.ndarray, recipe: TrainRecipe, **kw):
    """Train any trainable model in place with ``recipe`` (seeded) and return it."""
    fw = framework_of(model)
    if not FRAMEWORKS.meta(fw).get("trainable"):
        raise ModelError(f"a {fw} model cannot be trained")
    return backend(fw).train(model, x, y, recipe, **kw)


def predict_proba(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of any supported in-memory model."""
    return backend(framework_of(model)).predict_proba(model, x, batch_size)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict_proba(model, x), axis=1) == np.asarray(y)))


def clone_model(model):
    return backend(framework_of(model)).clone(model)


def n_params(model) -> int:
    return backend(framework_of(model)).n_params(model)


def save_model(model, spec: ModelSpec, directory, name: str = "model"):
    """Save ``model`` under ``directory`` in its framework's safe format; returns the weights path."""
    from pathlib import Path

    fw = framework_of(model)
    suffix = FRAMEWORKS.meta(fw).get("weights_suffix")
    if not suffix:
        raise ModelError(f"{fw} models are saved by exporting them, not with save_model")
    return backend(fw).save(model, spec, Path(directory) / f"{name}{suffix}")


def load_model(path):
    """Load a model saved by :func:`save_model` (framework read from its JSON sidecar). ``(model, spec)``."""
    import json
    from pathlib import Path

    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    try:
        fw = json.loads(meta_path.read_text())["framework"]
    except Exception:
        raise ModelError(f"{path} has no readable model sidecar {meta_path.name}; "
                         "safe formats are .safetensors (torch) and .weights.h5 (keras) saved by safecompress") from None
    return backend(fw).load(path)


def train_reference_model(spec: ModelSpec, framework: str, x: np.ndarray, y: np.ndarray, recipe: TrainRecipe):
    """Build with ``recipe.seed`` and train: the one seeded routine behind every target/reference model."""
    model = build_model(spec, framework, seed=recipe.seed)
    batch = recipe.batch_size_for(getattr(spec, "arch", None))
    if batch != recipe.batch_size:
        recipe = recipe.model_copy(update={"batch_size": batch})
    return train_model(model, x, y, recipe)


__all__ = ["FRAMEWORKS", "ModelSpec", "TrainRecipe", "accuracy", "backend", "build_model", "clone_model",
           "framework_of", "load_model", "n_params", "predict_proba", "save_model", "train_model",
           "train_reference_model"]
