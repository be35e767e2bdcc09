"""DMP, Distillation for Membership Privacy (Shejwalkar & Houmansadr, AAAI 2021).

1. A teacher is trained on the private members without protection (``DefenseData.teacher``; if absent, a
   copy of the model is trained on the members with the recipe).
2. The teacher labels an **unlabeled reference set** — ``DefenseData.reference``, the population pool; its
   labels are ignored, and it is never the audit's non-members — with its soft outputs.
3. Only the ``keep_fraction`` of reference samples with the **lowest entropy** of the teacher's output is kept:
   confidently predicted references carry little information specific to any member (the paper's
   selection by prediction entropy).
4. The model (the student, i.e. the released target) trains **only on those selected references**, towards the
   teacher's outputs at temperature ``T`` (``T^2 KL``): it never sees a member.

The selected indices (into the reference set) are in ``report.arrays["selected"]``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from toolkit.defenses.base import Defense, DefenseConfig, keras_compile_fit, mean_loss, torch_fit
from toolkit.defenses.losses import SoftTargets, soften
from toolkit.errors import ConfigError


class DMPConfig(DefenseConfig):
    keep_fraction: float = Field(0.5, gt=0, le=1, description="share of the reference set kept: the lowest-entropy "
                                                              "teacher predictions")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the soft labels and the student")


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, np.float64), 1e-30, 1.0)
    return -(p * np.log(p)).sum(axis=1)


class DMP(Defense):
    name = "dmp"
    description = ("distillation for membership privacy: the teacher (trained on the members) soft-labels the "
                   "population reference set, the student trains only on its lowest-entropy fraction")
    config_cls = DMPConfig
    needs = ("reference",)

    def select(self, teacher, reference_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(selected indices, soft labels of them at T, entropies of all)`` for a reference set."""
        from toolkit.models import predict_proba

        probs = predict_proba(teacher, reference_x)
        ent = entropy(probs)
        k = max(1, int(round(self.config.keep_fraction * len(ent))))
        selected = np.sort(np.argsort(ent, kind="stable")[:k])
        return selected, soften(probs[selected], self.config.temperature), ent

    def _teacher(self, model, data, recipe):
        if data.teacher is not None:
            return data.teacher, False
        from toolkit.models import clone_model, train_model

        # No teacher given: a copy of the model, trained (further) on the members without protection.
        teacher = clone_model(model)
        train_model(teacher, data.x, data.y, recipe)
        return teacher, True

    def _prepare(self, model, data, recipe):
        teacher, trained = self._teacher(model, data, recipe)
        selected, soft, ent = self.select(teacher, data.reference.x)
        self.arrays_["selected"] = selected
        self.arrays_["entropy"] = ent
        x = data.reference.x[selected]
        y = np.argmax(soft, axis=1)  # placeholder labels: the loss uses the soft targets only
        details = {"n_reference": int(len(ent)), "n_selected": int(len(selected)),
                   "entropy_threshold": float(ent[selected].max()), "teacher_trained_here": trained}
        return x, y, SoftTargets(soft, self.config.temperature, 1.0, "dmp"), details

    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        x, y, loss, details = self._prepare(model, data, recipe)
        if len(x) < 1:
            raise ConfigError("dmp selected no reference sample")
        ran, steps = torch_fit(model, x, y, recipe, epochs, mean_loss(loss.torch(x, y)), masks=masks)
        return ran, steps, details

    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        x, y, loss, details = self._prepare(model, data, recipe)
        ran, steps, _ = keras_compile_fit(model, x, recipe, epochs, loss.keras(x, y), masks=masks)
        return ran, steps, details
