"""An in-memory TFLite flatbuffer as a model: what the TFLite converter methods of ``compress`` return.

:class:`TFLiteModel` runs the flatbuffer in LiteRT (``ai_edge_litert``, the maintained TFLite interpreter)
and answers ``predict_proba`` in batches. Quantized inputs are quantized with the input tensor's
scale/zero-point and quantized outputs dequantized with the output's. The device-side LiteRT runtime
(``device_tests``) builds on this class for artifacts on disk.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import ArtifactError, DataError
from toolkit.frameworks import _quiet_native_stderr, thread_count

NAME = "tflite"
TFLITE_IDENTIFIER = b"TFL3"


def _why(exc: BaseException) -> str:
    """One line for an error from LiteRT (some carry no message at all: then their type)."""
    text = " ".join(str(exc).split())
    return (text[:300] + " ...") if len(text) > 300 else (text or type(exc).__name__)


def owns(model) -> bool:
    return isinstance(model, TFLiteModel)


def is_tflite(content: bytes) -> bool:
    """FlatBuffers put the 4-byte file identifier at offset 4."""
    return len(content) >= 8 and content[4:8] == TFLITE_IDENTIFIER


def to_probabilities(out: np.ndarray, atol: float = 2e-2) -> np.ndarray:
    """Rows that are already distributions pass unchanged; anything else is treated as logits.

    ``atol`` is how far a row sum may be from 1 and still count as a distribution (quantized outputs round
    each probability to a step of the output scale, so their sums drift by up to ``n_classes * scale / 2``).
    """
    out = np.asarray(out, dtype=np.float32)  # float32 is exact enough for sums of a row's probabilities
    if out.ndim != 2:
        raise ValueError(f"expected an (n, k) array of scores, got shape {out.shape}")
    if not out.size:
        return out
    # Row sums as a matrix-vector product: numpy reduces a handful of classes along the last axis row by row
    # (10x slower on 10 classes).
    ones = np.ones(out.shape[1], dtype=np.float32)
    if out.min() >= -1e-6 and np.abs(out @ ones - 1.0).max() <= atol:
        p = np.maximum(out, 0.0)
    elif np.abs(out).max() + np.log(out.shape[1]) < 80.0:  # exp cannot overflow float32, nor can a row's sum
        p = np.exp(out)
    else:  # large logits: the stable softmax (row max subtracted), class-major for the same reason as above
        t = np.array(out.T, order="C")
        t -= t.max(axis=0)
        np.exp(t, out=t)
        t /= t.sum(axis=0)
        return np.ascontiguousarray(t.T)
    p /= (p @ ones)[:, None]
    return p


class TFLiteModel:
    """A TFLite flatbuffer held in memory, queried through LiteRT."""

    def __init__(self, content: bytes, batch_size: int = 256, threads: int | None = None, name: str = "TFLite model"):
        #: Named in every error message (the device runtime passes the artifact's file name).
        self.name = name
        if not is_tflite(content):
            raise ArtifactError(f"{name}: not a TFLite flatbuffer (missing the 'TFL3' identifier)")
        self.content = bytes(content)
        self.batch_size = int(batch_size)
        self.threads = threads or thread_count()
        self._interp = None
        self._batch = None
        self._details = None  # (input, output) details: LiteRT rebuilds them on every get_*_details() call

    # ------------------------------------------------------------------ runtime
    def _interpreter(self):
        if self._interp is None:
            from ai_edge_litert.interpreter import Interpreter

            try:
                with _quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                    interp = Interpreter(model_content=self.content, num_threads=self.threads)
                # Tensor details decode names and parameters from the flatbuffer: a corrupt one fails here
                # (e.g. UnicodeDecodeError for a mangled tensor name).
                inputs = interp.get_input_details()
                outputs = interp.get_output_details()
            except Exception as exc:
                raise ArtifactError(f"{self.name}: LiteRT cannot load the model: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}") from None
            if len(inputs) != 1 or len(outputs) != 1:
                raise ArtifactError(f"{self.name}: expected a model with 1 input and 1 output, got {len(inputs)} "
                                    f"and {len(outputs)}")
            self._interp = interp
        return self._interp

    @property
    def input_details(self) -> dict:
        return self._tensor_details()[0]

    @property
    def output_details(self) -> dict:
        return self._tensor_details()[1]

    def _tensor_details(self) -> tuple[dict, dict]:
        """Input and output tensor details, kept until the next resize (the only thing here that changes them)."""
        if self._details is None:
            interp = self._interpreter()
            self._details = (interp.get_input_details()[0], interp.get_output_details()[0])
        return self._details

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (batch dimension removed)."""
        return tuple(int(d) for d in self.input_details["shape"][1:])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input_details["dtype"])

    def _resize(self, batch: int) -> None:
        if self._batch == batch:
            return
        interp = self._interpreter()
        det = self.input_details
        sig = det.get("shape_signature", det["shape"])
        if int(det["shape"][0]) != batch:
            if len(sig) and int(sig[0]) not in (-1, batch):
                # Fixed batch dimension: fall back to that batch size.
                self.batch_size = int(det["shape"][0])
                batch = self.batch_size
            else:
                interp.resize_tensor_input(det["index"], [batch, *det["shape"][1:]])
        try:
            with _quiet_native_stderr():
                interp.allocate_tensors()
        except Exception as exc:
            raise ArtifactError(f"{self.name}: LiteRT cannot allocate tensors: {_why(exc)}") from None
        self._details = None  # shapes changed
        self._batch = batch

    @staticmethod
    def _quantize_input(xb: np.ndarray, det: dict) -> np.ndarray:
        """``xb`` in the input tensor's dtype (``det``: its details), quantized with its scale and zero point."""
        dtype = np.dtype(det["dtype"])
        if dtype in (np.float32, np.float16):
            return xb.astype(dtype, copy=False)
        scale, zero = det.get("quantization", (0.0, 0))
        if not scale:
            return xb.astype(dtype, copy=False)
        info = np.iinfo(dtype)
        q = xb / np.float32(scale)  # in place from here: one temporary for the whole input
        q += zero
        np.rint(q, out=q)
        np.clip(q, info.min, info.max, out=q)
        return q.astype(dtype)

    @staticmethod
    def _dequantize_output(out: np.ndarray, det: dict) -> np.ndarray:
        """``out`` as float32, dequantized with the output tensor's scale and zero point (``det``)."""
        scale, zero = det.get("quantization", (0.0, 0))
        if np.issubdtype(out.dtype, np.integer) and scale:
            return (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32, copy=False)

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Outputs as the model emits them (dequantized), in batches of ``batch_size`` (tail padded)."""
        x = np.asarray(x, dtype=np.float32)
        want = self.input_shape
        if tuple(x.shape[1:]) != want:
            if int(np.prod(x.shape[1:])) == int(np.prod(want)) and x.ndim >= 2:
                x = x.reshape(len(x), *want)
            else:
                raise DataError(f"{self.name}: inputs of shape {tuple(x.shape[1:])} do not fit the model's input {want}")
        interp = self._interpreter()
        bs = max(1, min(self.batch_size, len(x)))
        self._resize(bs)
        bs = self._batch
        # Tensor details are fetched once per call (the interpreter rebuilds them, quantization arrays
        # included, on every get_*_details()), and the whole input is quantized and the whole output
        # dequantized in one vectorized pass each: per-batch Python work showed on small models.
        in_det, out_det = self.input_details, self.output_details
        in_idx, out_idx = in_det["index"], out_det["index"]
        xq = self._quantize_input(x, in_det)
        outs = []
        for i in range(0, len(xq), bs):
            xb = xq[i:i + bs]
            n = len(xb)
            if n < bs:  # pad the last batch instead of resizing (a resize re-plans the graph: slow)
                xb = np.concatenate([xb, np.repeat(xb[-1:], bs - n, axis=0)])
            interp.set_tensor(in_idx, xb)
            try:
                interp.invoke()
            except Exception as exc:  # an op the interpreter cannot run, a bad tensor...
                raise ArtifactError(f"{self.name}: LiteRT failed to run the model: {_why(exc)}") from None
            outs.append(interp.get_tensor(out_idx)[:n])
        return self._dequantize_output(np.concatenate(outs), out_det).reshape(len(x), -1)

    @property
    def output_atol(self) -> float:
        """Row-sum tolerance for recognising quantized probability outputs (see :func:`to_probabilities`)."""
        det = self.output_details
        scale = float(det.get("quantization", (0.0, 0))[0] or 0.0)
        return max(2e-2, 0.5 * scale * int(det["shape"][-1]))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return to_probabilities(self.predict_raw(x), self.output_atol)

    def __len__(self) -> int:  # bytes of the flatbuffer
        return len(self.content)

    def __getstate__(self):  # picklable across worker processes: drop the interpreter
        return {"content": self.content, "batch_size": self.batch_size, "threads": self.threads, "name": self.name}

    def __setstate__(self, state):
        self.__init__(state["content"], state["batch_size"], state["threads"], state.get("name", "TFLite model"))


# Framework-backend protocol (see toolkit.models): a flatbuffer cannot be trained or cloned.
def predict_proba(model: TFLiteModel, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return model.predict_proba(x)


def clone(model: TFLiteModel) -> TFLiteModel:
    return TFLiteModel(model.content, model.batch_size, model.threads, model.name)


def n_params(model: TFLiteModel) -> int:
    return 0


#: Builtin ops whose input 1 is the weight (kernel) tensor.
_WEIGHT_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})
#: Flatbuffer tensor types whose constant data is read as numpy (sub-byte and 8-bit float types are not).
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
                "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32, "INT64": np.int64}


def weight_arrays(model: TFLiteModel) -> dict[str, np.ndarray]:
    """The constant kernels of the flatbuffer's Dense/Conv ops, in their *stored* dtype (int8, float16, ...).

    Read from the flatbuffer itself (LiteRT's generated schema, no interpreter): for each FULLY_CONNECTED /
    CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV op of the main subgraph, its weight input; a weight made by a
    DEQUANTIZE op (float16 storage) is followed to the stored constant. Keys are tensor names.
    A flatbuffer that cannot be read raises :class:`ArtifactError`.
    """
    try:
        return _stored_kernels(model.content)
    except ArtifactError:
        raise
    except Exception as exc:  # a corrupt flatbuffer fails anywhere in the generated accessors
        raise ArtifactError(f"cannot read the TFLite flatbuffer's weights: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]}") from None


def _stored_kernels(content: bytes) -> dict[str, np.ndarray]:
    from ai_edge_litert import schema_py_generated as schema

    fb = schema.Model.GetRootAs(content, 0)
    graph = fb.Subgraphs(0)
    op_name = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_name = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(fb.OperatorCodesLength()):
        c = fb.OperatorCodes(i)
        codes.append(op_name.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "CUSTOM"))
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    producer = {op.Outputs(j): op for op in ops for j in range(op.OutputsLength())}

    def constant(index: int):
        tensor = graph.Tensors(index)
        buf = fb.Buffers(tensor.Buffer())
        if buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        elif buf.Offset() > 1:  # large models keep buffers after the flatbuffer, addressed by offset
            raw = content[buf.Offset():buf.Offset() + buf.Size()]
        else:
            return None, tensor
        kind = type_name.get(tensor.Type(), str(tensor.Type()))
        if kind not in _NUMPY_TYPES:
            raise ArtifactError(f"weight tensor {tensor.Name().decode()!r} has type {kind}, which cannot be measured")
        shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        return np.frombuffer(raw, dtype=_NUMPY_TYPES[kind]).reshape(shape), tensor

    out: dict[str, np.ndarray] = {}
    seen: set[int] = set()
    for op in ops:
        if codes[op.OpcodeIndex()] not in _WEIGHT_OPS or op.InputsLength() < 2 or op.Inputs(1) < 0:
            continue
        index = op.Inputs(1)
        src = producer.get(index)
        if src is not None and codes[src.OpcodeIndex()] == "DEQUANTIZE":
            index = src.Inputs(0)
        if index in seen:  # one kernel shared by several ops counts once
            continue
        seen.add(index)
        arr, tensor = constant(index)
        if arr is None:
            continue  # weights computed at run time: not a stored kernel
        name = tensor.Name().decode() or f"tensor_{index}"
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name}#{n}"
        out[key] = arr
    return out
