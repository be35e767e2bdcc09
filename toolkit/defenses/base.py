"""What every defense shares: a typed seeded config, the data of one training step, one ``fit`` verb, a report.

A defense **is** a (fine-)tuning step: ``Defense(config).fit(model, data, recipe, epochs=, masks=, task_loss=)``
trains ``model`` in place and returns a :class:`DefenseReport`. It is meant for any training step of the
toolkit: pretraining, the fine-tuning after pruning (pass ``masks`` so pruned weights stay exactly zero), or a
student's training in distillation (pass a :class:`~toolkit.defenses.losses.Distillation` ``task_loss``).

* ``model``: a torch ``nn.Module`` or a tf-keras model (``toolkit.models.framework_of`` decides); a defense
  lists the frameworks it supports in ``frameworks`` and refuses others with a one-line :class:`ConfigError`.
* ``data``: :class:`DefenseData` — the members this step trains on, plus what some defenses need:
  ``reference`` (the population pool: DMP's unlabeled reference set, AdvReg's reference non-members, early
  stopping's validation set; **never** the audit's non-members, which would leak the evaluation into
  training) and ``teacher`` (KD, DMP). A tuple ``(x, y)`` is accepted for plain data.
* ``recipe``: :class:`~toolkit.models.TrainRecipe` (optimizer, lr, batch size, epochs). The defense's ``seed``
  replaces the recipe's: data order, initializations, noise and hold-out splits all derive from it.
* ``masks``: ``{weight name: bool array}`` (names of ``torch_nets.weight_arrays`` / ``keras_nets.weight_arrays``);
  masked-out weights are zeroed before training and after every optimizer step (:class:`TorchMasks`,
  :class:`KerasMasks`). :func:`masks_of` reads the non-zero pattern of a pruned model.
* ``task_loss``: the per-sample loss being protected (default cross-entropy). Defenses that wrap a training
  loop (``none``, ``early_stopping``, ``dp``, ``advreg``) accept one, so KD + DP is DP-SGD on the distillation
  loss; defenses that *are* a loss (``label_smoothing``, ``kd``, ``dmp``, ``re1``, ``re2``) refuse it.

Keras training passes **sample indices** as ``y`` and the losses look labels (and teacher outputs) up by index:
the Keras counterpart of the ``batch_idx`` argument of ``torch_nets.train``'s ``loss_fn``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError, DataError


class DefenseConfig(ConfigModel):
    """Base of every defense config: unknown keys refused, a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="seeds the data order, initializations, noise and hold-out splits of the step "
                                     "(replaces the recipe's seed)")


@dataclass(eq=False)
class DefenseData:
    """The data of one training step: members ``x``/``y``; optional ``reference`` (population) and ``teacher``."""

    x: np.ndarray
    y: np.ndarray
    reference: Any = None
    teacher: Any = None

    def __post_init__(self):
        from toolkit.data.dataset import validate_arrays
        from toolkit.data.split import SplitArrays, assert_disjoint

        self.x, self.y = validate_arrays(self.x, self.y, "defense training data")
        if self.reference is not None:
            if not hasattr(self.reference, "x") or not hasattr(self.reference, "y"):
                raise DataError("defense reference data must have arrays x and y (e.g. a SplitArrays)")
            rx, ry = validate_arrays(self.reference.x, self.reference.y, "defense reference data")
            if rx.shape[1:] != self.x.shape[1:]:
                raise DataError(f"reference samples have shape {rx.shape[1:]}, training samples {self.x.shape[1:]}")
            assert_disjoint(rx, self.x, "the reference set", "the training members")
            self.reference = SplitArrays(rx, ry)

    @classmethod
    def of(cls, data) -> "DefenseData":
        if isinstance(data, DefenseData):
            return data
        if isinstance(data, tuple) and len(data) == 2:
            return cls(*data)
        if hasattr(data, "x") and hasattr(data, "y"):
            return cls(data.x, data.y)
        raise DataError(f"defense data must be a DefenseData, an (x, y) tuple or have x and y; got "
                        f"{type(data).__name__}")


@dataclass
class DefenseReport:
    """What one defended training step did. ``details`` are JSON-ready (epsilon, selected counts, stop epoch...);
    ``arrays`` hold per-sample outputs (e.g. DMP's selected indices) and are left out of :meth:`to_dict`."""

    defense: str
    framework: str
    config: dict[str, Any]
    epochs: int
    steps: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"defense": self.defense, "framework": self.framework, "config": self.config, "epochs": self.epochs,
                "steps": self.steps, "seconds": round(self.seconds, 4), "details": self.details}


