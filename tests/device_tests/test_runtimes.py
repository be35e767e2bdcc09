"""Runtimes behind one protocol: foreign artifacts, format detection from content, shape adaptation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from device_tests import load_artifact
from toolkit.errors import ArtifactError, DataError


def test_foreign_tflite_with_int8_io_emitting_logits(trained, digits_parts, tmp_path):
    """A plain TFLiteConverter model (full int8, int8 input and output, no softmax, fixed NHWC input)."""
    from toolkit.frameworks import tf
    from toolkit.models import predict_proba

    keras_model = trained("keras", "cnn")
    members = digits_parts["members"].x[:100]

    def representative():
        for i in range(len(members)):
            yield [members[i:i + 1]]

    T = tf()
    conv = T.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [T.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = T.int8
    conv.inference_output_type = T.int8
    path = tmp_path / "foreign.tflite"
    path.write_bytes(conv.convert())

    rt = load_artifact(path)
    assert (rt.format, rt.input_dtype, rt.input_shape, rt.n_classes) == ("tflite", np.int8, (8, 8, 1), 10)
    x = digits_parts["nonmembers"].x[:300]
    ref = predict_proba(keras_model, x)
    for n in (1, 7, 300):
        p = rt.predict_proba(x[:n])
        assert p.shape == (n, 10) and np.allclose(p.sum(1), 1, atol=1e-4)  # logits -> softmax by the runtime
    p = rt.predict_proba(x)
    assert np.mean(p.argmax(1) == ref.argmax(1)) >= 0.9 and np.abs(p - ref).max() < 0.35


def test_foreign_onnx_with_nchw_input_emitting_logits(trained, digits_parts, tmp_path):
    """A plain torch.onnx.export model taking NCHW (n, 1, 8, 8), emitting logits; queried with NHWC data."""
    import torch

    from toolkit.models import predict_proba

    model = trained("torch", "cnn")

    class NCHW(torch.nn.Module):  # an NCHW-native model: (n, 1, 8, 8) in, logits out
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 2, 3, 1))

    x = digits_parts["nonmembers"].x[:300]
    wrapped = NCHW(model).eval()
    sample = torch.from_numpy(x[:2].transpose(0, 3, 1, 2).copy())
    dyn, fixed = tmp_path / "nchw.onnx", tmp_path / "fixed.onnx"
    torch.onnx.export(wrapped, (sample,), str(dyn), dynamo=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    torch.onnx.export(wrapped, (torch.from_numpy(x[:4].transpose(0, 3, 1, 2).copy()),), str(fixed), dynamo=False)
    ref = predict_proba(model, x)
    rt = load_artifact(dyn)
    assert rt.input_shape == (1, 8, 8) and rt.n_classes == 10 and not rt.fixed_batch
    assert np.abs(rt.predict_proba(x) - ref).max() < 1e-4  # NHWC data transposed to NCHW
    assert np.abs(rt.predict_proba(x.transpose(0, 3, 1, 2)) - ref).max() < 1e-4
    rt4 = load_artifact(fixed)  # batch fixed at 4: served by padding
    assert rt4.fixed_batch and rt4.max_batch == 4
    for n in (1, 7):
        assert np.abs(rt4.predict_proba(x[:n]) - ref[:n]).max() < 1e-4


def test_foreign_ptl_without_metadata(trained, digits_parts, tmp_path):
    import torch

    from toolkit.models import predict_proba

    model = trained("torch", "mlp")
    path = tmp_path / "plain.ptl"
    torch.jit.script(model.eval())._save_for_lite_interpreter(str(path))
    rt = load_artifact(path)
    assert rt.format == "ptl" and rt.input_shape is None
    x = digits_parts["nonmembers"].x[:50]
    assert np.abs(rt.predict_proba(x) - predict_proba(model, x)).max() < 1e-5 and rt.n_classes == 10


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "ptl", "pte"])
def test_format_is_detected_from_content_not_extension(fmt, ours, tmp_path, digits_parts):
    framework = "keras" if fmt == "tflite" else "torch"
    src = ours(framework, "mlp", fmt)
    disguised = tmp_path / "model.bin"
    shutil.copyfile(src, disguised)
    rt = load_artifact(disguised)
    assert rt.format == fmt and rt.path == disguised
    x = digits_parts["nonmembers"].x[:9]
    assert np.abs(rt.predict_proba(x) - load_artifact(src).predict_proba(x)).max() < 1e-6


def test_shape_adaptation_and_refusals(ours, digits_parts):
    rt = load_artifact(ours("torch", "cnn", "onnx"))
    x = digits_parts["nonmembers"].x[:20]
    p = rt.predict_proba(x)
    assert np.abs(rt.predict_proba(x.reshape(20, 64)) - p).max() < 1e-6  # flat data reshaped
    assert np.abs(rt.predict_proba(x.transpose(0, 3, 1, 2)) - p).max() < 1e-6  # NCHW data transposed
    with pytest.raises(DataError, match=r"ours-torch-cnn-float.onnx: samples have shape \(65,\), the artifact expects \(8, 8, 1\)"):
        rt.predict_proba(np.zeros((3, 65), np.float32))
    with pytest.raises(DataError, match="NaN or inf"):
        rt.predict_proba(np.full((2, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(DataError, match="numeric array"):
        rt.predict_proba(np.array([["a"] * 64]))
    lite = load_artifact(ours("keras", "mlp", "tflite"))
    with pytest.raises(DataError, match="ours-keras-mlp-float.tflite: samples have shape"):
        lite.predict_proba(np.zeros((3, 7), np.float32))


def test_runtime_attributes(ours):
    import hashlib
    from pathlib import Path

    for framework, fmt in (("keras", "tflite"), ("torch", "onnx"), ("torch", "ptl"), ("torch", "pte")):
        path = Path(ours(framework, "mlp", fmt))
        rt = load_artifact(path, batch_size=64, threads=1)
        content = path.read_bytes()
        assert (rt.format, rt.path, rt.bytes, rt.sha256) == (fmt, path, len(content), hashlib.sha256(content).hexdigest())
        assert (rt.input_shape, rt.input_dtype, rt.n_classes, rt.batch_size, rt.threads) == ((8, 8, 1), np.float32, 10, 64, 1)
    with pytest.raises(ArtifactError, match="batch_size must be >= 1"):
        load_artifact(path, batch_size=0)
