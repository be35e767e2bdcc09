"""NNI 3.0 pruners: Level (unstructured), L1Norm / L2Norm / FPGM (structured) and Taylor (training-aware).

* ``nni_level``: ``LevelPruner`` masks ``sparsity`` of every Linear/Conv weight by magnitude. The model is
  fine-tuned on the members **through NNI's wrappers** (they multiply each weight by its mask in the forward
  pass), then unwrapped with the masks multiplied into the weights. The shapes do not change.
* ``nni_l1norm`` / ``nni_l2norm`` / ``nni_fpgm``: ``L1NormPruner`` / ``L2NormPruner`` / ``FPGMPruner`` mask
  ``sparsity`` of the output channels (conv filters, Linear rows) of every layer but the classifier, whose
  outputs are the classes. ``ModelSpeedup`` then **removes** the masked channels and the matching inputs of
  the next layer, so the model really shrinks; the shrunk model is fine-tuned on the members.
* ``nni_taylor``: ``TaylorPruner`` trains the model on the members for ``importance_epochs`` epochs through
  NNI's evaluator, accumulating the first-order Taylor importance ``(gradient * weight)^2`` of each output
  channel, masks the least important, then ``ModelSpeedup`` and fine-tuning as above.

NNI 3.0's ``ModelSpeedup`` fails on torch 2.13 unless it is given the FX graph: it is called as
``ModelSpeedup(model, dummy_input, masks, graph_module=torch.fx.symbolic_trace(model))`` (the model must be
FX-traceable). NNI prunes ``floor(sparsity * channels)`` channels per layer: every pruned layer is checked
to have lost exactly its masked channels, and the parameter count to have dropped, or
:class:`~toolkit.errors.CompressionError` is raised. The dummy input is a seeded sample of members.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.backends import nni_common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError

_FINE_TUNE = "Epochs of fine-tuning on the members after pruning (0 = none)"
_CHANNELS = ("Fraction of the output channels (conv filters, Linear rows) removed from every Linear/Conv layer "
             "but the classifier; NNI rounds down per layer")


class LevelConfig(MethodConfig):
    """Unstructured magnitude pruning of every Linear/Conv weight (masks baked in, shapes unchanged)."""

    method: Literal["nni_level"] = "nni_level"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning on the members with the masks applied "
                                                       "by NNI's wrappers (0 = none)")
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of the weights of every Linear/Conv layer set "
                                                               "to zero (smallest |w| first)")


class L1NormConfig(MethodConfig):
    """Filter pruning by L1 norm, then ModelSpeedup."""

    method: Literal["nni_l1norm"] = "nni_l1norm"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description=_CHANNELS)


class L2NormConfig(MethodConfig):
    """Filter pruning by L2 norm, then ModelSpeedup."""

    method: Literal["nni_l2norm"] = "nni_l2norm"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description=_CHANNELS)


class FPGMConfig(MethodConfig):
    """Filter pruning by geometric median (the most replaceable filters), then ModelSpeedup."""

    method: Literal["nni_fpgm"] = "nni_fpgm"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description=_CHANNELS)


class TaylorConfig(MethodConfig):
    """Training-aware filter pruning by first-order Taylor importance, then ModelSpeedup."""

    method: Literal["nni_taylor"] = "nni_taylor"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description=_CHANNELS)
    importance_epochs: int = Field(1, ge=1, description="Epochs of training on the members during which "
                                                        "TaylorPruner accumulates (gradient x weight)^2 importance "
                                                        "before masking")


def _pruning():
    return nni_common.nni().compression.pruning


def _data_free(cls_name: str):
    """``mask(model, config_list, config, data) -> (masks, extra)`` for a pruner that needs no data."""

    def mask(model, config_list, config, data):
        pruner = getattr(_pruning(), cls_name)(model, config_list)
        _, masks = pruner.compress()
        pruner.unwrap_model()
        return masks, {}

    return mask


def _taylor_masks(model, config_list, config, data):
    """TaylorPruner: train ``importance_epochs`` on the members through NNI's evaluator, then mask."""
    training = nni_common.MemberTraining(model, data, config, "nni_taylor")
    steps = config.importance_epochs * training.steps_per_epoch
    pruner = _pruning().TaylorPruner(model, config_list, training.evaluator, training_steps=steps)
    _, masks = pruner.compress()
    pruner.unwrap_model()
    if training.epochs != config.importance_epochs:
        raise CompressionError(f"nni_taylor: NNI trained {training.epochs} epochs to estimate importance instead "
                               f"of {config.importance_epochs}")
    return masks, {"importance_steps": steps, "importance_epochs": training.epochs,
                   "importance_seconds": round(training.seconds, 4)}


