"""NNI 3.0 quantizers: quantization-aware training (``QATQuantizer``) and post-training (``PtqQuantizer``).

NNI quantization is **simulated** (fake-quant): NNI wraps each Linear/Conv layer and, in the forward pass,
rounds its input, weight and output to ``bits``-bit integer levels and maps them straight back to float
(``(round(clamp(zp + x / scale, qmin, qmax)) - zp) * scale``), with per-tensor scales and zero points it
calibrates (QAT: moving min/max while training on the members; PTQ: min/max over calibration members, no
training). Nothing is stored as integers.

NNI's wrapped model is not a usable deliverable (its wrappers replace ``forward`` on instances, so
TorchScript silently ignores them, and the straight-through autograd functions do not export). The result is
therefore **frozen** into a plain module: every quantized layer becomes ``FakeQuantized(layer)`` holding
NNI's quantize-dequantized weight and NNI's input/output scales and zero points, applying NNI's formula with
plain torch ops. The frozen model must reproduce NNI's wrapped model on member samples (else
:class:`~toolkit.errors.CompressionError`), and every quantized weight must hold at most
``qmax - qmin + 1`` levels.

What exporters get: an ordinary float32 graph with the quantize-dequantize arithmetic (Div/Add/Clip/Round/
Sub/Mul) in it: ONNX, TorchScript lite and ExecuTorch artifacts reproduce the simulated-int8 predictions, but
they are float32-sized and run float kernels. For real int8 artifacts use ``torch_static_int8`` (torch) or
``tflite_int8`` (Keras).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.backends import nni_common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError, ConfigError

#: Largest |logit| difference tolerated between NNI's wrapped model and the frozen one (same ops, same order:
#: they agree exactly in practice).
PARITY_ATOL = 1e-4
#: NNI target names: the layer's first input, its weight and its output.
TARGETS = ["_input_", "weight", "_output_"]


class _Quantization(MethodConfig):
    bits: int = Field(8, ge=2, le=8, description="Bit width of weights, inputs and outputs of every Linear/Conv "
                                                 "layer (NNI quant_dtype int<bits>)")
    quant_scheme: Literal["affine", "symmetric"] = Field(
        "affine", description="affine: scale and zero point from min/max; symmetric: zero point 0, scale from max |x|")


class QATConfig(_Quantization):
    """Quantization-aware training with NNI's QATQuantizer (simulated quantization)."""

    method: Literal["nni_qat"] = "nni_qat"
    fine_tune_epochs: int = Field(2, ge=1, description="Epochs of quantization-aware training on the members")
    quant_start_step: int = Field(0, ge=0, description="Training steps before fake quantization starts (NNI "
                                                       "warm-up); must be below the number of training steps")


class PTQConfig(_Quantization):
    """Post-training quantization with NNI's PtqQuantizer (simulated), calibrated on member samples."""

    method: Literal["nni_ptq"] = "nni_ptq"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description="Post-training quantization does not fine-tune: must be 0")
    calibration_samples: int = Field(200, ge=1, description="Members drawn (seeded) to calibrate the ranges")


@cache
def _fake_quantized_cls():
    torch = common.torch()

    class FakeQuantized(torch.nn.Module):
        """A layer with NNI's simulated quantization frozen in.

        ``layer`` holds the quantize-dequantized weight; its input and output pass through NNI's
        quantize-dequantize formula with the calibrated per-tensor scale and zero point.
        """

        def __init__(self, layer, qmin: int, qmax: int, in_scale, in_zero_point, out_scale, out_zero_point):
            super().__init__()
            self.layer = layer
            self.qmin = float(qmin)
            self.qmax = float(qmax)
            self.register_buffer("in_scale", in_scale.detach().clone().float())
            self.register_buffer("in_zero_point", in_zero_point.detach().clone().float())
            self.register_buffer("out_scale", out_scale.detach().clone().float())
            self.register_buffer("out_zero_point", out_zero_point.detach().clone().float())

        def _qdq(self, t, scale, zero_point):
            # NNI's ClampRound, operation for operation, so the frozen model matches NNI's exactly.
            q = torch.round(torch.clamp(zero_point + t / scale, self.qmin, self.qmax))
            return (q - zero_point) * scale

        def forward(self, x):
            x = self._qdq(x, self.in_scale, self.in_zero_point)
            return self._qdq(self.layer(x), self.out_scale, self.out_zero_point)

    return FakeQuantized


def _qdq(t, space):
    torch = common.torch()
    q = torch.round(torch.clamp(space.zero_point + t / space.scale, space.qmin, space.qmax))
    return (q - space.zero_point) * space.scale


def _config_list(model, config) -> list[dict]:
    names = [n for n, _ in common.prunable_layers(model)]
    return [{"op_names": names, "target_names": TARGETS, "quant_dtype": f"int{config.bits}",
             "quant_scheme": config.quant_scheme, "granularity": "default"}]


