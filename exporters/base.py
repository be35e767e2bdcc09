"""The export driver shared by every format: resolve the source, pick the mode, build, validate, write.

Each format module exposes an :class:`Exporter` as ``EXPORTER`` whose ``build(source, sample, mode,
representative, options) -> Built`` returns the artifact's bytes. :func:`run_export` does the rest (see
:mod:`exporters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ExportError

#: Why a (format, source framework, mode) combination is not offered; the text of the ExportError.
UNSUPPORTED = {
    ("onnx", "torch", "carry-dynamic"): "torch.ao dynamic int8 modules have no ONNX export "
                                       "(quantized::linear_dynamic has no symbolic); export them to ptl",
    ("pte", "torch", "carry-dynamic"): "torch.export rejects torch.ao packed parameters; export the float model "
                                      "to pte with mode int8 (PT2E) instead",
    ("pte", "torch", "carry-int8"): "torch.export rejects torch.ao packed parameters; export the float model "
                                   "to pte with mode int8 (PT2E) instead",
    ("onnx", "torch", "int8"): "int8 ONNX comes from a torch_static_int8 model (QDQ graph, legacy exporter); "
                              "a float model exports with mode float or dynamic",
    ("onnx", "keras", "int8"): "export a tflite_int8 / tfmot QAT model to tflite for int8 Keras artifacts",
    ("onnx", "keras", "float16"): "float16 ONNX is not offered (ONNX Runtime's CPU float16 kernels are incomplete)",
    ("onnx", "torch", "float16"): "float16 ONNX is not offered (ONNX Runtime's CPU float16 kernels are incomplete)",
    ("ptl", "torch", "dynamic"): "compress with torch_dynamic_int8 first; the ptl exporter carries its int8 modules",
    ("ptl", "torch", "int8"): "compress with torch_static_int8 first; the ptl exporter carries its int8 modules",
    ("ptl", "torch", "float16"): "float16 is not offered for the lite interpreter (no CPU float16 kernels)",
    ("pte", "torch", "dynamic"): "use mode int8 (PT2E static int8 through XNNPACK)",
    ("pte", "torch", "float16"): "float16 is not offered for pte (use int8)",
}


@dataclass
class ArtifactInfo:
    """What an export wrote (also the content of the ``<artifact>.json`` sidecar)."""

    path: str
    format: str
    mode: str
    sha256: str
    bytes: int
    gzip_bytes: int
    parity: dict[str, Any]
    source: dict[str, Any]
    input_shape: list | None = None
    input_dtype: str = "float32"
    n_classes: int | None = None
    outputs: str = "probabilities"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Source:
    """The model to export and what is known about it."""

    model: Any
    framework: str  # torch | keras | tflite
    method: str | None
    mode: str  # quantization the source already carries: float | dynamic | float16 | int8
    integer_input: bool = False


@dataclass
class Built:
    content: bytes
    details: dict[str, Any] = field(default_factory=dict)
    outputs: str = "probabilities"


@dataclass(frozen=True)
class Exporter:
    name: str
    build: Callable[[Source, np.ndarray, str, np.ndarray | None, dict], Built]
    options: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------- sources
def _torch_mode(model) -> str:
    """int8 modes a torch model already carries, from its modules (torch.ao quantized classes)."""
    kinds = {type(m).__module__ for m in model.modules()}
    if any(k.startswith("torch.ao.nn.quantized.dynamic") for k in kinds):
        return "dynamic"
    if any(k.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) for k in kinds):
        return "int8"
    return "float"


def _tflite_mode(model) -> str:
    """The quantization a flatbuffer holds: int8 I/O -> int8; float16 kernels -> float16; int8 kernels -> dynamic."""
    from toolkit.models.tflite_model import weight_arrays

    if np.issubdtype(model.input_dtype, np.integer):
        return "int8"
    dtypes = {str(a.dtype) for a in weight_arrays(model).values()}
    if "float16" in dtypes:
        return "float16"
    if "int8" in dtypes:
        return "dynamic"
    return "float"


#: tfmot's quantization-aware wrappers: a Keras model holding them is an int8 model (fake-quant until converted).
_TFMOT_QUANT_LAYERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})


def _keras_mode(model) -> str:
    """``int8`` for tfmot QAT/PQAT/CQAT models (the converters turn their fake-quant into int8 ops), else float."""
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if type(layer).__name__ in _TFMOT_QUANT_LAYERS:
            return "int8"
        stack.extend(getattr(layer, "layers", []) or [])
    return "float"


_SOURCE_MODE = {"torch": _torch_mode, "tflite": _tflite_mode, "keras": _keras_mode}


def resolve_source(model) -> Source:
    from toolkit.compress.result import CompressedModel
    from toolkit.errors import ModelError
    from toolkit.models import framework_of

    method = None
    if isinstance(model, CompressedModel):
        method, model = model.method, model.model
    try:
        fw = framework_of(model)
    except ModelError as exc:
        raise ExportError(f"cannot export a {type(model).__name__}: {exc}") from None
    integer = str(getattr(model, "input_dtype", "")) == "int64"
    return Source(model=model, framework=fw, method=method, mode=_SOURCE_MODE[fw](model), integer_input=integer)


def _method_exports(method: str) -> tuple[str, ...]:
    from toolkit.compress import get_method

    return tuple(get_method(method).exports)


def resolve_mode(fmt: str, source: Source, mode: str) -> str:
    from exporters import FORMATS, MODES

    meta = FORMATS.meta(fmt)
    if mode not in MODES:
        raise ExportError(f"unknown export mode {mode!r}; known: {', '.join(MODES)}")
    if source.framework not in meta["sources"]:
        raise ExportError(f"{fmt} artifacts are made from {' or '.join(meta['sources'])} models, "
                          f"not {source.framework}")
    if source.method is not None and fmt not in _method_exports(source.method):
        raise ExportError(f"{source.method} models export to {', '.join(_method_exports(source.method))}, not {fmt}")
    if source.mode != "float":
        if mode not in ("float", source.mode):
            raise ExportError(f"the model is already {source.mode}-quantized; export it with mode "
                              f"{source.mode!r} (not {mode!r})")
        if source.mode not in meta["carries"]:
            why = UNSUPPORTED.get((fmt, source.framework, f"carry-{source.mode}"), "not supported")
            raise ExportError(f"{fmt} cannot carry a {source.mode}-quantized {source.framework} model: {why}")
        return source.mode
    if source.framework == "tflite":
        return mode if mode == "float" else _refuse(fmt, source, mode, "a flatbuffer is written as is; "
                                                    "quantize with the tflite_* methods or export the Keras model")
    if mode not in meta["modes"]:
        why = UNSUPPORTED.get((fmt, source.framework, mode), f"{fmt} supports modes {', '.join(meta['modes'])}")
        _refuse(fmt, source, mode, why)
    return mode


def _refuse(fmt: str, source: Source, mode: str, why: str):
    raise ExportError(f"{fmt} export of a {source.framework} model with mode {mode}: not supported: {why}")


def check_sample(sample_x, source: Source, what: str = "sample_x") -> np.ndarray:
    x = np.asarray(sample_x)
    if x.ndim < 2 or len(x) < 1 or x.dtype.kind not in "biuf":
        raise ExportError(f"{what} must be a numeric array of at least one sample, got {x.dtype} {x.shape}")
    if source.integer_input:
        if x.dtype.kind not in "iu" or x.ndim != 2:
            raise ExportError(f"{what} must be (n, seq_len) integer token ids for a text model, got {x.dtype} {x.shape}")
        return np.ascontiguousarray(x, dtype=np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ExportError(f"{what} holds NaN or inf")
    return x


# ----------------------------------------------------------------------------------------------- driver
def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def run_export(model, fmt: str, path, sample_x, *, mode: str = "float", representative=None,
               **options) -> ArtifactInfo:
    from device_tests.sandbox import trust
    from exporters import FORMATS
    from exporters.validate import check_parity
    from toolkit.io import atomic_path, atomic_write_json, gzip_size, sha256_bytes

    if fmt not in FORMATS:
        FORMATS.get(fmt)  # raises UnknownNameError listing the formats
    exporter: Exporter = FORMATS.get(fmt)
    unknown = sorted(set(options) - set(exporter.options))
    if unknown:
        raise ExportError(f"unknown {fmt} export option(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(exporter.options) or 'none'}")
    source = resolve_source(model)
    sample = check_sample(sample_x, source)
    rep = None if representative is None else check_sample(representative, source, "representative")
    mode = resolve_mode(fmt, source, mode)
    built = exporter.build(source, sample, mode, rep, dict(options))
    content = built.content
    sha = sha256_bytes(content)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
        trust(sha)  # built in this process by the framework: its parity check may run in-process
        parity, runtime = check_parity(tmp, source, sample, fmt, mode)
    info = ArtifactInfo(
        path=str(path), format=fmt, mode=mode, sha256=sha, bytes=len(content), gzip_bytes=gzip_size(content),
        parity=parity,
        source={"framework": source.framework, "method": source.method, "class": type(source.model).__name__},
        input_shape=None if runtime.input_shape is None else list(runtime.input_shape),
        input_dtype=str(sample.dtype), n_classes=runtime.n_classes, outputs=built.outputs,
        details={"runtime": FORMATS.meta(fmt)["runtime"], "input_tensor_dtype": str(runtime.input_dtype),
                 **built.details})
    atomic_write_json(_sidecar_path(path), info.to_dict())
    return info