def _out_channels(mod) -> int:
    return int(mod.weight.shape[0])


def _speedup(model, masks, data, config, what: str):
    """Shrink ``model`` with NNI's ModelSpeedup (the FX graph given, as torch 2.13 requires)."""
    torch = common.torch()
    from nni.compression.speedup import ModelSpeedup

    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises assorted types for untraceable models
        raise CompressionError(f"{what}: ModelSpeedup needs a torch.fx-traceable model: {common.one_line(exc)}") from None
    dummy = common.calibration_batch(data, 8, config.seed)
    with common.quiet():
        try:
            # NNI sets its default speedup logger to INFO (a line per graph node): log to ours instead.
            shrunk = ModelSpeedup(model, dummy, masks, graph_module=graph,
                                  logger=logging.getLogger(__name__)).speedup_model()
        except Exception as exc:  # NNI's speedup raises assorted types (asserts, KeyErrors...)
            raise CompressionError(f"{what}: NNI ModelSpeedup failed: {common.one_line(exc)}") from None
    return shrunk.eval()


def _check_shrunk(model, before: dict[str, int], masks, sparsity: float, what: str) -> dict[str, dict[str, int]]:
    """Each pruned layer must have lost exactly its masked output channels, at least floor(sparsity * n)."""
    shapes = {}
    for name, n in before.items():
        mask = masks[name]["weight"]
        kept = int(mask.reshape(mask.shape[0], -1).any(dim=1).sum())
        want_removed = math.floor(sparsity * n + 1e-9)
        got = _out_channels(model.get_submodule(name))
        if got != kept or n - kept < want_removed:
            raise CompressionError(f"{what}: layer {name} has {got} output channels after ModelSpeedup; the masks "
                                   f"kept {kept} of {n} and at least {want_removed} should have gone")
        shapes[name] = {"before": n, "after": got}
    if sparsity > 0 and all(v["after"] == v["before"] for v in shapes.values()):
        raise CompressionError(f"{what}: sparsity {sparsity:g} removed no channel (NNI prunes floor(sparsity x "
                               f"channels) per layer; layers have {sorted(before.values())} channels)")
    return shapes


def _apply_level(model, config: LevelConfig, data) -> MethodOutput:
    layers = common.prunable_layers(model)
    with common.quiet():
        pruner = _pruning().LevelPruner(model, [{"op_names": [n for n, _ in layers], "sparse_ratio": config.sparsity}])
        _, masks = pruner.compress()
    # The wrappers apply the masks in the forward pass: fine-tuning through them keeps pruned weights out.
    seconds, epochs = common.fine_tune(model, data, config)
    pruner.unwrap_model()
    torch = common.torch()
    sparsity = {}
    with torch.no_grad():
        for name, mod in layers:
            mod.weight.mul_(masks[name]["weight"].to(mod.weight.dtype))
            want = math.floor(config.sparsity * mod.weight.numel() + 1e-9)
            common.check_zeros("nni_level", f"{name}.weight", mod.weight, want)
            sparsity[f"{name}.weight"] = common.zero_fraction(mod.weight)
    if config.sparsity > 0 and not any(sparsity.values()):
        raise CompressionError(f"nni_level: sparsity {config.sparsity:g} zeroed no weight")
    return MethodOutput(model=model.eval(), framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"layer_sparsity": sparsity})