def _freeze(model, quantizer, config, check_x, what: str):
    """Replace NNI's wrappers by :class:`FakeQuantized` layers; returns ``(model, bits)``."""
    torch = common.torch()
    fake_quantized = _fake_quantized_cls()
    names = [n for n, _ in common.prunable_layers(model)]
    model.eval()
    with torch.no_grad():
        reference = model(check_x)
    frozen: dict[str, tuple] = {}
    for name in names:
        wrapper = getattr(model.get_submodule(name), "_nni_wrapper", None)
        spaces = getattr(wrapper, "quantization_target_spaces", {})
        wanted = {"_input_0", "weight", "_output_0"}
        if not wanted <= set(spaces):
            raise CompressionError(f"{what}: NNI did not quantize {sorted(wanted - set(spaces))} of layer {name}")
        for target in wanted:
            s = spaces[target]
            if s.scale is None or s.zero_point is None or s.scale.numel() != 1 or not bool(torch.isfinite(s.scale).all()):
                raise CompressionError(f"{what}: NNI has no usable per-tensor scale for {target} of layer {name} "
                                       "(were there enough training steps after quant_start_step?)")
        with torch.no_grad():
            w = _qdq(spaces["weight"].target.detach(), spaces["weight"])
        levels = int(torch.unique(w).numel())
        if levels > spaces["weight"].qmax - spaces["weight"].qmin + 1:
            raise CompressionError(f"{what}: {name}.weight has {levels} levels, more than {config.bits} bits hold")
        frozen[name] = (w, spaces["weight"].qmin, spaces["weight"].qmax, spaces["_input_0"], spaces["_output_0"])
    quantizer.unwrap_model()
    bits = {}
    for name, (w, qmin, qmax, sin, sout) in frozen.items():
        layer = model.get_submodule(name)
        with torch.no_grad():
            layer.weight.copy_(w)
        model.set_submodule(name, fake_quantized(layer, qmin, qmax, sin.scale, sin.zero_point, sout.scale,
                                                 sout.zero_point))
        bits[f"{name}.layer.weight"] = config.bits
    model.eval()
    with torch.no_grad():
        diff = float((model(check_x) - reference).abs().max())
    if not diff <= PARITY_ATOL:
        raise CompressionError(f"{what}: the frozen fake-quant model differs from NNI's by {diff:.3g} in the logits")
    return model, bits


def _apply_qat(model, config: QATConfig, data) -> MethodOutput:
    quantization = nni_common.nni().compression.quantization
    with common.quiet():
        training = nni_common.MemberTraining(model, data, config, "nni_qat")
        steps = config.fine_tune_epochs * training.steps_per_epoch
        if config.quant_start_step >= steps:
            raise ConfigError(f"nni_qat: quant_start_step={config.quant_start_step} must be below the "
                              f"{steps} training steps ({config.fine_tune_epochs} epochs of {training.steps_per_epoch})")
        quantizer = quantization.QATQuantizer(model, _config_list(model, config), training.evaluator,
                                              quant_start_step=config.quant_start_step)
        quantizer.compress(None, config.fine_tune_epochs)
        check_x = common.calibration_batch(data, 256, config.seed)
        model, bits = _freeze(model, quantizer, config, check_x, "nni_qat")
    return MethodOutput(model=model, framework="torch", fine_tune_epochs=training.epochs,
                        fine_tune_seconds=training.seconds, bits=bits,
                        extra={"simulated": True, "quant_start_step": config.quant_start_step, "training_steps": steps})


def _apply_ptq(model, config: PTQConfig, data) -> MethodOutput:
    quantization = nni_common.nni().compression.quantization
    with common.quiet():
        calibration = nni_common.Calibration(model, data, config, config.calibration_samples)
        quantizer = quantization.PtqQuantizer(model, _config_list(model, config), calibration.evaluator)
        quantizer.compress(None, 1)  # one pass of the calibration "training" (forward only)
        model, bits = _freeze(model, quantizer, config, calibration.x, "nni_ptq")
    return MethodOutput(model=model, framework="torch", bits=bits,
                        extra={"simulated": True, "calibration_samples": int(len(calibration.x))})


_SIMULATED = ("NNI quantization is simulated (fake-quant): the result is a float32 torch module whose layers round "
              "inputs, weights and outputs to bits-bit levels with NNI's calibrated scales, frozen from NNI's "
              "wrappers into plain ops; ONNX/.ptl/.pte exports reproduce it but stay float32-sized (use "
              "torch_static_int8 for real int8 artifacts).")

QAT = Method(
    name="nni_qat", backend="nni", kind="quantize", framework="torch", config_cls=QATConfig, apply=_apply_qat,
    exports=("onnx", "ptl", "pte"),
    description="NNI QATQuantizer: quantization-aware training on the members through NNI's TorchEvaluator "
                "(inputs, weights and outputs of every Linear/Conv layer, per-tensor). " + _SIMULATED,
    targets=lambda c: {"bits": c.bits},
    example={"fine_tune_epochs": 1},
)

PTQ = Method(
    name="nni_ptq", backend="nni", kind="quantize", framework="torch", config_cls=PTQConfig, apply=_apply_ptq,
    exports=("onnx", "ptl", "pte"),
    description="NNI PtqQuantizer: post-training quantization calibrated on member samples, no training "
                "(inputs, weights and outputs of every Linear/Conv layer, per-tensor). " + _SIMULATED,
    targets=lambda c: {"bits": c.bits},
    example={"calibration_samples": 200},
)