def parse_defense_config(cls: type[DefenseConfig], values: Any, what: str) -> DefenseConfig:
    from toolkit.compress.config import validation_message

    if isinstance(values, cls):
        return values
    if isinstance(values, BaseModel):
        values = values.model_dump()
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"the {what} config must be a mapping, got {type(values).__name__}")
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, what, cls)) from None


class Defense:
    """Base class: subclasses set ``name``, ``config_cls``, ``frameworks``, ``needs`` and implement
    ``_fit_torch`` / ``_fit_keras(model, data, recipe, epochs, masks, task_loss) -> (epochs, steps, details)``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_cls: ClassVar[type[DefenseConfig]] = DefenseConfig
    frameworks: ClassVar[tuple[str, ...]] = ("torch", "keras")
    #: DefenseData fields that must be present: "reference", "teacher".
    needs: ClassVar[tuple[str, ...]] = ()
    #: Whether the defense wraps a training loop around a caller's per-sample loss (see the module docstring).
    accepts_task_loss: ClassVar[bool] = False

    def __init__(self, config: DefenseConfig | dict[str, Any] | None = None, **overrides: Any):
        if isinstance(config, DefenseConfig):
            config = config.model_dump()
        self.config = parse_defense_config(self.config_cls, {**(config or {}), **overrides},
                                           f"{self.name} defense")
        #: arrays of the last fit (also in the report)
        self.arrays_: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def fit(self, model, data, recipe=None, *, epochs: int | None = None, masks: dict[str, np.ndarray] | None = None,
            task_loss=None) -> DefenseReport:
        """Train ``model`` in place with this defense; see the module docstring for the arguments."""
        from toolkit.models import TrainRecipe, framework_of

        fw = framework_of(model)
        if fw not in self.frameworks:
            raise ConfigError(f"defense {self.name!r} supports {' and '.join(self.frameworks)} models, not {fw} "
                              f"models" + self.unsupported_hint(fw))
        data = DefenseData.of(data)
        for need in self.needs:
            if getattr(data, need) is None:
                what = ("the population pool, never the audit non-members" if need == "reference"
                        else "the trained big model")
                raise ConfigError(f"defense {self.name!r} needs DefenseData.{need} ({what})")
        if task_loss is not None and not self.accepts_task_loss:
            raise ConfigError(f"defense {self.name!r} defines its own loss and cannot take a task_loss "
                              f"({getattr(task_loss, 'name', type(task_loss).__name__)})")
        recipe = (recipe or TrainRecipe()).model_copy(update={"seed": self.config.seed})
        n_epochs = recipe.effective_epochs if epochs is None else int(epochs)
        if n_epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {n_epochs}")
        if task_loss is None and self.accepts_task_loss:
            from toolkit.defenses.losses import CrossEntropy

            task_loss = CrossEntropy()
        self.arrays_ = {}
        t0 = time.perf_counter()
        ran, steps, details = getattr(self, f"_fit_{fw}")(model, data, recipe, n_epochs, masks, task_loss)
        if task_loss is not None:
            details = {"task_loss": task_loss.describe(), **details}
        return DefenseReport(self.name, fw, self.config.model_dump(mode="json"), int(ran), int(steps),
                             time.perf_counter() - t0, details, dict(self.arrays_))

    def unsupported_hint(self, framework: str) -> str:
        return ""


# ---------------------------------------------------------------------------------------------------- masks
def masks_of(model) -> dict[str, np.ndarray]:
    """``{weight name: weight != 0}`` of a (pruned) torch or Keras model: the pattern fine-tuning must keep."""
    from toolkit.models import backend, framework_of

    return {name: np.asarray(w) != 0 for name, w in backend(framework_of(model)).weight_arrays(model).items()}


def _check_mask(name: str, mask, shape) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ConfigError(f"mask {name!r} has shape {mask.shape}, the weight has {tuple(shape)}")
    return mask


class TorchMasks:
    """Keeps masked-out weights of a torch model at zero: ``apply()`` now, ``attach(optimizer)`` after each step."""

    def __init__(self, model, masks: dict[str, np.ndarray]):
        from toolkit.frameworks import torch as _torch

        torch = _torch()
        self.torch = torch
        params = {}
        for mod_name, mod in model.named_modules():
            w = getattr(mod, "weight", None)
            if f"{mod_name}.weight" in masks:
                if not isinstance(w, torch.nn.Parameter):
                    raise ConfigError(f"{mod_name}.weight is not a plain parameter (a torch.nn.utils.prune "
                                      "reparametrization?): call prune.remove first")
                params[f"{mod_name}.weight"] = w
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise ConfigError(f"mask names {unknown[:3]} match no Linear/Conv weight; known: "
                              f"{', '.join(sorted(params)) or 'none'}")
        self.pairs = [(p, torch.from_numpy(_check_mask(n, masks[n], p.shape).astype(np.float32)).to(p.dtype))
                      for n, p in params.items()]

    def apply(self) -> None:
        with self.torch.no_grad():
            for p, m in self.pairs:
                p.mul_(m)

    def attach(self, optimizer):
        """Re-mask after every ``optimizer.step()`` (momentum, weight decay or DP noise would revive weights)."""
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())


class KerasMasks:
    """Keeps masked-out kernels of a Keras model at zero: ``apply()`` now, ``callback()`` after each batch."""

    def __init__(self, model, masks: dict[str, np.ndarray]):
        from toolkit.frameworks import tf as _tf

        tf = _tf()
        pairs, seen = [], set()
        for layer in model.layers:
            name = f"{layer.name}.kernel"
            if name in masks:
                kernel = getattr(layer, "kernel", None)
                if kernel is None:
                    raise ConfigError(f"layer {layer.name!r} has no kernel to mask")
                pairs.append((kernel, tf.constant(_check_mask(name, masks[name], kernel.shape).astype(np.float32))))
                seen.add(name)
        unknown = sorted(set(masks) - seen)
        if unknown:
            raise ConfigError(f"mask names {unknown[:3]} match no Dense/Conv kernel of the Keras model")
        self.pairs = pairs

    def apply(self) -> None:
        for kernel, m in self.pairs:
            kernel.assign(kernel * m)

    def callback(self):
        from toolkit.frameworks import keras as _keras

        return _keras().callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: self.apply())


# ---------------------------------------------------------------------------------------------------- training
class StopTraining(Exception):
    """Raised by an ``on_epoch`` hook to end :func:`torch_fit` early (``torch_nets.train`` has no stop flag)."""


def torch_fit(model, x, y, recipe, epochs: int, loss_fn, *, masks: dict | None = None, on_epoch=None,
              optimizer=None) -> tuple[int, int]:
    """``torch_nets.train`` with ``loss_fn`` (mean of the batch), masks kept and early stop; ``(epochs, steps)``."""
    import math

    from toolkit.models import torch_nets

    opt = optimizer or torch_nets.make_optimizer(model, recipe)
    if masks:
        keeper = TorchMasks(model, masks)
        keeper.apply()
        keeper.attach(opt)
    ran = 0

    def hook(epoch, m):
        nonlocal ran
        ran = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch, m)

    try:
        torch_nets.train(model, x, y, recipe, epochs=epochs, loss_fn=loss_fn, optimizer=opt, on_epoch=hook)
    except StopTraining:
        pass
    return ran, ran * math.ceil(len(y) / recipe.batch_size)


def keras_compile_fit(model, x, recipe, epochs: int, loss, *, masks: dict | None = None, callbacks=(),
                      validation_x=None, seed_offset: int = 0) -> tuple[int, int, Any]:
    """Compile ``model`` with ``loss(idx, logits)`` and fit on ``x`` with the sample indices as targets.

    With ``validation_x`` the validation targets are ``len(x) + arange(len(validation_x))`` (the loss must
    know both sets). Returns ``(epochs run, steps, keras History)``.
    """
    import math

    from toolkit.frameworks import keras as _keras
    from toolkit.models import keras_nets

    keras = _keras()
    model.compile(optimizer=keras_nets.make_optimizer(recipe), loss=loss)
    cbs = list(callbacks)
    if masks:
        keeper = KerasMasks(model, masks)
        keeper.apply()
        cbs.append(keeper.callback())
    keras.utils.set_random_seed(recipe.seed + seed_offset)
    idx = np.arange(len(x), dtype=np.int64)
    val = None
    if validation_x is not None:
        val = (np.asarray(validation_x, np.float32), len(x) + np.arange(len(validation_x), dtype=np.int64))
    if epochs == 0:
        return 0, 0, None
    hist = model.fit(np.asarray(x, np.float32), idx, epochs=epochs, batch_size=recipe.batch_size, shuffle=True,
                     verbose=0, callbacks=cbs, validation_data=val)
    ran = len(hist.history.get("loss", []))
    return ran, ran * math.ceil(len(x) / recipe.batch_size), hist


def mean_loss(per_sample_fn):
    """A ``torch_nets.train`` loss_fn (scalar) from a per-sample loss ``fn(logits, targets, idx)``."""

    def loss_fn(logits, targets, idx):
        return per_sample_fn(logits, targets, idx).mean()

    return loss_fn
