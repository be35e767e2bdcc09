"""tfmot magnitude pruning: ``prune_low_magnitude`` + ``UpdatePruningStep`` fine-tuning + ``strip_pruning``.

tfmot prunes *during training* only, at the steps its schedule names: with its default ``frequency=100``
and a small member set (600 digits = 10 steps per epoch) it silently prunes nothing. The schedule here is
therefore fitted to the real number of fine-tuning steps (begin at the first step, reach the target at
``end_fraction`` of them, update the masks about ten times on the way), and the stripped model is measured:
a kernel that misses the target raises :class:`~toolkit.errors.CompressionError`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from toolkit.compress.backends import tfmot_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput

#: UpdatePruningStep sets the step to 0 before training and each training batch first increments it,
#: so the first batch runs at step 1.
FIRST_STEP = 1
#: Mask updates aimed for while the sparsity ramps up (capped by tfmot's own default frequency of 100 steps).
MASK_UPDATES = 10
MAX_FREQUENCY = 100


class PruneConfig(MethodConfig):
    """Magnitude pruning of every Dense/Conv kernel to ``sparsity`` (per layer)."""

    method: Literal["tfmot_prune"] = "tfmot_prune"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning on the members; tfmot prunes during "
                                                       "them, so 0 prunes nothing (a no-op only with sparsity 0)")
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Target fraction of zero weights in every kernel")
    schedule: Literal["constant", "polynomial"] = Field(
        "polynomial", description="constant: prune to the target at every mask update (ConstantSparsity); "
                                  "polynomial: ramp from initial_sparsity to the target (PolynomialDecay)")
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0, description="Sparsity at the first step (polynomial only)")
    power: float = Field(3.0, gt=0, description="Exponent of the polynomial ramp (polynomial only)")
    end_fraction: float = Field(0.75, gt=0, le=1, description="Fraction of the fine-tuning steps by which the target "
                                                              "is reached; the rest fine-tune with fixed masks")
    frequency: int | None = Field(None, ge=1, description="Steps between mask updates; None fits it to the number "
                                                          "of fine-tuning steps (tfmot's default is 100)")

    @model_validator(mode="after")
    def _ramp_goes_up(self):
        if self.schedule == "polynomial" and self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity {self.initial_sparsity} exceeds sparsity {self.sparsity}")
        return self


def fit_schedule(config: PruneConfig, total_steps: int) -> dict[str, int]:
    """``begin_step``/``end_step``/``frequency`` fitted to ``total_steps`` fine-tuning steps.

    The end step lies on a mask update (``begin + k * frequency``), so the polynomial ramp's last update
    applies the final sparsity; it is at least one update after the begin step.
    """
    begin = FIRST_STEP
    end_wanted = max(begin, round(total_steps * config.end_fraction))
    freq = config.frequency or max(1, min(MAX_FREQUENCY, (end_wanted - begin) // MASK_UPDATES))
    end = begin + freq * max(1, (end_wanted - begin) // freq)
    return {"begin_step": begin, "end_step": end, "frequency": freq, "fine_tune_steps": total_steps}


def make_schedule(config: PruneConfig, steps: dict[str, int]):
    sparsity = common.tfmot().sparsity.keras
    if config.schedule == "constant":
        return sparsity.ConstantSparsity(config.sparsity, begin_step=steps["begin_step"], end_step=steps["end_step"],
                                         frequency=steps["frequency"])
    return sparsity.PolynomialDecay(config.initial_sparsity, config.sparsity, begin_step=steps["begin_step"],
                                    end_step=steps["end_step"], power=config.power, frequency=steps["frequency"])


def prune(model, config: PruneConfig, data, what: str = "tfmot_prune"):
    """Prune a clone of ``model``; returns ``(stripped model, seconds, epochs, schedule steps)``.

    Raises CompressionError when a kernel's measured sparsity misses ``config.sparsity``.
    """
    sparsity = common.tfmot().sparsity.keras
    steps = fit_schedule(config, config.fine_tune_epochs * common.steps_per_epoch(data, config))
    wrapped = sparsity.prune_low_magnitude(common.clone(model), pruning_schedule=make_schedule(config, steps))
    seconds, epochs = common.fine_tune(wrapped, data, config, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(wrapped)
    context = (f"{steps['fine_tune_steps']} fine-tuning steps, mask updates every {steps['frequency']} steps from "
               f"step {steps['begin_step']} to {steps['end_step']}; tfmot prunes only while fine-tuning: "
               "give more epochs or data, or a smaller frequency")
    common.check_sparsity(stripped, config.sparsity, what, context)
    return stripped, seconds, epochs, steps


def _apply(model, config: PruneConfig, data) -> MethodOutput:
    pruned, seconds, epochs, steps = prune(model, config, data)
    return MethodOutput(model=pruned, framework="keras", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"pruning_schedule": config.schedule, **steps})


PRUNE = Method(
    name="tfmot_prune", backend="tfmot", kind="prune", framework="keras", config_cls=PruneConfig, apply=_apply,
    exports=("tflite", "onnx"),
    description="Magnitude pruning with tfmot prune_low_magnitude (constant or polynomial-decay schedule fitted to "
                "the fine-tuning steps), UpdatePruningStep fine-tuning on the members, strip_pruning.",
    targets=lambda c: {"sparsity": c.sparsity},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop={"sparsity": 0.0, "fine_tune_epochs": 0},
)
