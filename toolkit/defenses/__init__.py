"""Defenses against membership inference that plug into training.

This package is core (it may be imported by training code; it imports no orchestration layer). Importing it
imports no framework: registry entries load lazily.

* :data:`REGULARIZERS` — loss regularizers by name: ``re1`` and ``re2``, SafeCompress's entropy-based
  losses (Eqs. 8 and 9, :mod:`toolkit.defenses.entropy`). An entry is an object with
  ``torch_loss(beta)`` (a ``loss_fn(logits, targets, batch_idx)`` for :func:`toolkit.models.torch_nets.train`)
  and ``keras_loss(beta)`` (a ``loss(y_true, y_pred)`` usable in ``model.compile``).
* :data:`DEFENSES` — defended training steps by name (``none``, ``dp``, ``advreg``, ``dmp``, ``kd``, ``re1``,
  ``re2``, ``label_smoothing``, ``early_stopping``). An entry is a :class:`~toolkit.defenses.base.Defense`
  subclass: ``make_defense(name, params).fit(model, data, recipe, epochs=, masks=, task_loss=)`` trains a
  torch or Keras model in place and returns a :class:`~toolkit.defenses.base.DefenseReport` (see
  ``docs/defenses.md``).
* :mod:`toolkit.defenses.wemem` — WeMem-style primitives for iterative pruning: per-round data scheduling and
  memorable-sample scores / hold-out (used by :mod:`toolkit.select.iterative`).
"""

from __future__ import annotations

from typing import Any

from toolkit.registry import Registry

REGULARIZERS = Registry("regularizer")
REGULARIZERS.register("re1", "toolkit.defenses.entropy:RE1",
                      description="cross-entropy minus beta x mean output entropy of the batch (SafeCompress Eq. 8)")
REGULARIZERS.register("re2", "toolkit.defenses.entropy:RE2",
                      description="cross-entropy minus beta x mean output entropy of the batch's misclassified "
                                  "samples (SafeCompress Eq. 9)")

DEFENSES = Registry("defense")
_D = "toolkit.defenses"
# name, target, frameworks, needs, description
_TABLE = [
    ("none", f"{_D}.plain:NoDefense", ("torch", "keras"), (),
     "plain training on the task loss: the undefended fine-tuning step"),
    ("dp", f"{_D}.dp:DPSGD", ("torch", "keras"), (),
     "DP-SGD: Poisson sampling, per-sample clipping, Gaussian noise; epsilon from Opacus's accountant "
     "(torch: Opacus; Keras: vectorized per-example gradients)"),
    ("advreg", f"{_D}.advreg:AdvReg", ("torch", "keras"), ("reference",),
     "min-max adversarial regularization (Nasr et al. 2018) against an inference model on members vs population"),
    ("dmp", f"{_D}.dmp:DMP", ("torch", "keras"), ("reference",),
     "distillation for membership privacy (Shejwalkar & Houmansadr 2021): train only on the teacher's "
     "lowest-entropy soft-labelled population samples"),
    ("kd", f"{_D}.plain:KnowledgeDistillation", ("torch", "keras"), ("teacher",),
     "knowledge distillation from a teacher: (1-alpha) CE + alpha T^2 KL (Hinton et al. 2015)"),
    ("re1", f"{_D}.plain:RE1Defense", ("torch", "keras"), (),
     "SafeCompress re1 entropy regularizer (Eq. 8) as a training step"),
    ("re2", f"{_D}.plain:RE2Defense", ("torch", "keras"), (),
     "SafeCompress re2 entropy regularizer (Eq. 9) as a training step"),
    ("label_smoothing", f"{_D}.plain:LabelSmoothing", ("torch", "keras"), (),
     "cross-entropy to smoothed targets (1-eps) onehot + eps/C"),
    ("early_stopping", f"{_D}.early_stopping:EarlyStopping", ("torch", "keras"), (),
     "stop on the loss of a held-out split of the members (or the population), keep the best weights"),
]
for _name, _target, _fws, _needs, _desc in _TABLE:
    DEFENSES.register(_name, _target, frameworks=_fws, needs=_needs, description=_desc)


def make_defense(name: str, params: dict[str, Any] | None = None, **overrides: Any):
    """The defense ``name`` configured from ``params`` (validated; unknown keys raise a one-line ConfigError)."""
    return DEFENSES.get(name)(params, **overrides)


def describe_defenses() -> list[dict[str, Any]]:
    """JSON-ready records of every defense: name, frameworks, needs, description, config fields."""
    from toolkit.compress.config import describe_fields

    out = []
    for name in DEFENSES:
        meta = DEFENSES.meta(name)
        out.append({"name": name, "frameworks": list(meta["frameworks"]), "needs": list(meta["needs"]),
                    "description": meta["description"], "config": describe_fields(DEFENSES.get(name).config_cls)})
    return out


__all__ = ["DEFENSES", "REGULARIZERS", "describe_defenses", "make_defense"]
