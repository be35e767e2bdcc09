"""Plumbing shared by the tfmot backends: the lazy tfmot import, seeded fine-tuning on the members, checks.

Nothing here imports TensorFlow at module import time (``safecompress methods`` must stay light).
"""

from __future__ import annotations

import math
import time

import numpy as np

from toolkit.errors import CompressionError

#: Tolerance on a per-layer sparsity target, on top of tfmot's rounding of ``size * sparsity`` to whole weights.
SPARSITY_TOLERANCE = 1e-3


def tfmot():
    """``tensorflow_model_optimization``, imported after TensorFlow is configured for legacy Keras."""
    from toolkit.frameworks import keras

    keras()  # sets TF_USE_LEGACY_KERAS=1 and pins threads before tfmot pulls in TensorFlow
    import tensorflow_model_optimization as tfmot_mod

    return tfmot_mod


def clone(model):
    """A fresh copy: tfmot wrappers take over (and change) the layer objects they wrap."""
    from toolkit.models import keras_nets

    return keras_nets.clone(model)


def fine_tune_recipe(data, config):
    """The target's recipe (optimizer, lr, batch size) with the method's seed and epochs."""
    return data.recipe.model_copy(update={"seed": config.seed, "epochs": max(1, config.fine_tune_epochs)})


def steps_per_epoch(data, config) -> int:
    return math.ceil(len(data.x) / fine_tune_recipe(data, config).batch_size)


def fine_tune(model, data, config, callbacks=None) -> tuple[float, int]:
    """Train ``model`` (a tfmot-wrapped tf_keras model) on the members only; ``(seconds, epochs)``.

    ``config.fine_tune_epochs == 0`` trains nothing. Data order is seeded by ``config.seed``.
    """
    from toolkit.models import keras_nets

    epochs = int(config.fine_tune_epochs)
    if epochs == 0:
        return 0.0, 0
    t0 = time.perf_counter()
    keras_nets.train(model, data.x, data.y, fine_tune_recipe(data, config), epochs=epochs, callbacks=callbacks)
    return time.perf_counter() - t0, epochs


def kernels(model) -> dict[str, np.ndarray]:
    """Named Dense/Conv kernels (also inside QAT wrappers), as :func:`toolkit.compress.measure` sees them."""
    from toolkit.models import keras_nets

    return keras_nets.weight_arrays(model)


def check_sparsity(model, target: float, what: str, context: str) -> dict[str, float]:
    """Zero fraction of every kernel; :class:`CompressionError` if one misses ``target``."""
    fractions = {}
    for name, w in kernels(model).items():
        frac = float(np.mean(w == 0))
        fractions[name] = frac
        if frac < target - 1.0 / w.size - SPARSITY_TOLERANCE:
            raise CompressionError(f"{what} reached sparsity {frac:.3f} in {name} instead of {target:g} ({context})")
    if target > 0 and not fractions:
        raise CompressionError(f"{what} found no Dense/Conv kernel to prune")
    return fractions


def check_clusters(model, n_clusters: int, layers, what: str) -> dict[str, int]:
    """Distinct values of each named kernel; :class:`CompressionError` if one has more than ``n_clusters``."""
    counts = {}
    for name, w in kernels(model).items():
        counts[name] = int(len(np.unique(w)))
        if name in layers and counts[name] > n_clusters:
            raise CompressionError(f"{what} left {counts[name]} distinct values in {name}, "
                                   f"more than the {n_clusters} clusters asked for")
    return counts
