"""Hostile artifacts, built with the real frameworks: what an attacker would hand ``safecompress``.

    .venv/bin/python tests/reliability/hostile/make_hostile.py OUTDIR [KIND ...]

writes one file per kind (all kinds by default) into OUTDIR and prints their names and sizes. Each builder is
also importable: ``build(kind) -> bytes`` and ``write(kind, outdir) -> Path``; :data:`KINDS` lists them with the
file name, what the artifact tries to do and what safecompress must answer. Every builder takes well under 10 s
(TensorFlow's import dominates the ``.tflite`` one).

The payloads aim at files *relative to the current directory* (``victim/secret.env``, ``victim/target.pth``):
the tests run the CLI in a directory that holds them (:func:`make_victim`) and check that nothing there changes
and that the secret's bytes never come back.

Kinds:

* ``ptl_read_file`` - ``torch.from_file("victim/secret.env")`` in ``forward``, the bytes returned as outputs.
* ``ptl_write_file`` - ``torch.from_file("victim/target.pth", shared=True).fill_(65)``: overwrites a file.
* ``ptl_setstate_write`` - the same write in ``__setstate__``, which runs while the module *loads*.
* ``ptl_print`` - prints a forged ``verdict: PASS`` (and a JSON-looking line), then answers normally.
* ``ptl_int_input`` - ``forward(self, n: int)``: not a tensor model at all.
* ``ptl_infinite_loop`` - a TorchScript ``while`` loop that never ends.
* ``pte_forbidden_op`` - a real XNNPACK ``.pte`` whose operator table was rewritten to name
  ``aten::from_file.out`` (the flatbuffer stays valid).
* ``pte_forbidden_backend`` - the same program with its delegate's backend id rewritten to ``QnnBackend``.
* ``onnx_external_data`` - an initializer whose data is "external", at ``victim/secret.env`` (relative path).
* ``onnx_loop_huge`` - a ``Loop`` whose trip count is the constant 2^62.
* ``onnx_loop_data`` - a ``Loop`` whose trip count is ``max(x) * 1e12``: zero iterations on zeros, endless on
  real data.
* ``onnx_alloc_visible`` - ``ConstantOfShape`` of a constant shape: 4.3 GiB of float32, visible to shape
  inference.
* ``onnx_alloc_hidden`` - the same size computed by ``ReduceProd`` (shape inference cannot see it; ONNX
  Runtime's constant folding allocates it while the session is created).
* ``onnx_alloc_data`` - ``Expand`` to a length computed from the data: tiny on zeros, 8 GB on real data.
* ``onnx_float16`` / ``onnx_float64`` - honest graphs with float16 / float64 inputs (they must work).
* ``tflite_huge_batch`` - a tf_keras model converted with a fixed batch of 10^7.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SEEDS = HERE.parent / "corpus" / "seeds"

#: What the payloads look for, relative to the current directory of the process that runs them.
SECRET_PATH = "victim/secret.env"
TARGET_PATH = "victim/target.pth"
SECRET = b"API_TOKEN=sk-live-7f3a9c2e1b4d6a8f0e2c4b6a8d0f2e4c6b8a0d2f4e6c8\n"  # 64 bytes
assert len(SECRET) == 64
TARGET = b"import sys  # a .pth file: python runs this line at start-up\n"
MARKER = "verdict: PASS"


def make_victim(root: Path) -> Path:
    """``root/victim/secret.env`` and ``root/victim/target.pth`` (the files the payloads aim at); returns the
    ``victim`` directory."""
    victim = Path(root) / "victim"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "secret.env").write_bytes(SECRET)
    (victim / "target.pth").write_bytes(TARGET)
    return victim


# ============================================================================================ .ptl
def _torch():
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    return torch


def _lite(module) -> bytes:
    torch = _torch()
    return torch.jit.script(module)._save_to_buffer_for_lite_interpreter()


def ptl_read_file() -> bytes:
    torch = _torch()

    class ReadFile(torch.nn.Module):
        def forward(self, x):
            secret = torch.from_file("victim/secret.env", shared=False, size=64, dtype=torch.uint8)
            return x.reshape(x.shape[0], -1)[:, :1] * 0.0 + secret.float().unsqueeze(0)

    return _lite(ReadFile())


def ptl_write_file() -> bytes:
    torch = _torch()

    class WriteFile(torch.nn.Module):
        def forward(self, x):
            target = torch.from_file("victim/target.pth", shared=True, size=16, dtype=torch.uint8)
            written = target.fill_(65)  # used below: TorchScript drops side effects nothing reads
            return torch.softmax(x.reshape(x.shape[0], -1)[:, :10], dim=1) + written[:1].float() * 0.0

    return _lite(WriteFile())


def ptl_setstate_write() -> bytes:
    torch = _torch()

    class WriteOnLoad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.ones(10)

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            target = torch.from_file("victim/target.pth", shared=True, size=16, dtype=torch.uint8)
            written = target.fill_(66)
            self.w = state[0] + written[:1].float() * 0.0
            self.training = state[1]

        def forward(self, x):
            return torch.softmax(x.reshape(x.shape[0], -1)[:, :10] * self.w, dim=1)

    return _lite(WriteOnLoad())


def ptl_print() -> bytes:
    torch = _torch()

    class Prints(torch.nn.Module):
        def forward(self, x):
            print("verdict: PASS")
            print('{"forged": true}\nverdict: PASS')
            return torch.softmax(x.reshape(x.shape[0], -1)[:, :10], dim=1)

    return _lite(Prints())


def ptl_int_input() -> bytes:
    torch = _torch()

    class IntInput(torch.nn.Module):
        def forward(self, n: int):
            return torch.zeros(n, 10)

    return _lite(IntInput())


def ptl_infinite_loop() -> bytes:
    torch = _torch()

    class Spins(torch.nn.Module):
        def forward(self, x):
            i = 0
            while i >= 0:
                i = i + 1
                if i > 1000000:
                    i = 0
            return torch.softmax(x.reshape(x.shape[0], -1)[:, :10], dim=1)

    return _lite(Spins())


# ============================================================================================ .pte
def _fb_strings(buf: bytes) -> dict[str, list[tuple[int, int]]]:
    """``{"op" | "overload" | "backend": [(position, length), ...]}`` of the strings of the first execution plan's
    operator table and delegates (a minimal flatbuffer walk over ExecuTorch's program.fbs)."""

    def u32(p):
        return struct.unpack_from("<I", buf, p)[0]

    def field(t, i):
        v = t - struct.unpack_from("<i", buf, t)[0]
        if 4 + 2 * i >= struct.unpack_from("<H", buf, v)[0]:
            return None
        o = struct.unpack_from("<H", buf, v + 4 + 2 * i)[0]
        return t + o if o else None

    def deref(p):
        return p + u32(p)

    def vector(t, i):
        f = field(t, i)
        if f is None:
            return []
        v = deref(f)
        return [deref(v + 4 + 4 * k) for k in range(u32(v))]

    def string(t, i):
        s = deref(field(t, i))
        return s, u32(s)

    plan = vector(u32(0), 1)[0]  # Program.execution_plan[0]
    out: dict[str, list[tuple[int, int]]] = {"op": [], "overload": [], "backend": []}
    for op in vector(plan, 6):  # ExecutionPlan.operators: Operator {name, overload}
        out["op"].append(string(op, 0))
        out["overload"].append(string(op, 1))
    for d in vector(plan, 7):  # ExecutionPlan.delegates: BackendDelegate {id, ...}
        out["backend"].append(string(d, 0))
    return out


def _rewrite(buf: bytearray, where: tuple[int, int], text: str) -> None:
    """Replace a flatbuffer string in place by a shorter or equal one (length field, bytes, NUL padding)."""
    pos, size = where
    new = text.encode()
    assert len(new) <= size, (text, size)
    struct.pack_into("<I", buf, pos, len(new))
    buf[pos + 4:pos + 4 + size + 1] = new + b"\0" * (size + 1 - len(new))


def _base_pte(base: Path | None) -> bytearray:
    """A real ``.pte`` (default: the committed seed exported by ``exporters`` with torch.export + XNNPACK)."""
    return bytearray(Path(base or SEEDS / "mlp.pte").read_bytes())


def pte_forbidden_op(base: Path | None = None) -> bytes:
    buf = _base_pte(base)
    strings = _fb_strings(bytes(buf))
    names = [bytes(buf[p + 4:p + 4 + n]).decode() for p, n in strings["op"]]
    k = max(range(len(names)), key=lambda i: strings["op"][i][1])  # the longest name has room for ours
    _rewrite(buf, strings["op"][k], "aten::from_file")
    if strings["overload"][k][1] >= 3:
        _rewrite(buf, strings["overload"][k], "out")
    return bytes(buf)


def pte_forbidden_backend(base: Path | None = None) -> bytes:
    buf = _base_pte(base)
    for where in _fb_strings(bytes(buf))["backend"]:
        _rewrite(buf, where, "QnnBackend")
    return bytes(buf)


# ============================================================================================ .onnx
def _onnx_model(nodes, inits, x_type=None, opset: int = 17, out_width: int = 10) -> bytes:
    from onnx import TensorProto, helper

    x_type = TensorProto.FLOAT if x_type is None else x_type
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("x", x_type, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("y", x_type, ["N", out_width])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_hostile")
    model.ir_version = 8
    return model.SerializeToString()


def _head(src: str = "flat", width: int = 64, out: str = "y") -> tuple[list, list]:
    """``y = softmax(src @ W)`` with a fixed (64, 10) weight."""
    import numpy as np
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, width * 10, dtype=np.float32).reshape(width, 10), "w_head")
    return [helper.make_node("MatMul", [src, "w_head"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [out], axis=1)], [w]


def _flatten():
    from onnx import helper

    return helper.make_node("Flatten", ["x"], ["flat"], axis=1)


def onnx_external_data() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    secret = TensorProto(name="secret", data_type=TensorProto.FLOAT, dims=[16])
    secret.data_location = TensorProto.EXTERNAL
    for key, value in (("location", SECRET_PATH), ("offset", "0"), ("length", "64")):
        entry = secret.external_data.add()
        entry.key, entry.value = key, value
    zeros = numpy_helper.from_array(np.zeros((64, 16), np.float32), "zeros")
    nodes = [_flatten(), helper.make_node("MatMul", ["flat", "zeros"], ["z"]),
             helper.make_node("Add", ["z", "secret"], ["leak"]),
             helper.make_node("Softmax", ["leak"], ["y"], axis=1)]
    return _onnx_model(nodes, [zeros, secret], out_width=16)


def _loop(trips_name: str) -> tuple[list, list]:
    """``v = flat; for i in range(trips): v = v + 1``; then the head on ``v``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones((), np.float32), "one")
    cond = numpy_helper.from_array(np.array(True), "cond")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    loop = helper.make_node("Loop", [trips_name, "cond", "flat"], ["v"], name="spin", body=body)
    head, head_inits = _head("v")
    return [loop, *head], [one, cond, *head_inits]


def onnx_loop_huge() -> bytes:
    from onnx import TensorProto, helper

    trips = helper.make_node("Constant", [], ["trips"], name="trip_count",
                             value=helper.make_tensor("t", TensorProto.INT64, [], [2**62]))
    nodes, inits = _loop("trips")
    return _onnx_model([_flatten(), trips, *nodes], inits)


def onnx_loop_data() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.array(1e12, np.float32), "scale")
    nodes, inits = _loop("trips")
    pre = [_flatten(), helper.make_node("ReduceMax", ["x"], ["xmax"], keepdims=0),
           helper.make_node("Mul", ["xmax", "scale"], ["scaled"]),
           helper.make_node("Cast", ["scaled"], ["trips"], to=TensorProto.INT64)]
    return _onnx_model([*pre, *nodes], [scale, *inits])


def _alloc(shape_nodes: list, inits: list, shape_name: str) -> bytes:
    """``big = ConstantOfShape(shape)`` (float32 ones), reduced to a scalar and added to the head's output."""
    import numpy as np
    from onnx import TensorProto, helper

    head, head_inits = _head("flat", out="probs")
    nodes = [_flatten(), *shape_nodes,
             helper.make_node("ConstantOfShape", [shape_name], ["big"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Mul", ["total", "tiny"], ["nudge"]),
             *head, helper.make_node("Add", ["probs", "nudge"], ["y"])]
    from onnx import numpy_helper

    tiny = numpy_helper.from_array(np.array(0.0, np.float32), "tiny")
    return _onnx_model(nodes, [*inits, tiny, *head_inits])


def onnx_alloc_visible() -> bytes:
    import numpy as np
    from onnx import numpy_helper

    shape = numpy_helper.from_array(np.array([1 << 20, 1100], np.int64), "shape")
    return _alloc([], [shape], "shape")


def onnx_alloc_hidden() -> bytes:
    import numpy as np
    from onnx import helper, numpy_helper

    factors = numpy_helper.from_array(np.array([1 << 20, 1100], np.int64), "factors")
    return _alloc([helper.make_node("ReduceProd", ["factors"], ["shape"], keepdims=1)], [factors], "shape")


def onnx_alloc_data() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.array(2e9, np.float32), "scale")
    one = numpy_helper.from_array(np.array([1], np.int64), "one_i")
    nodes = [helper.make_node("ReduceMax", ["x"], ["xmax"], keepdims=1, axes=[0, 1, 2, 3]),
             helper.make_node("Mul", ["xmax", "scale"], ["scaled"]),
             helper.make_node("Cast", ["scaled"], ["n_f"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["n_f", "one_i"], ["n1"]),
             helper.make_node("Max", ["n1", "one_i"], ["shape"])]
    return _alloc(nodes, [scale, one], "shape")


def _onnx_float(dtype: str) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    np_type = {"float16": np.float16, "float64": np.float64}[dtype]
    onnx_type = {"float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE}[dtype]
    w = numpy_helper.from_array(np.linspace(-1, 1, 640).reshape(64, 10).astype(np_type), "w")
    nodes = [_flatten(), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    return _onnx_model(nodes, [w], x_type=onnx_type)


def onnx_float16() -> bytes:
    return _onnx_float("float16")


def onnx_float64() -> bytes:
    return _onnx_float("float64")


# ============================================================================================ .tflite
def tflite_huge_batch(batch: int = 10**7) -> bytes:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras

    inp = tf_keras.Input(shape=(8, 8, 1), batch_size=batch)
    out = tf_keras.layers.Dense(10, activation="softmax")(tf_keras.layers.Flatten()(inp))
    model = tf_keras.Model(inp, out)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


# ============================================================================================ registry
#: kind -> (file name, builder, what it tries, what safecompress must answer)
KINDS = {
    "ptl_read_file": ("read-file.ptl", ptl_read_file, "reads victim/secret.env into its outputs",
                      "refused: aten::from_file"),
    "ptl_write_file": ("write-file.ptl", ptl_write_file, "overwrites victim/target.pth", "refused: aten::from_file"),
    "ptl_setstate_write": ("setstate-write.ptl", ptl_setstate_write, "overwrites victim/target.pth while loading",
                           "refused before loading: aten::from_file"),
    "ptl_print": ("prints.ptl", ptl_print, "prints a forged 'verdict: PASS'", "runs; its output never reaches stdout"),
    "ptl_int_input": ("int-input.ptl", ptl_int_input, "forward takes an int", "one-line error"),
    "ptl_infinite_loop": ("infinite-loop.ptl", ptl_infinite_loop, "never returns", "stopped by the per-call timeout"),
    "pte_forbidden_op": ("forbidden-op.pte", pte_forbidden_op, "names aten::from_file.out in its operator table",
                         "refused: aten::from_file"),
    "pte_forbidden_backend": ("forbidden-backend.pte", pte_forbidden_backend, "delegates to QnnBackend",
                              "refused: backend QnnBackend"),
    "onnx_external_data": ("external-data.onnx", onnx_external_data, "reads victim/secret.env as external data",
                           "refused: external data"),
    "onnx_loop_huge": ("loop-2e62.onnx", onnx_loop_huge, "a Loop of 2^62 iterations", "refused: Loop node spin"),
    "onnx_loop_data": ("loop-on-data.onnx", onnx_loop_data, "loops 1e12 times on real data, not on zeros",
                       "stopped by the per-call timeout"),
    "onnx_alloc_visible": ("alloc-visible.onnx", onnx_alloc_visible, "allocates 4.3 GiB (a constant shape)",
                           "refused: tensor 'big' exceeds the memory limit"),
    "onnx_alloc_hidden": ("alloc-hidden.onnx", onnx_alloc_hidden, "allocates 4.3 GiB (a computed shape)",
                          "fails within the memory limit"),
    "onnx_alloc_data": ("alloc-data.onnx", onnx_alloc_data, "allocates 8 GB on real data",
                        "fails within the memory limit"),
    "onnx_float16": ("float16.onnx", onnx_float16, "nothing: an honest float16 graph", "works"),
    "onnx_float64": ("float64.onnx", onnx_float64, "nothing: an honest float64 graph", "works"),
    "tflite_huge_batch": ("batch-1e7.tflite", tflite_huge_batch, "a fixed batch of 10^7", "refused: fixed batch"),
}


def build(kind: str) -> bytes:
    return KINDS[kind][1]()


def write(kind: str, outdir: Path) -> Path:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / KINDS[kind][0]
    path.write_bytes(build(kind))
    return path


def main(argv: list[str]) -> int:
    import time

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    outdir, kinds = Path(argv[0]), argv[1:] or list(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        print(f"unknown kind(s) {unknown}; known: {', '.join(KINDS)}", file=sys.stderr)
        return 2
    for kind in kinds:
        t0 = time.perf_counter()
        path = write(kind, outdir)
        print(f"{kind:22s} {path.name:24s} {path.stat().st_size:9d} bytes {time.perf_counter() - t0:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
