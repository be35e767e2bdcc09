"""ONNX Runtime for ``.onnx`` files: ``onnx.checker`` first, then a CPU session with pinned thread counts.

Input shape and dtype come from the graph input (symbolic dimensions are ``None``); the number of classes
from the output's last dimension (or the ``safecompress.n_classes`` metadata). A fixed batch dimension (a
model exported without a dynamic axis) is served by padding to that batch. Integer inputs (token ids) may
carry ``safecompress.seq_len`` metadata: the longest sequence the model's position table holds. Inputs are fed
in the declared dtype (float16 / float64 graphs get float16 / float64 arrays).

Before a session is created (:func:`refuse_external_data`, :func:`check_graph`; in the sandbox child):

* **external data is refused**: a tensor (initializer, sparse initializer, ``Constant`` / attribute tensor, in
  the main graph, every subgraph, local functions and training graphs) whose data lives in another file would be
  read from outside the artifact (relative to the current directory) and is not covered by its digest. The
  message says to re-save the model with its data inside (``onnx.save(model, path,
  save_as_external_data=False)``);
* **loop trip counts** given by a constant (an initializer or a ``Constant`` node) above :data:`MAX_LOOP_TRIPS`
  are refused, naming the ``Loop`` node (a count computed from the data is bounded by the sandbox's per-call
  timeout instead);
* **declared tensor sizes**: ``onnx.shape_inference.infer_shapes(model, data_prop=True)`` (when it succeeds);
  any value whose shape is fully known and whose size exceeds the sandbox's memory limit (``RLIMIT_AS`` of the
  child, else ``SAFECOMPRESS_SANDBOX_MEMORY``) is refused, naming the tensor. Sizes inference cannot see are
  bounded by the address-space limit at run time.
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

    @classmethod
    def preload(cls) -> None:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

    def __init__(self, path, content: bytes, batch_size: int = 256, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        super().__init__(path, content, batch_size, threads)
        try:
            model = onnx.load_from_string(content)
        except Exception as exc:  # DecodeError...
            raise ArtifactError(f"{self.name} is not a loadable ONNX model (onnx.checker: "
                                f"{one_line(exc, 200)})") from None
        refuse_external_data(self.name, model)  # before the checker, which would look for the files
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # ValidationError...
            raise ArtifactError(f"{self.name} is not a loadable ONNX model (onnx.checker: "
                                f"{one_line(exc, 200)})") from None
        check_graph(self.name, model)
        self.operators = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for g in _graphs(model) for n in g.node})
        del model
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

    def details(self) -> dict:
        return {"operators": list(self.operators)}

    def _run(self, xb: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: xb})[0]


# ------------------------------------------------------------------------------------- static checks
#: Largest trip count a ``Loop`` may get from a constant.
MAX_LOOP_TRIPS = 10**7


def _graphs(model):
    """Every graph of ``model``: the main graph, its subgraphs (``If``/``Loop``/``Scan`` bodies, at any depth),
    the bodies of local functions and training-info graphs."""
    import onnx

    todo = [model.graph]
    todo += [ti.initialization for ti in model.training_info] + [ti.algorithm for ti in model.training_info]
    nodes_of_functions = [n for f in model.functions for n in f.node]
    seen = 0
    while todo:
        g = todo.pop()
        seen += 1
        if seen > 100_000:
            raise ArtifactError("the ONNX model nests more than 100,000 graphs")
        yield g
        for node in g.node:
            todo += _subgraphs(node, onnx)
    for node in nodes_of_functions:
        for sub in _subgraphs(node, onnx):
            yield from _graphs_of(sub, onnx)


def _graphs_of(graph, onnx):
    todo = [graph]
    while todo:
        g = todo.pop()
        yield g
        for node in g.node:
            todo += _subgraphs(node, onnx)


def _subgraphs(node, onnx) -> list:
    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend(attr.graphs)
    return out


def _tensors(model):
    """``(where, TensorProto)`` for every tensor stored in ``model``."""
    import onnx

    def of_nodes(nodes, where):
        for node in nodes:
            label = f"{where}: {node.op_type} node {node.name or '(unnamed)'}"
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield label, attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from ((label, t) for t in attr.tensors)
                elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                    yield label, attr.sparse_tensor.values
                    yield label, attr.sparse_tensor.indices
                elif attr.type == onnx.AttributeProto.SPARSE_TENSORS:
                    for st in attr.sparse_tensors:
                        yield label, st.values
                        yield label, st.indices

    for g in _graphs(model):
        where = f"graph {g.name or '(unnamed)'}"
        yield from ((where, t) for t in g.initializer)
        for st in g.sparse_initializer:
            yield where, st.values
            yield where, st.indices
        yield from of_nodes(g.node, where)
    for f in model.functions:
        yield from of_nodes(f.node, f"function {f.name}")


def refuse_external_data(name: str, model) -> None:
    """:class:`ArtifactError` when any tensor of ``model`` keeps its data in an external file."""
    import onnx

    for where, t in _tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            location = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise ArtifactError(
                f"{name}: the tensor {_label(t.name)} ({where}) keeps its data in an external file "
                f"({_label(location)}); external data is refused: it would be read from outside the artifact and is "
                "not covered by its digest. Re-save the model with its data inside: "
                "onnx.save(model, path, save_as_external_data=False)")


def check_graph(name: str, model) -> None:
    """Loop trip counts and declared tensor sizes (see the module docstring); :class:`ArtifactError` if not.
    Clears the data of large tensors in ``model`` (see :func:`_drop_large_tensor_data`)."""
    _check_loops(name, model)
    _check_sizes(name, model)


def _constants(graph) -> dict:
    """Small integer constants of ``graph``: name -> value (initializers and ``Constant`` nodes)."""
    import onnx
    from onnx import numpy_helper

    out = {}

    def small_int(t):
        if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) or int(np.prod(t.dims or [1])) != 1:
            return None
        try:
            return int(numpy_helper.to_array(t).reshape(-1)[0])
        except Exception:  # noqa: BLE001 - malformed: the checker or the runtime will say so
            return None

    for t in graph.initializer:
        v = small_int(t)
        if v is not None:
            out[t.name] = v
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for attr in node.attribute:
                v = small_int(attr.t) if attr.name == "value" else attr.i if attr.name == "value_int" else None
                if v is not None:
                    out[node.output[0]] = int(v)
    return out


def _check_loops(name: str, model) -> None:
    import onnx

    def walk(graph, outer: dict):
        known = {**outer, **_constants(graph)}
        for node in graph.node:
            if node.op_type == "Loop" and node.domain in ("", "ai.onnx") and node.input and node.input[0]:
                trips = known.get(node.input[0])
                if trips is not None and trips > MAX_LOOP_TRIPS:
                    raise ArtifactError(
                        f"{name}: the Loop node {_label(node.name or '(unnamed)')} runs {trips} iterations (trip count "
                        f"{_label(node.input[0])} is a constant), more than the {MAX_LOOP_TRIPS:,} an inference graph "
                        "may declare; refused")
            for sub in _subgraphs(node, onnx):
                walk(sub, known)

    walk(model.graph, {})
    for f in model.functions:
        walk(onnx.helper.make_graph(list(f.node), f.name, [], []), {})


def memory_limit() -> int:
    """Bytes a tensor may never exceed: this process's address-space limit (the sandbox child's), or the
    configured sandbox memory (``SAFECOMPRESS_SANDBOX_MEMORY``, default 1536M) when this process has none or may not
    ask (the child's seccomp filter refuses ``prlimit64``, which ``getrlimit`` uses)."""
    import resource

    from device_tests.sandbox.limits import SandboxLimits

    configured = SandboxLimits.from_env().memory_bytes
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except OSError:
        return configured
    if soft != resource.RLIM_INFINITY and soft > 0:
        return int(soft)
    return configured


def _check_sizes(name: str, model) -> None:
    import math

    import onnx

    _drop_large_tensor_data(model)  # inference needs shapes and small (shape) values, not the weights
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the runtime's own checks still apply
        return
    limit = memory_limit()
    for g in _graphs(inferred):
        for vi in (*g.input, *g.value_info, *g.output):
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
                continue
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if any(d is None or d < 0 for d in dims):
                continue
            try:
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
            except Exception:  # noqa: BLE001 - unknown / string element types
                itemsize = 1
            size = math.prod(dims) * max(1, itemsize)
            if size > limit:
                raise ArtifactError(
                    f"{name}: the tensor {_label(vi.name)} would hold {dims} elements of "
                    f"{onnx.TensorProto.DataType.Name(tt.elem_type).lower()} = {size / 1024**3:.1f} GiB, more than "
                    f"the sandbox's memory limit ({limit / 1024**3:.1f} GiB, SAFECOMPRESS_SANDBOX_MEMORY); refused")


#: Tensors with more elements keep only their type and shape in the copy shape inference sees.
_KEEP_DATA_ELEMENTS = 4096


def _drop_large_tensor_data(model) -> None:
    """Clear the data of large stored tensors in place (dims and type stay): shape inference then copies a model
    of kilobytes, not of the weights' size. Only for the model object the checks use; the session is created
    from the artifact's bytes."""
    import math

    for _, t in _tensors(model):
        if math.prod(t.dims) > _KEEP_DATA_ELEMENTS:
            for name in ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data",
                         "uint64_data"):
                t.ClearField(name)


def _label(text: str, limit: int = 80) -> str:
    return repr("".join(ch if ch.isprintable() else "?" for ch in str(text))[:limit])
