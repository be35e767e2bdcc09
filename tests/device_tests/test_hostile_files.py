"""Corrupt, truncated, pickled and hostile files give one-line errors naming the file, never a crash of this
process: every artifact runs in the sandbox; programs (.ptl/.pte) are checked against the inference-operator
allowlist and ONNX graphs for external data, loop and allocation bombs before anything runs."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from device_tests import load_artifact
from toolkit.errors import ArtifactError

REFUSED = "pickle files are refused; safe formats: .tflite, .onnx, .ptl, .pte"


def _flip(content: bytes, seed: int, n: int = 12) -> bytes:
    rng = np.random.default_rng(seed)
    b = bytearray(content)
    for i in rng.integers(8, len(b), n):
        b[i] = int(rng.integers(0, 256))
    return bytes(b)


@pytest.fixture(scope="module")
def hostile(ours, tmp_path_factory):
    """name -> path of a bad file (corrupt variants of real artifacts, pickles, junk)."""
    import torch

    d = tmp_path_factory.mktemp("hostile")
    files = {}

    def put(name, content):
        (d / name).write_bytes(content)
        files[name] = d / name

    real = {fmt: open(ours("keras" if fmt == "tflite" else "torch", "mlp", fmt), "rb").read()
            for fmt in ("tflite", "onnx", "ptl", "pte")}
    for fmt, content in real.items():
        put(f"truncated.{fmt}", content[: len(content) // 2])
    put("flipped.onnx", _flip(real["onnx"], 0))
    put("flipped.tflite", _flip(real["tflite"], 1))
    put("empty.onnx", b"")
    put("tiny.tflite", b"TFL3")
    put("junk.tflite", b"TFL3" + bytes(range(256)) * 8)  # identifier at offset 0, not 4
    put("random.pte", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("header-only.pte", real["pte"][:64])
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buf)
    put("checkpoint.pt", buf.getvalue())
    put("model.pkl", pickle.dumps({"weights": [1, 2, 3]}))
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    put("full-script.ptl", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    put("other.zip", buf.getvalue())
    return files


@pytest.mark.parametrize("name,needle", [
    ("truncated.tflite", "truncated.tflite: LiteRT cannot load"),
    ("truncated.onnx", "truncated.onnx"),
    ("truncated.ptl", "truncated.ptl: a corrupt zip archive"),
    ("truncated.pte", "truncated.pte: the ExecuTorch runtime"),
    ("flipped.onnx", "flipped.onnx"),
    ("flipped.tflite", "flipped.tflite"),
    ("empty.onnx", "artifact is empty"),
    ("tiny.tflite", "tiny.tflite: only 4 bytes"),
    ("junk.tflite", "junk.tflite: unrecognized or corrupt artifact"),
    ("random.pte", "random.pte"),
    ("header-only.pte", "header-only.pte"),
    ("checkpoint.pt", f"checkpoint.pt: is a torch.save checkpoint that can only be loaded by unpickling: {REFUSED}"),
    ("model.pkl", f"model.pkl: {REFUSED}"),
    ("full-script.ptl", "full-script.ptl: is a full TorchScript archive (torch.jit.save)"),
    ("other.zip", "other.zip: a zip archive that is not a PyTorch lite-interpreter model"),
])
def test_bad_files_give_one_line_errors(name, needle, hostile):
    path = hostile[name]
    try:
        rt = load_artifact(path)
        rt.predict_proba(np.zeros((2, 8, 8, 1), np.float32))  # a flipped file may load: then it must answer
    except ArtifactError as exc:
        msg = str(exc)
        assert needle in msg and "\n" not in msg, msg
    else:
        assert name.startswith("flipped"), f"{name} was accepted"


def _make_hostile():
    """tests/reliability/hostile/make_hostile.py, imported by path (it is not a package of this directory)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "reliability" / "hostile" / "make_hostile.py"
    spec = importlib.util.spec_from_file_location("make_hostile_for_device_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_crash_in_the_sandbox_is_one_line_and_the_caller_survives():
    """A file that crashes its runtime natively kills only the sandbox child: one-line ArtifactError naming it."""
    from pathlib import Path

    crash = Path(__file__).resolve().parents[1] / "reliability" / "corpus" / "ptl" / "native-crash-isolated.ptl"
    with pytest.raises(ArtifactError) as info:
        load_artifact(crash).predict_proba(np.zeros((2, 8, 8, 1), np.float32))
    msg = str(info.value)
    assert msg.startswith("native-crash-isolated.ptl: ") and "stopped in the sandbox" in msg and "\n" not in msg


@pytest.mark.parametrize("op,fmt,needle", [
    ("aten::from_file", "ptl", "file/storage/process access is never allowed"),
    ("aten::from_file.out", "pte", "file/storage/process access is never allowed"),
    ("aten::save", "ptl", "never allowed"),
    ("aten::set_.source_Storage", "ptl", "never allowed"),
    ("prim::rpc_async", "ptl", "never allowed"),
    ("prim::PythonOp", "ptl", "never allowed"),
    ("aten::wait", "ptl", "never allowed"),
    ("c10d::allreduce_", "ptl", "namespace 'c10d'"),
    ("profiler::_record_function_enter", "ptl", "namespace 'profiler'"),
    ("my_ops::anything", "pte", "namespace 'my_ops'"),
    ("quantized::linear", "pte", "namespace 'quantized'"),
    ("aten::no_such_op", "ptl", "does not know"),
])
def test_operator_rule_refuses(op, fmt, needle):
    from device_tests.runtimes.ops import check_ops, op_problem

    assert needle in op_problem(op, fmt)
    with pytest.raises(ArtifactError, match=f"m.{fmt}: uses operator {op}, .*; refused"):
        check_ops(f"m.{fmt}", ["aten::linear", op], fmt)


@pytest.mark.parametrize("op,fmt", [
    ("aten::linear", "ptl"), ("aten::conv2d", "ptl"), ("aten::_convolution", "ptl"), ("aten::batch_norm", "ptl"),
    ("aten::add.Tensor", "ptl"), ("aten::adaptive_avg_pool2d", "ptl"), ("aten::hardswish_", "ptl"),
    ("aten::softmax.int", "ptl"), ("aten::einsum", "ptl"), ("aten::div.Tensor_mode", "ptl"), ("aten::gelu", "ptl"),
    ("aten::scaled_dot_product_attention", "ptl"), ("aten::layer_norm", "ptl"), ("aten::embedding", "ptl"),
    ("aten::format", "ptl"), ("aten::__getitem__.Dict_str", "ptl"), ("aten::warn", "ptl"), ("prim::Print", "ptl"),
    ("prim::RaiseException", "ptl"), ("prim::TupleUnpack", "ptl"), ("aten::quantize_per_tensor", "ptl"),
    ("quantized::linear_dynamic", "ptl"), ("quantized::conv2d.new", "ptl"), ("quantized::linear_relu", "ptl"),
    ("aten::sym_size.int", "pte"), ("executorch_prim::et_view.default", "pte"), ("aten::addmm.out", "pte"),
    ("dim_order_ops::_to_dim_order_copy.out", "pte"), ("quantized_decomposed::quantize_per_tensor.out", "pte"),
])
def test_operator_rule_accepts_inference_ops(op, fmt):
    from device_tests.runtimes.ops import op_problem

    assert op_problem(op, fmt) is None


def test_ptl_payloads_are_refused_before_they_load(tmp_path, monkeypatch):
    """In the runtime itself (what the sandbox child runs): file operators are refused before loading (a
    ``__setstate__`` runs at load) and nothing is read or written; an int ``forward`` is refused, not crashed."""
    from device_tests.runtimes.lite import LiteInterpreterRuntime

    mh = _make_hostile()
    victim = mh.make_victim(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    for kind in ("ptl_read_file", "ptl_write_file", "ptl_setstate_write"):
        with pytest.raises(ArtifactError, match=r"x.ptl: uses operator aten::from_file, which is not an inference "
                                                r"operator \(file/storage/process access is never allowed\); refused"):
            LiteInterpreterRuntime(tmp_path / "x.ptl", mh.build(kind))
    with pytest.raises(ArtifactError, match=r"x.ptl: its forward takes \(n: int\), not one tensor"):
        LiteInterpreterRuntime(tmp_path / "x.ptl", mh.build("ptl_int_input"))
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    rt = LiteInterpreterRuntime(tmp_path / "x.ptl", mh.build("ptl_print"))
    assert "prim::Print" in rt.details()["operators"]


def test_pte_operator_table_and_delegates(tmp_path):
    from pathlib import Path

    from device_tests.runtimes.ops import check_delegates, check_ops, pte_program_ops

    mh = _make_hostile()
    seed = (Path(__file__).resolve().parents[1] / "reliability" / "corpus" / "seeds" / "mlp.pte").read_bytes()
    plans = pte_program_ops(seed)
    assert list(plans) == ["forward"] and plans["forward"]["delegates"] == ["XnnpackBackend"]
    assert check_ops("m.pte", plans["forward"]["operators"], "pte")
    forged = pte_program_ops(mh.build("pte_forbidden_op"))["forward"]["operators"]
    assert "aten::from_file.out" in forged
    with pytest.raises(ArtifactError, match="uses operator aten::from_file.out"):
        check_ops("m.pte", forged, "pte")
    with pytest.raises(ArtifactError, match="delegates to the backend QnnBackend, which is not on the allowlist"):
        check_delegates("m.pte", pte_program_ops(mh.build("pte_forbidden_backend"))["forward"]["delegates"])
    for bad in (seed[:200], b"\xff" * 64, seed[:8] + b"\xff\xff\xff\x7f" * 40):  # out-of-range offsets
        with pytest.raises(ValueError):
            pte_program_ops(bad)


def test_onnx_static_checks(tmp_path, monkeypatch):
    """External data (relative to the cwd), constant loop trip counts and declared tensor sizes are refused
    before a session exists; nothing is read from the victim directory."""
    from device_tests.runtimes.onnxrt import OnnxRuntime

    mh = _make_hostile()
    mh.make_victim(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtifactError, match=r"x.onnx: the tensor 'secret' .* external file \('victim/secret.env'\).*"
                                            r"onnx.save\(model, path, save_as_external_data=False\)"):
        OnnxRuntime(tmp_path / "x.onnx", mh.build("onnx_external_data"))
    with pytest.raises(ArtifactError, match=r"x.onnx: the Loop node 'spin' runs 4611686018427387904 iterations"):
        OnnxRuntime(tmp_path / "x.onnx", mh.build("onnx_loop_huge"))
    with pytest.raises(ArtifactError, match=r"x.onnx: the tensor 'big' would hold \[1048576, 1100\] elements .* "
                                            r"more than the sandbox's memory limit"):
        OnnxRuntime(tmp_path / "x.onnx", mh.build("onnx_alloc_visible"))
    with pytest.raises(ArtifactError, match=r"x.onnx: the tensor 'hidden' \(graph then: Constant node inner\) keeps "
                                            r"its data in an external file \('../victim/secret.env'\)"):
        OnnxRuntime(tmp_path / "x.onnx", _onnx_with_external_constant_in_a_subgraph())
    monkeypatch.setenv("SAFECOMPRESS_SANDBOX_MEMORY", "256M")  # this process has no RLIMIT_AS: the setting applies
    with pytest.raises(ArtifactError, match=r"x.onnx: the tensor .* more than the sandbox's memory limit \(0.2 GiB"):
        OnnxRuntime(tmp_path / "x.onnx", _onnx_with_big_constant_of_shape(300 * 1024**2 // 4))
    monkeypatch.delenv("SAFECOMPRESS_SANDBOX_MEMORY")
    rt = OnnxRuntime(tmp_path / "x.onnx", mh.build("onnx_loop_data"))  # a data-dependent count: the timeout's job
    assert "ai.onnx::Loop" in rt.details()["operators"]


def _onnx_with_external_constant_in_a_subgraph() -> bytes:
    """An ``If`` whose then-branch holds a ``Constant`` with external data (the walk must reach subgraphs)."""
    from onnx import TensorProto, helper

    hidden = TensorProto(name="hidden", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    entry = hidden.external_data.add()
    entry.key, entry.value = "location", "../victim/secret.env"
    out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])
    then = helper.make_graph([helper.make_node("Constant", [], ["c"], name="inner", value=hidden)], "then", [], [out])
    other = helper.make_graph([helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
        "z", TensorProto.FLOAT, [4], [0, 0, 0, 0]))], "else", [], [out])
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("ReduceMax", ["flat"], ["m"], keepdims=0),
             helper.make_node("Cast", ["m"], ["b"], to=TensorProto.BOOL),
             helper.make_node("If", ["b"], ["c"], then_branch=then, else_branch=other),
             helper.make_node("Add", ["flat", "c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _onnx_with_big_constant_of_shape(n: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([n], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["s"], keepdims=1),
             helper.make_node("Flatten", ["x"], ["flat"]),
             helper.make_node("Add", ["flat", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("name", ["checkpoint.pt", "truncated.ptl", "junk.tflite"])
def test_cli_bad_files_exit_2_with_one_line(name, hostile, tmp_path):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1")
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8, 8, 1), np.float32))
    for args in (["inspect", hostile[name]], ["query", hostile[name], "--data", tmp_path / "x.npz"]):
        r = subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 2, (r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
