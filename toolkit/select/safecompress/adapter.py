"""The thin per-framework layer under the (numpy) SafeCompress loop.

An adapter wraps one working model and offers what the loop needs, with masks as numpy bool arrays keyed by
weight name (the names :func:`toolkit.models.torch_nets.weight_arrays` / ``keras_nets.weight_arrays`` use):

* ``sparse_shapes()`` — the sparsified tensors: every ``Linear``/``Conv1d``/``Conv2d`` weight (torch) or
  every layer ``kernel`` of ``Dense``/``Conv2D`` (Keras). Biases (and any other parameter) stay dense.
* ``weights()`` / ``set_weights(arrays)`` / ``set_masks(masks)`` — read or write those tensors; install
  masks and zero what they drop.
* ``train(x, y, steps, lr, seed)`` — ``steps`` optimizer steps of masked SGD (masks re-applied after every
  step) with a fresh optimizer state; returns the mean loss. The loss is cross-entropy or the configured
  entropy regularizer.
* ``gradients(x, y)`` — the dense gradient ``dL/dw`` of the sparsified tensors on one batch.
* ``snapshot()`` / ``restore(state)`` — all model weights (biases included), opaque.
* ``reinitialize(seed)`` — fresh random weights of the same architecture (paper footnote 5).
* ``predict_proba(x)``.

The working model never carries mask objects: masks live in the adapter (a torch optimizer hook, Keras
mask variables), so the model handed back is an ordinary model whose dropped weights are exact zeros.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from toolkit.registry import Registry

ADAPTERS = Registry("SafeCompress framework adapter")
ADAPTERS.register("torch", "toolkit.select.safecompress.torch_adapter:TorchAdapter")
ADAPTERS.register("keras", "toolkit.select.safecompress.keras_adapter:KerasAdapter")


class ModelAdapter(Protocol):
    framework: str
    model: Any

    def sparse_shapes(self) -> dict[str, tuple[int, ...]]: ...
    def weights(self) -> dict[str, np.ndarray]: ...
    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...
    def set_masks(self, masks: dict[str, np.ndarray]) -> None: ...
    def train(self, x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int) -> float: ...
    def gradients(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]: ...
    def snapshot(self) -> Any: ...
    def restore(self, state: Any) -> None: ...
    def reinitialize(self, seed: int) -> None: ...
    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


def steps_for(epochs: float, n: int, batch_size: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``n`` samples (at least one step if epochs > 0)."""
    if epochs <= 0:
        return 0
    return max(1, math.ceil(epochs * n / batch_size))


class BatchStream:
    """Seeded mini-batch indices of a fixed size, reshuffling at each epoch boundary.

    Batches always hold ``min(batch_size, n)`` samples (an epoch's tail is completed from the next
    permutation), so compiled training steps see one shape and fractional-epoch budgets are exact.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n = int(n)
        self.size = min(int(batch_size), self.n)
        self.rng = np.random.default_rng(seed)
        self._perm = self.rng.permutation(self.n)
        self._pos = 0

    def next(self) -> np.ndarray:
        out = []
        need = self.size
        while need:
            if self._pos >= self.n:
                self._perm = self.rng.permutation(self.n)
                self._pos = 0
            take = self._perm[self._pos:self._pos + need]
            self._pos += len(take)
            need -= len(take)
            out.append(take)
        return np.concatenate(out)
