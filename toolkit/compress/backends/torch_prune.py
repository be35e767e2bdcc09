"""Magnitude pruning with ``torch.nn.utils.prune``: per-layer L1, global L1, and Ln-structured.

Each method prunes every Linear/Conv weight of a clone, fine-tunes on the members **with the masks in
place** (``prune`` reparametrizes ``weight = weight_orig * weight_mask`` through a forward pre-hook, so
pruned weights stay zero while the rest train), then calls ``prune.remove`` so the zeros are baked into a
plain ``weight`` parameter. The baked weights are counted: a layer with fewer zeros than torch's own
rounding of ``sparsity`` (``round(amount * n)`` weights or slices) raises
:class:`~toolkit.errors.CompressionError`.

* ``torch_l1_unstructured``: ``prune.l1_unstructured`` per layer, ``sparsity`` of each layer's weights.
* ``torch_global_unstructured``: ``prune.global_unstructured`` with ``L1Unstructured`` over all layers
  together: ``sparsity`` of all weights, the per-layer sparsity follows the weights' magnitudes.
* ``torch_ln_structured``: ``prune.ln_structured`` zeroes whole slices along ``dim`` (0: output channels /
  rows, 1: input channels / columns) ranked by their ``n``-norm. The classifier's outputs are the classes,
  so the last layer is always pruned along its inputs (dim 1) instead. The zeroed slices are not removed
  (use ``nni_l1norm`` / ``nni_l2norm`` / ``nni_fpgm`` / ``nni_taylor`` to really shrink the layers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError

_FINE_TUNE = "Epochs of fine-tuning on the members with the pruning masks in place (0 = none)"


class L1UnstructuredConfig(MethodConfig):
    """Per-layer unstructured L1 pruning: ``sparsity`` of every layer's weights, smallest magnitudes first."""

    method: Literal["torch_l1_unstructured"] = "torch_l1_unstructured"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of the weights of every Linear/Conv layer set "
                                                             "to zero (smallest |w| first)")


class GlobalUnstructuredConfig(MethodConfig):
    """Global unstructured L1 pruning: ``sparsity`` of all weights, ranked across layers."""

    method: Literal["torch_global_unstructured"] = "torch_global_unstructured"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of all Linear/Conv weights set to zero, ranked "
                                                             "together across layers by |w|")


class LnStructuredConfig(MethodConfig):
    """Structured pruning: ``sparsity`` of the slices along ``dim`` of every layer, smallest ``n``-norm first."""

    method: Literal["torch_ln_structured"] = "torch_ln_structured"
    fine_tune_epochs: int = Field(2, ge=0, description=_FINE_TUNE)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of the slices (channels) along dim zeroed in "
                                                             "every Linear/Conv layer")
    n: float = Field(2.0, ge=1.0, description="Order of the norm ranking the slices (1, 2, ..., inf)")
    dim: Literal[0, 1] = Field(0, description="0: output channels / rows; 1: input channels / columns. The "
                                              "classifier is always pruned along its inputs (its outputs are the "
                                              "classes)")


def _expected(n: int, amount: float) -> int:
    """How many of ``n`` weights (or slices) torch prunes for ``sparsity``: ``round(amount * n)``."""
    return int(round(amount * n))


def _finish(model, config, data, layers) -> tuple[float, int]:
    """Fine-tune with the masks in place, then bake them in with ``prune.remove``."""
    prune = common.prune()
    if config.sparsity > 0 and all(bool(mod.weight_mask.all()) for _, mod in layers):
        raise CompressionError(f"{config.method}: sparsity {config.sparsity:g} masks nothing (torch prunes "
                               "round(sparsity x size) weights or channels per layer); use a larger sparsity")
    seconds, epochs = common.fine_tune(model, data, config)
    for _, mod in layers:
        prune.remove(mod, "weight")
    return seconds, epochs


def _apply_l1(model, config: L1UnstructuredConfig, data) -> MethodOutput:
    prune = common.prune()
    layers = common.prunable_layers(model)
    for _, mod in layers:
        prune.l1_unstructured(mod, "weight", amount=config.sparsity)
    seconds, epochs = _finish(model, config, data, layers)
    sparsity = {}
    for name, mod in layers:
        common.check_zeros("torch_l1_unstructured", f"{name}.weight", mod.weight, _expected(mod.weight.numel(),
                                                                                            config.sparsity))
        sparsity[f"{name}.weight"] = common.zero_fraction(mod.weight)
    return MethodOutput(model=model, framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"layer_sparsity": sparsity})


