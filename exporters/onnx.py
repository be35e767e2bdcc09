"""ONNX from torch (``torch.onnx.export``) and from tf_keras (``tf2onnx``, opset 17), as one file.

Torch: a softmax head is appended. Float image/tabular inputs use the **legacy** TorchScript exporter
(``dynamo=False``): it handles plain, pruned, NNI-sped-up and NNI fake-quant models and is the only one that
exports ``torch_static_int8`` FX models (a QuantizeLinear/DequantizeLinear graph; ``output_names`` must be
given with ``dynamic_axes``). Integer token inputs (text models) use the **dynamo** exporter with dynamic
batch and sequence axes (up to the model's ``seq_len``). ``exporter="legacy"|"dynamo"`` forces one; by
default the other one is tried when the first fails. The batch axis is dynamic (``batch``).

Keras: ``tf2onnx.convert.from_keras`` with a ``[None, *input_shape]`` signature and a softmax head.

Mode ``dynamic`` applies ONNX Runtime's ``quantize_dynamic`` (int8 weights of MatMul/Gemm/Gather/attention ops, not Conv; activations
quantized per batch at run time: ``MatMulInteger``/``DynamicQuantizeLinear``) to the float graph.

The file is self-contained (weights inlined even if an exporter wrote external data), per-node metadata
(exporter stack traces with build-machine paths) is dropped, and the model metadata records
``safecompress.n_classes`` (and ``safecompress.seq_len`` for token inputs).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from exporters._torch import frozen_copy, example, one_line, probabilities_module, quiet
from exporters.base import Built, Exporter, Source
from toolkit.errors import ExportError

OPSET = 17
#: ONNX Runtime's integer-op registry without Conv: ConvInteger has no int8-weight CPU kernel.
DYNAMIC_OPS = ("MatMul", "Gemm", "Gather", "Attention", "LSTM", "EmbedLayerNormalization")
INPUT, OUTPUT = "input", "probabilities"


def _legacy(model, x, path: Path, integer: bool) -> None:
    torch = __import__("torch")
    axes = {INPUT: {0: "batch", **({1: "seq"} if integer else {})}, OUTPUT: {0: "batch"}}
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT],
                      output_names=[OUTPUT], dynamic_axes=axes)


def _dynamo(model, x, path: Path, integer: bool, seq_len: int | None) -> None:
    torch = __import__("torch")
    shapes = {0: torch.export.Dim("batch", min=1)}
    if integer:
        shapes[1] = torch.export.Dim("seq", min=2, max=int(seq_len or x.shape[1]))
    torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, input_names=[INPUT],
                      output_names=[OUTPUT], dynamic_shapes=(shapes,), verbose=False)


def _export_torch(source: Source, sample: np.ndarray, tmp: Path, options: dict) -> tuple[Path, str]:
    from toolkit.models.text_nets import quiet_library_logs

    quiet_library_logs()
    spec = getattr(source.model, "spec", None)
    seq_len = getattr(spec, "seq_len", None)
    order = ["dynamo", "legacy"] if source.integer_input else ["legacy", "dynamo"]
    if options.get("exporter"):
        if options["exporter"] not in order:
            raise ExportError(f"unknown ONNX exporter {options['exporter']!r}; known: legacy, dynamo")
        order = [options["exporter"]]
    x = example(sample)
    errors = []
    with frozen_copy(source.model) as model:
        wrapped = probabilities_module(model)
        for name in order:
            path = tmp / f"{name}.onnx"
            try:
                with quiet():
                    if name == "legacy":
                        _legacy(wrapped, x, path, source.integer_input)
                    else:
                        _dynamo(wrapped, x, path, source.integer_input, seq_len)
                return path, name
            except Exception as exc:  # the exporters raise many types; the message names the failing op
                errors.append(f"{name}: {one_line(exc, 200)}")
    raise ExportError(f"ONNX export of the {type(source.model).__name__} failed: {'; '.join(errors)}")


def _export_keras(source: Source, sample: np.ndarray, tmp: Path) -> tuple[Path, str]:
    from exporters.tflite import with_softmax
    from toolkit.frameworks import _quiet_native_stderr, tf

    T = tf()
    model = with_softmax(source.model)
    spec = (T.TensorSpec([None, *model.input_shape[1:]], T.float32, name=INPUT),)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    path = tmp / "keras.onnx"
    try:
        import tf2onnx

        with quiet(), _quiet_native_stderr():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=None)
    except Exception as exc:
        raise ExportError(f"tf2onnx could not convert the Keras model: {one_line(exc)}") from None
    path.write_bytes(proto.SerializeToString())
    return path, f"tf2onnx {tf2onnx.__version__}"


def _quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" notice goes to the root logger
    try:
        with quiet():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(DYNAMIC_OPS))
    except Exception as exc:
        raise ExportError(f"ONNX Runtime dynamic quantization failed: {one_line(exc)}") from None
    finally:
        root.setLevel(level)


def _finish(path: Path, n_classes: int | None, seq_len: int | None) -> bytes:
    """One self-contained file: inline external data, drop per-node metadata, stamp ours."""
    import onnx

    m = onnx.load(str(path))  # loads external data from the same folder
    for graph in [m.graph, *m.functions]:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    for key, value in (("safecompress.n_classes", n_classes), ("safecompress.seq_len", seq_len)):
        if value is not None:
            entry = m.metadata_props.add()
            entry.key, entry.value = key, str(int(value))
    return m.SerializeToString()


def build(source: Source, sample: np.ndarray, mode: str, representative, options: dict) -> Built:
    from toolkit.models import predict_proba

    n_classes = int(predict_proba(source.model, sample[:1]).shape[1])
    spec = getattr(source.model, "spec", None)
    seq_len = getattr(spec, "seq_len", None) if source.integer_input else None
    with tempfile.TemporaryDirectory(prefix="sc-onnx-") as d:
        tmp = Path(d)
        if source.framework == "torch":
            path, exporter = _export_torch(source, sample, tmp, options)
        else:
            path, exporter = _export_keras(source, sample, tmp)
        details = {"exporter": exporter, "opset": OPSET}
        if mode == "dynamic":
            q = tmp / "dynamic.onnx"
            _quantize_dynamic(path, q)
            path, details["quantization"] = q, "onnxruntime.quantization.quantize_dynamic (QInt8: " + ", ".join(DYNAMIC_OPS) + ")"
        content = _finish(path, n_classes, seq_len)
    return Built(content, details)


EXPORTER = Exporter("onnx", build, options=("exporter",))
