"""ONNX export of text models through ``exporters.export``: dynamic batch and sequence axes, int64 ids, queried
through ``device_tests.load_artifact`` (ONNX Runtime)."""

import json

import numpy as np
import pytest

from device_tests import load_artifact
from exporters import export
from toolkit.errors import ArtifactError, DataError, ExportError
from toolkit.models import predict_proba


@pytest.fixture(scope="module")
def exported(trained_text, text_tokens, tmp_path_factory):
    """``{(arch, mode): path}`` for float and dynamic-int8 exports of both tiny models."""
    d = tmp_path_factory.mktemp("text-onnx")
    xm = text_tokens[1][0]
    out = {}
    for arch in ("bert", "gpt2"):
        for mode in ("float", "dynamic"):
            path = d / f"{arch}-{mode}.onnx"
            export(trained_text(arch), "onnx", path, xm[:8], mode=mode)
            out[(arch, mode)] = path
    return out


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_float_parity_at_any_batch_and_sequence_length(arch, exported, trained_text, text_tokens):
    import onnx

    path = exported[(arch, "float")]
    graph_input = onnx.load(str(path)).graph.input
    assert len(graph_input) == 1 and graph_input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = [d.dim_param for d in graph_input[0].type.tensor_type.shape.dim]
    assert all(dims) and len(dims) == 2  # both axes symbolic
    rt = load_artifact(path)
    model = trained_text(arch)
    xn = text_tokens[2][0]
    width = int((xn != 0).sum(axis=1).max())
    for batch, seq in ((1, xn.shape[1]), (37, xn.shape[1]), (5, width), (3, 4)):
        x = np.ascontiguousarray(xn[:batch, :seq])
        if seq < width:
            x[:, -1] = 3  # a truncated row still ends like a tokenizer output would
        assert np.abs(rt.predict_proba(x) - predict_proba(model, x)).max() < 1e-4
    side = json.loads(path.with_suffix(".onnx.json").read_text())
    assert side["mode"] == "float" and side["input_dtype"] == "int64" and side["outputs"] == "probabilities"
    assert side["parity"]["cases"]["short"]["max_abs_diff"] < 1e-4
    assert rt.input_shape == (None,) and rt.max_seq_len == xn.shape[1] and rt.input_dtype == np.int64


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_dynamic_int8_is_smaller_and_agrees(arch, exported, text_tokens):
    import onnx

    f, q = exported[(arch, "float")], exported[(arch, "dynamic")]
    assert q.stat().st_size < 0.6 * f.stat().st_size
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(q)).graph.node}
    xn = text_tokens[2][0]
    a, b = load_artifact(f).predict_proba(xn), load_artifact(q).predict_proba(xn)
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.9 and np.abs(a - b).max() < 0.2


def test_runtime_refuses_bad_input_and_files(exported, tmp_path, text_tokens):
    rt = load_artifact(exported[("bert", "float")])
    xn = text_tokens[2][0]
    with pytest.raises(DataError, match="integer array of token ids"):
        rt.predict_proba(xn.astype(np.float32))
    with pytest.raises(DataError, match="position table holds"):
        rt.predict_proba(np.concatenate([xn[:2], xn[:2]], axis=1))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    with pytest.raises(ArtifactError, match="bad.onnx"):
        load_artifact(bad)


def test_export_refusals(trained_text, text_tokens, tmp_path):
    xm = text_tokens[1][0]
    with pytest.raises(ExportError, match="integer token ids"):
        export(trained_text("bert"), "onnx", tmp_path / "m.onnx", xm[:4].astype(np.float32))
    with pytest.raises(ExportError, match="unknown export mode"):
        export(trained_text("bert"), "onnx", tmp_path / "m.onnx", xm[:4], mode="int4")
    with pytest.raises(ExportError, match="not supported"):
        export(trained_text("bert"), "onnx", tmp_path / "m.onnx", xm[:4], mode="int8")
    assert not (tmp_path / "m.onnx").exists()
