"""Defenses that only change the loss: ``none`` (plain training), ``label_smoothing``, ``re1`` / ``re2``, ``kd``.

* ``none``: the task loss (cross-entropy unless a ``task_loss`` is given) — the undefended fine-tuning step,
  so "prune + fine-tune" and "prune + defended fine-tune" run through the same code.
* ``label_smoothing`` (Szegedy et al. 2016): cross-entropy to ``(1 - eps) onehot(y) + eps / C``; members'
  outputs are pulled away from one-hot, which shrinks the confidence gap membership attacks read. torch uses
  ``F.cross_entropy(label_smoothing=eps)``.
* ``re1`` / ``re2``: SafeCompress's entropy regularizers (Eqs. 8, 9), the :data:`toolkit.defenses.REGULARIZERS`
  entries themselves (``toolkit/defenses/entropy.py``) run as a training step.
* ``kd``: knowledge distillation (Hinton et al. 2015) from ``DefenseData.teacher``:
  ``(1 - alpha) CE + alpha T^2 KL(teacher_T || student_T)``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from toolkit.defenses.base import Defense, DefenseConfig, keras_compile_fit, mean_loss, torch_fit
from toolkit.defenses.losses import CrossEntropy, Distillation


class LossDefense(Defense):
    """A defense that is a per-sample loss trained with the ordinary loop (``torch_nets.train`` / Keras ``fit``)."""

    def loss(self, data):
        """The task loss this defense trains with (``task_loss`` when the defense accepts one)."""
        raise NotImplementedError

    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        loss = task_loss if self.accepts_task_loss else self.loss(data)
        ran, steps = torch_fit(model, data.x, data.y, recipe, epochs, mean_loss(loss.torch(data.x, data.y)),
                               masks=masks)
        return ran, steps, {}

    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        loss = task_loss if self.accepts_task_loss else self.loss(data)
        ran, steps, _ = keras_compile_fit(model, data.x, recipe, epochs, loss.keras(data.x, data.y), masks=masks)
        return ran, steps, {}


class NoDefense(LossDefense):
    name = "none"
    description = "plain training on the task loss (cross-entropy unless a task_loss is given): the undefended step"
    accepts_task_loss = True


class LabelSmoothingConfig(DefenseConfig):
    smoothing: float = Field(0.1, gt=0, lt=1, description="eps: mass spread uniformly over the classes")


class LabelSmoothing(LossDefense):
    name = "label_smoothing"
    description = "cross-entropy to (1 - eps) onehot(y) + eps / C (Szegedy et al. 2016)"
    config_cls = LabelSmoothingConfig

    def loss(self, data):
        return CrossEntropy(smoothing=self.config.smoothing, name="label_smoothing")


class EntropyConfig(DefenseConfig):
    beta: float = Field(0.1, ge=0, description="weight of the entropy term (the paper's 0.1)")


class EntropyDefense(Defense):
    """Training with one of the :data:`~toolkit.defenses.REGULARIZERS` (their losses are batch-level)."""

    config_cls = EntropyConfig
    regularizer: ClassVar[str] = ""

    def _entry(self):
        from toolkit.defenses import REGULARIZERS

        return REGULARIZERS.get(self.regularizer)

    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        ran, steps = torch_fit(model, data.x, data.y, recipe, epochs, self._entry().torch_loss(self.config.beta),
                               masks=masks)
        return ran, steps, {}

    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        import numpy as np

        from toolkit.frameworks import tf as _tf

        tf = _tf()
        labels = tf.constant(np.asarray(data.y, np.int64))
        reg = self._entry().keras_loss(self.config.beta)

        def loss(idx, logits):
            return reg(tf.gather(labels, tf.cast(tf.reshape(idx, [-1]), tf.int64)), logits)

        ran, steps, _ = keras_compile_fit(model, data.x, recipe, epochs, loss, masks=masks)
        return ran, steps, {}


class RE1Defense(EntropyDefense):
    name = "re1"
    description = "SafeCompress re1 (Eq. 8): cross-entropy minus beta x the batch's mean output entropy"
    regularizer = "re1"


class RE2Defense(EntropyDefense):
    name = "re2"
    description = ("SafeCompress re2 (Eq. 9): cross-entropy minus beta x the mean output entropy of misclassified "
                   "samples")
    regularizer = "re2"


class DistillationConfig(DefenseConfig):
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of teacher and student")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft (teacher) term; 1 - alpha on the labels")


class KnowledgeDistillation(LossDefense):
    name = "kd"
    description = "knowledge distillation from DefenseData.teacher: (1-alpha) CE + alpha T^2 KL (Hinton et al. 2015)"
    config_cls = DistillationConfig
    needs = ("teacher",)

    def loss(self, data):
        return Distillation(data.teacher, self.config.temperature, self.config.alpha)
