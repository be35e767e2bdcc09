"""Per-sample task losses for both frameworks: cross-entropy (with label smoothing), distillation, soft targets.

A task loss is built for one training set ``(x, y)`` and returns **one loss per sample**:

* ``torch(x, y) -> fn(logits, targets, idx)``: ``idx`` are the batch's indices into ``x`` (the third argument
  of ``torch_nets.train``'s ``loss_fn``);
* ``keras(x, y) -> fn(idx, logits)``: Keras training passes sample indices as targets (see
  :mod:`toolkit.defenses.base`), so labels and teacher outputs are looked up by index.

Per-sample losses compose: DP-SGD clips per-sample gradients of whichever task loss it is given (KD-DP), AdvReg
adds its inference gain to it (KD-AdvReg). Teacher outputs enter as **log-probabilities**: ``log p`` differs
from the logits by a per-row constant, so ``softmax(log p / T) == softmax(z / T)`` and any model with
``predict_proba`` (torch, Keras, TFLite) can teach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log p`` with zeros floored (saturated float32 outputs), float32."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-30, None)).astype(np.float32)


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the distribution a model with these outputs has at temperature ``T``."""
    from scipy.special import softmax

    return softmax(log_probs(probs).astype(np.float64) / float(temperature), axis=1).astype(np.float32)


def smoothed_targets(y: np.ndarray, n_classes: int, smoothing: float) -> np.ndarray:
    """The targets label smoothing trains towards: ``(1 - eps) * onehot(y) + eps / C`` (numpy, for docs/tests)."""
    t = np.full((len(y), n_classes), smoothing / n_classes, dtype=np.float64)
    t[np.arange(len(y)), np.asarray(y)] += 1.0 - smoothing
    return t


@dataclass(frozen=True)
class CrossEntropy:
    """Cross-entropy to the labels; ``smoothing`` > 0 trains towards :func:`smoothed_targets` instead."""

    smoothing: float = 0.0
    name: str = "cross_entropy"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "smoothing": self.smoothing}

    def torch(self, x, y):
        from toolkit.frameworks import torch as _torch

        F = _torch().nn.functional
        eps = float(self.smoothing)

        def fn(logits, targets, idx=None):
            return F.cross_entropy(logits, targets, reduction="none", label_smoothing=eps)

        return fn

    def keras(self, x, y):
        from toolkit.frameworks import tf as _tf

        tf = _tf()
        labels = tf.constant(np.asarray(y, np.int64))
        eps = float(self.smoothing)

        def fn(idx, logits):
            yb = tf.gather(labels, tf.cast(tf.reshape(idx, [-1]), tf.int64))
            logp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=1)
            n = tf.shape(logp)[1]
            target = tf.one_hot(yb, n) * (1.0 - eps) + eps / tf.cast(n, tf.float32)
            return -tf.reduce_sum(target * logp, axis=1)

        return fn


@dataclass(frozen=True)
class SoftTargets:
    """``T^2 * KL(targets || softmax(logits / T))`` to fixed target distributions ``probs`` (one row per sample),
    optionally mixed with cross-entropy to the labels: ``(1 - alpha) * CE + alpha * T^2 * KL`` (Hinton et al.).

    ``probs`` are already at temperature ``T`` (see :func:`soften`). ``alpha = 1`` ignores the labels (DMP).
    """

    probs: np.ndarray
    temperature: float = 1.0
    alpha: float = 1.0
    name: str = "soft_targets"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature, "alpha": self.alpha}

    def _targets(self, x):
        p = np.asarray(self.probs, np.float32)
        if len(p) != len(x):
            raise ValueError(f"{len(p)} soft targets for {len(x)} samples")
        return p

    def torch(self, x, y):
        from toolkit.frameworks import torch as _torch

        torch = _torch()
        F = torch.nn.functional
        target = torch.from_numpy(self._targets(x))
        log_target = torch.from_numpy(log_probs(self._targets(x)))
        T, a = float(self.temperature), float(self.alpha)

        def fn(logits, targets, idx):
            logq = F.log_softmax(logits / T, dim=1)
            kl = (target[idx] * (log_target[idx] - logq)).sum(dim=1) * (T * T)
            if a >= 1.0:
                return kl
            return (1.0 - a) * F.cross_entropy(logits, targets, reduction="none") + a * kl

        return fn

    def keras(self, x, y):
        from toolkit.frameworks import tf as _tf

        tf = _tf()
        target = tf.constant(self._targets(x))
        log_target = tf.constant(log_probs(self._targets(x)))
        labels = tf.constant(np.asarray(y, np.int64))
        T, a = float(self.temperature), float(self.alpha)

        def fn(idx, logits):
            i = tf.cast(tf.reshape(idx, [-1]), tf.int64)
            logits = tf.cast(logits, tf.float32)
            logq = tf.nn.log_softmax(logits / T, axis=1)
            kl = tf.reduce_sum(tf.gather(target, i) * (tf.gather(log_target, i) - logq), axis=1) * (T * T)
            if a >= 1.0:
                return kl
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather(labels, i), logits=logits)
            return (1.0 - a) * ce + a * kl

        return fn


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from ``teacher`` (any model with ``predict_proba``): the teacher's outputs on the
    training set at temperature ``T`` become :class:`SoftTargets` with weight ``alpha`` (``1 - alpha`` on CE)."""

    teacher: Any
    temperature: float = 4.0
    alpha: float = 0.5
    name: str = "distillation"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature, "alpha": self.alpha}

    def soft_targets(self, x) -> SoftTargets:
        from toolkit.models import predict_proba

        probs = predict_proba(self.teacher, np.asarray(x))
        return SoftTargets(soften(probs, self.temperature), self.temperature, self.alpha, self.name)

    def torch(self, x, y):
        return self.soft_targets(x).torch(x, y)

    def keras(self, x, y):
        return self.soft_targets(x).keras(x, y)