def _apply_global(model, config: GlobalUnstructuredConfig, data) -> MethodOutput:
    prune = common.prune()
    layers = common.prunable_layers(model)
    prune.global_unstructured([(mod, "weight") for _, mod in layers], pruning_method=prune.L1Unstructured,
                              amount=config.sparsity)
    seconds, epochs = _finish(model, config, data, layers)
    total = sum(mod.weight.numel() for _, mod in layers)
    zeros = sum(int((mod.weight == 0).sum()) for _, mod in layers)
    want = _expected(total, config.sparsity)
    if zeros < want:
        raise CompressionError(f"torch_global_unstructured left {zeros} zero weights instead of at least {want} "
                               f"of {total}")
    sparsity = {f"{name}.weight": common.zero_fraction(mod.weight) for name, mod in layers}
    return MethodOutput(model=model, framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"layer_sparsity": sparsity})


def _zero_slices(weight, dim: int) -> int:
    """Slices along ``dim`` that are entirely zero."""
    other = [d for d in range(weight.dim()) if d != dim]
    return int(((weight.detach() != 0).sum(dim=other) == 0).sum())


def _apply_ln(model, config: LnStructuredConfig, data) -> MethodOutput:
    prune = common.prune()
    layers = common.prunable_layers(model)
    last = common.classifier_name(model)
    dims = {name: (1 if name == last else config.dim) for name, _ in layers}
    for name, mod in layers:
        prune.ln_structured(mod, "weight", amount=config.sparsity, n=config.n, dim=dims[name])
    seconds, epochs = _finish(model, config, data, layers)
    pruned = {}
    for name, mod in layers:
        d = dims[name]
        want, got = _expected(mod.weight.shape[d], config.sparsity), _zero_slices(mod.weight, d)
        if got < want:
            raise CompressionError(f"torch_ln_structured left {got} zero slices along dim {d} of {name}.weight "
                                   f"instead of at least {want} of {mod.weight.shape[d]}")
        pruned[f"{name}.weight"] = {"dim": d, "zero_slices": got, "slices": int(mod.weight.shape[d])}
    return MethodOutput(model=model, framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"pruned_slices": pruned})


_EXPORTS = ("onnx", "ptl", "pte")
_NOOP = {"sparsity": 0.0, "fine_tune_epochs": 0}

L1_UNSTRUCTURED = Method(
    name="torch_l1_unstructured", backend="torch", kind="prune", framework="torch", config_cls=L1UnstructuredConfig,
    apply=_apply_l1, exports=_EXPORTS,
    description="torch.nn.utils.prune.l1_unstructured on every Linear/Conv weight (sparsity per layer), fine-tuning "
                "on the members with the masks in place, prune.remove to bake the zeros in.",
    targets=lambda c: {"sparsity": c.sparsity},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop=_NOOP,
)

GLOBAL_UNSTRUCTURED = Method(
    name="torch_global_unstructured", backend="torch", kind="prune", framework="torch",
    config_cls=GlobalUnstructuredConfig, apply=_apply_global, exports=_EXPORTS,
    description="torch.nn.utils.prune.global_unstructured with L1Unstructured over all Linear/Conv weights "
                "together (sparsity of all weights), fine-tuning with the masks in place, prune.remove.",
    targets=lambda c: {"sparsity": c.sparsity},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop=_NOOP,
)

LN_STRUCTURED = Method(
    name="torch_ln_structured", backend="torch", kind="prune", framework="torch", config_cls=LnStructuredConfig,
    apply=_apply_ln, exports=_EXPORTS,
    description="torch.nn.utils.prune.ln_structured: zeroes a sparsity fraction of the channels (dim 0: outputs, 1: inputs) of "
                "every Linear/Conv weight by n-norm, the classifier along its inputs; fine-tuning with the masks in "
                "place, prune.remove. Zeroed channels stay in the tensors (no shrinking: see nni_l1norm).",
    targets=lambda c: {"sparsity": c.sparsity},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
    noop=_NOOP,
)
