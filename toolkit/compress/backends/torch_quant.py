"""Post-training int8 quantization with ``torch.ao.quantization``: dynamic and static (calibrated).

* ``torch_dynamic_int8``: ``quantize_dynamic`` replaces every ``nn.Linear`` by a dynamically quantized
  Linear (int8 weights, activations quantized on the fly per batch). Convolutions stay float32: torch's
  dynamic quantization covers Linear (and recurrent) layers only.
* ``torch_static_int8``: FX graph mode ``prepare_fx`` with the default ``QConfigMapping`` of a backend
  (x86 by default: per-channel int8 weights, uint8 activations with histogram observers), calibration on a
  seeded sample of the **members**, ``convert_fx``. FX fuses Linear/Conv + ReLU by itself, so the same code
  serves the MLP and the CNN. Layout ops (the CNN's NHWC->NCHW ``permute``) are left unquantized, so the
  graph quantizes right before the first layer: this is also what lets the legacy ONNX exporter emit a
  QuantizeLinear/DequantizeLinear graph for the CNN.

Both verify that every layer they should quantize holds int8 weights (else
:class:`~toolkit.errors.CompressionError`) and report ``bits`` = 8 for them. torch.ao quantization is
deprecated upstream in favour of torchao's PT2E flow; its deprecation warnings are silenced here.

Export (checked): dynamic int8 -> TorchScript lite (``.ptl``) only (no ONNX symbolic for
``quantized::linear_dynamic``; ``torch.export`` refuses the packed params). Static int8 -> ``.ptl``, and
ONNX with the legacy exporter (``dynamo=False``; give ``output_names`` when using ``dynamic_axes``: the
exporter mistakes an FX ``GraphModule`` for a ScriptModule otherwise). Neither goes to ExecuTorch (``.pte``
needs PT2E quantization).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError

BITS = 8
_NO_FINE_TUNING = "Post-training quantization does not fine-tune: must be 0"


class DynamicInt8Config(MethodConfig):
    """Dynamic int8: int8 Linear weights, activations quantized per batch at run time."""

    method: Literal["torch_dynamic_int8"] = "torch_dynamic_int8"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description=_NO_FINE_TUNING)


class StaticInt8Config(MethodConfig):
    """Static int8: weights and activations, activation ranges calibrated on member samples."""

    method: Literal["torch_static_int8"] = "torch_static_int8"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description=_NO_FINE_TUNING)
    calibration_samples: int = Field(200, ge=1, description="Members drawn (seeded) to calibrate activation ranges")
    qconfig: Literal["x86", "fbgemm", "qnnpack", "onednn"] = Field(
        "x86", description="Backend whose default QConfigMapping is used (x86/fbgemm: per-channel weights, "
                           "reduce_range activations; qnnpack: per-tensor, for ARM/mobile)")


def _int8_layers(model, names: list[str], what: str) -> dict[str, int]:
    """``{"<layer>.weight": 8}`` for each named layer; CompressionError if one is not an int8 quantized layer."""
    from toolkit.models.torch_nets import quantized_layer_types

    torch = common.torch()
    qtypes = quantized_layer_types()
    bits = {}
    for name in names:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise CompressionError(f"{what}: layer {name} is missing from the quantized model") from None
        if not isinstance(mod, qtypes) or mod.weight().dtype != torch.qint8:
            raise CompressionError(f"{what} left layer {name} unquantized ({type(mod).__name__})")
        bits[f"{name}.weight"] = BITS
    return bits


def _apply_dynamic(model, config: DynamicInt8Config, data) -> MethodOutput:
    torch = common.torch()
    layers = common.prunable_layers(model)
    linear = [name for name, mod in layers if isinstance(mod, torch.nn.Linear)]
    if not linear:
        raise CompressionError("torch_dynamic_int8 quantizes Linear layers and the model has none")
    with common.quiet():
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    bits = _int8_layers(quantized, linear, "torch_dynamic_int8")
    floats = [f"{name} ({type(mod).__name__})" for name, mod in layers if name not in linear]
    notes = [f"dynamic quantization covers Linear layers only; float32 layers: {', '.join(floats)}"] if floats else []
    return MethodOutput(model=quantized.eval(), framework="torch", bits=bits, notes=notes)


def _apply_static(model, config: StaticInt8Config, data) -> MethodOutput:
    torch = common.torch()
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    names = [name for name, _ in common.prunable_layers(model)]
    x = common.calibration_batch(data, config.calibration_samples, config.seed)
    # Keep layout ops in float: the input is then quantized right before the first layer, not before the
    # permute (the legacy ONNX exporter cannot transpose a quantized tensor).
    mapping = get_default_qconfig_mapping(config.qconfig).set_object_type("permute", None)
    model.eval()
    with common.quiet():
        try:
            prepared = prepare_fx(model, mapping, (x[:1],))
        except Exception as exc:  # torch.fx raises assorted types for untraceable models
            raise CompressionError(f"torch_static_int8 cannot trace the model with torch.fx: {common.one_line(exc)}") from None
        with torch.no_grad():
            for i in range(0, len(x), 256):
                prepared(x[i:i + 256])
        quantized = convert_fx(prepared)
    bits = _int8_layers(quantized, names, "torch_static_int8")
    return MethodOutput(model=quantized.eval(), framework="torch", bits=bits,
                        extra={"calibration_samples": int(len(x)), "qconfig": config.qconfig})


DYNAMIC_INT8 = Method(
    name="torch_dynamic_int8", backend="torch", kind="quantize", framework="torch", config_cls=DynamicInt8Config,
    apply=_apply_dynamic, exports=("ptl",),
    description="torch.ao.quantization.quantize_dynamic on every nn.Linear: int8 weights, activations quantized "
                "per batch at run time; convolutions stay float32. Exports to TorchScript lite (.ptl) only.",
    targets=lambda c: {"bits": BITS},
    example={},
)

STATIC_INT8 = Method(
    name="torch_static_int8", backend="torch", kind="quantize", framework="torch", config_cls=StaticInt8Config,
    apply=_apply_static, exports=("onnx", "ptl"),
    description="torch.ao FX graph mode static PTQ (prepare_fx with the backend's default QConfigMapping, "
                "calibration on member samples, convert_fx; Linear/Conv+ReLU fused): int8 weights and activations. "
                "Exports to .ptl and to ONNX (QDQ) with the legacy exporter.",
    targets=lambda c: {"bits": BITS},
    example={"calibration_samples": 200},
)
