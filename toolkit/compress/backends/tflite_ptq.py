"""Post-training quantization with the TFLite converter: dynamic-range int8, float16, full-integer int8.

The Keras model is converted from a concrete function whose input signature has a free batch dimension
(``[None, *input_shape]``), so the flatbuffer answers batched queries. The result is a
:class:`~toolkit.models.tflite_model.TFLiteModel` (framework ``tflite``). The stored kernels are read back
from the flatbuffer and checked: int8 (dynamic range: at least one kernel; the converter keeps kernels under
1,024 weights in float32, listed in the notes), float16, or int8 for every kernel plus int8 input and output
(full integer, calibrated on a seeded sample of the **members**).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError

_NO_FINE_TUNING = "Post-training quantization does not fine-tune: must be 0"


class DynamicConfig(MethodConfig):
    """Dynamic-range quantization: int8 weights, float activations quantized on the fly."""

    method: Literal["tflite_dynamic"] = "tflite_dynamic"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description=_NO_FINE_TUNING)


class Float16Config(MethodConfig):
    """float16 weights (dequantized to float32 at run time on CPU)."""

    method: Literal["tflite_float16"] = "tflite_float16"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description=_NO_FINE_TUNING)


class Int8Config(MethodConfig):
    """Full-integer int8: weights, activations, input and output, calibrated on member samples."""

    method: Literal["tflite_int8"] = "tflite_int8"
    fine_tune_epochs: int = Field(0, ge=0, le=0, description=_NO_FINE_TUNING)
    calibration_samples: int = Field(200, ge=1, description="Members drawn (seeded) as the representative data set")


def convert(model, setup: Callable[[object], None]) -> bytes:
    """Convert a tf_keras model with a dynamic batch dimension; ``setup(converter)`` picks the quantization."""
    from toolkit.frameworks import _quiet_native_stderr, tf

    T = tf()
    shape = tuple(model.input_shape[1:])
    fn = T.function(lambda x: model(x, training=False), input_signature=[T.TensorSpec([None, *shape], T.float32)])
    converter = T.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    setup(converter)
    try:
        with _quiet_native_stderr():  # the calibrator prints progress straight to fd 2
            return converter.convert()
    except Exception as exc:  # the converter raises assorted types with multi-line messages
        raise CompressionError(f"TFLite conversion failed: {' '.join(str(exc).split())[:300]}") from None


def _dynamic(converter, config, data) -> None:
    from toolkit.frameworks import tf

    converter.optimizations = [tf().lite.Optimize.DEFAULT]


def _float16(converter, config, data) -> None:
    from toolkit.frameworks import tf

    converter.optimizations = [tf().lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf().float16]


def _int8(converter, config: Int8Config, data) -> None:
    from toolkit.frameworks import tf

    T = tf()
    rng = np.random.default_rng(config.seed)
    pick = rng.choice(len(data.x), size=min(config.calibration_samples, len(data.x)), replace=False)
    samples = np.asarray(data.x, np.float32)[np.sort(pick)]

    def representative():
        for i in range(len(samples)):
            yield [samples[i:i + 1]]

    converter.optimizations = [T.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = T.int8
    converter.inference_output_type = T.int8


def _bits(dtype: np.dtype) -> int:
    return int(np.dtype(dtype).itemsize * 8)


def _make_apply(name: str, setup, want: str, all_kernels: bool, int_io: bool):
    """``apply`` of one converter mode: convert, then check the stored kernel dtypes (and I/O types)."""

    def apply(model, config, data) -> MethodOutput:
        from toolkit.models.tflite_model import TFLiteModel, weight_arrays

        content = convert(model, lambda c: setup(c, config, data))
        out = TFLiteModel(content)
        if int(out.input_details["shape_signature"][0]) != -1:
            raise CompressionError(f"{name}: the converted model has a fixed batch dimension")
        kernels = weight_arrays(out)
        dtypes = {k: str(v.dtype) for k, v in kernels.items()}
        kept = sorted(k for k, d in dtypes.items() if d != want)
        if not kernels or len(kept) == len(kernels) or (all_kernels and kept):
            raise CompressionError(f"{name}: expected {want} kernels, the flatbuffer stores {dtypes or 'none'}")
        if int_io and (out.input_dtype != np.int8 or np.dtype(out.output_details["dtype"]) != np.int8):
            raise CompressionError(f"{name}: expected int8 input and output, got {out.input_dtype} and "
                                   f"{np.dtype(out.output_details['dtype'])}")
        notes = [f"kept in {dtypes[k]} by the converter (too small to quantize): {k}" for k in kept]
        return MethodOutput(model=out, framework="tflite",
                            bits={k: _bits(v.dtype) for k, v in kernels.items() if _bits(v.dtype) < 32},
                            extra={"tflite_bytes": len(content), "kernel_dtypes": dtypes}, notes=notes)

    return apply


DYNAMIC = Method(
    name="tflite_dynamic", backend="tflite", kind="quantize", framework="keras", config_cls=DynamicConfig,
    apply=_make_apply("tflite_dynamic", _dynamic, "int8", all_kernels=False, int_io=False), exports=("tflite",),
    description="TFLite converter dynamic-range quantization (Optimize.DEFAULT): int8 kernels, float I/O.",
    targets=lambda c: {"bits": 8}, example={},
)

FLOAT16 = Method(
    name="tflite_float16", backend="tflite", kind="quantize", framework="keras", config_cls=Float16Config,
    apply=_make_apply("tflite_float16", _float16, "float16", all_kernels=True, int_io=False), exports=("tflite",),
    description="TFLite converter float16 quantization: float16 kernels, float I/O.",
    targets=lambda c: {"bits": 16}, example={},
)

INT8 = Method(
    name="tflite_int8", backend="tflite", kind="quantize", framework="keras", config_cls=Int8Config,
    apply=_make_apply("tflite_int8", _int8, "int8", all_kernels=True, int_io=True), exports=("tflite",),
    description="TFLite converter full-integer int8 quantization calibrated on member samples "
                "(representative data set), int8 input and output.",
    targets=lambda c: {"bits": 8}, example={"calibration_samples": 100},
)
