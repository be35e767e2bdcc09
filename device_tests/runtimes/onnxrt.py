"""ONNX Runtime for ``.onnx`` files: ``onnx.checker`` first, then a CPU session with pinned thread counts.

Input shape and dtype come from the graph input (symbolic dimensions are ``None``); the number of classes
from the output's last dimension (or the ``safecompress.n_classes`` metadata). A fixed batch dimension (a
model exported without a dynamic axis) is served by padding to that batch. Integer inputs (token ids) may
carry ``safecompress.seq_len`` metadata: the longest sequence the model's position table holds.
"""

from __future__ import annotations

import numpy as np

from device_tests.runtimes.base import Runtime, one_line
from toolkit.errors import ArtifactError

_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
SEQ_LEN_KEY = "safecompress.seq_len"
N_CLASSES_KEY = "safecompress.n_classes"


def _dim(d):
    return int(d) if isinstance(d, int) and d > 0 else None


class OnnxRuntime(Runtime):
    format = "onnx"

    def __init__(self, path, content: bytes, batch_size: int = 256, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        super().__init__(path, content, batch_size, threads)
        try:
            model = onnx.load_from_string(content)
            onnx.checker.check_model(model)
        except Exception as exc:  # DecodeError, ValidationError...
            raise ArtifactError(f"{self.name} is not a loadable ONNX model (onnx.checker: {one_line(exc, 200)})") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types: unsupported op, bad graph...
            raise ArtifactError(f"{self.name} is not a loadable ONNX model: {one_line(exc, 200)}") from None
        try:
            self._describe_io()
        except ArtifactError:
            raise
        except Exception as exc:  # e.g. UnicodeDecodeError: names or metadata that are not UTF-8
            raise ArtifactError(f"{self.name}: cannot read the ONNX model's inputs, outputs or metadata: "
                                f"{type(exc).__name__}: {one_line(exc, 200)}") from None

    def _describe_io(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ArtifactError(f"{self.name}: expected a model with 1 input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        if inp.type not in _TYPES:
            raise ArtifactError(f"{self.name}: input type {inp.type} is not supported; supported: {', '.join(_TYPES)}")
        self.input_name, self.output_name = inp.name, outputs[0].name
        self.input_dtype = np.dtype(_TYPES[inp.type])
        shape = list(inp.shape or [])
        if not shape:
            raise ArtifactError(f"{self.name}: the input {inp.name!r} has no batch dimension")
        self.input_shape = tuple(_dim(d) for d in shape[1:])
        if _dim(shape[0]) is not None:
            self.fixed_batch, self.max_batch = True, _dim(shape[0])
        meta = self.session.get_modelmeta().custom_metadata_map
        out_shape = list(outputs[0].shape or [])
        self.n_classes = _dim(out_shape[-1]) if out_shape else None
        try:
            self.n_classes = self.n_classes or (int(meta[N_CLASSES_KEY]) if N_CLASSES_KEY in meta else None)
            self.max_seq_len = int(meta[SEQ_LEN_KEY]) if SEQ_LEN_KEY in meta else None
        except ValueError:
            raise ArtifactError(f"{self.name}: malformed safecompress metadata {dict(meta)}") from None

    def _run(self, xb: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: xb})[0]