def _structured(name: str, mask):
    """``apply`` of a structured pruner: ``mask`` (NNI pruner -> masks) on the layers before the classifier,
    ModelSpeedup, shape checks, fine-tuning."""

    def apply(model, config, data) -> MethodOutput:
        last = common.classifier_name(model)
        hidden = [(n, m) for n, m in common.prunable_layers(model) if n != last]
        if not hidden:
            raise CompressionError(f"{name} prunes output channels of layers before the classifier; the model has "
                                   "only the classifier")
        before = {n: _out_channels(m) for n, m in hidden}
        config_list = [{"op_names": [n for n, _ in hidden], "sparse_ratio": config.sparsity}]
        with common.quiet():
            masks, extra = mask(model, config_list, config, data)
        masks = {n: {t: m for t, m in d.items() if m is not None} for n, d in masks.items()}
        model = _speedup(model, masks, data, config, name)
        extra["channels"] = _check_shrunk(model, before, masks, config.sparsity, name)
        seconds, epochs = common.fine_tune(model, data, config)
        # Training-aware pruners train while estimating importance: those epochs count as fine-tuning too.
        return MethodOutput(model=model, framework="torch",
                            fine_tune_epochs=epochs + extra.get("importance_epochs", 0),
                            fine_tune_seconds=seconds + extra.get("importance_seconds", 0.0), extra=extra)

    return apply


def _params_target(config) -> dict[str, float]:
    # Every layer but the classifier keeps at most (1 - s) of its outputs, so each weight matrix touching a
    # pruned layer keeps at most (1 - s) of its entries (between two pruned layers (1 - s)^2). Half of s is
    # promised, leaving room for what cannot shrink: the classifier's bias and NNI's rounding down.
    return {"params_ratio": 1.0 - config.sparsity / 2}


_EXPORTS = ("onnx", "ptl", "pte")
_SPEEDUP = ("then ModelSpeedup (FX graph) removes them so the layers really shrink, and the smaller model is "
            "fine-tuned on the members")

LEVEL = Method(
    name="nni_level", backend="nni", kind="prune", framework="torch", config_cls=LevelConfig, apply=_apply_level,
    exports=_EXPORTS,
    description="NNI LevelPruner: masks sparsity of every Linear/Conv weight by magnitude, fine-tunes on the members "
                "through NNI's mask wrappers, bakes the zeros in (no shrinking).",
    targets=lambda c: {"sparsity": c.sparsity},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop={"sparsity": 0.0, "fine_tune_epochs": 0},
)

L1NORM = Method(
    name="nni_l1norm", backend="nni", kind="prune", framework="torch", config_cls=L1NormConfig,
    apply=_structured("nni_l1norm", _data_free("L1NormPruner")), exports=_EXPORTS,
    description="NNI L1NormPruner: masks the output channels with the smallest L1 norm in every layer but the "
                "classifier, " + _SPEEDUP + ".",
    targets=_params_target,
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop={"sparsity": 0.0, "fine_tune_epochs": 0},
)

L2NORM = Method(
    name="nni_l2norm", backend="nni", kind="prune", framework="torch", config_cls=L2NormConfig,
    apply=_structured("nni_l2norm", _data_free("L2NormPruner")), exports=_EXPORTS,
    description="NNI L2NormPruner: masks the output channels with the smallest L2 norm in every layer but the "
                "classifier, " + _SPEEDUP + ".",
    targets=_params_target,
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop={"sparsity": 0.0, "fine_tune_epochs": 0},
)

FPGM = Method(
    name="nni_fpgm", backend="nni", kind="prune", framework="torch", config_cls=FPGMConfig,
    apply=_structured("nni_fpgm", _data_free("FPGMPruner")), exports=_EXPORTS,
    description="NNI FPGMPruner: masks the output channels closest to the geometric median of their layer (the most "
                "replaceable) in every layer but the classifier, " + _SPEEDUP + ".",
    targets=_params_target,
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop={"sparsity": 0.0, "fine_tune_epochs": 0},
)

TAYLOR = Method(
    name="nni_taylor", backend="nni", kind="prune", framework="torch", config_cls=TaylorConfig,
    apply=_structured("nni_taylor", _taylor_masks), exports=_EXPORTS,
    description="NNI TaylorPruner (training-aware): trains on the members for importance_epochs through NNI's "
                "TorchEvaluator while accumulating (gradient x weight)^2 per output channel, masks the least "
                "important channels of every layer but the classifier, " + _SPEEDUP + ". Reported epochs and "
                "seconds include the importance training.",
    targets=_params_target,
    example={"sparsity": 0.5, "fine_tune_epochs": 1, "importance_epochs": 1},
    # No no-op: the importance estimation trains the model even at sparsity 0.
    noop=None,
)
