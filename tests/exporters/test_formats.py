"""Every format x MLP/CNN x mode from the trained digits models: parity in the real runtime, batching, sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exporters.validate import TOLERANCES

CASES = [
    *[("keras", arch, "tflite", mode) for arch in ("mlp", "cnn") for mode in ("float", "dynamic", "float16", "int8")],
    *[("keras", arch, "onnx", "float") for arch in ("mlp", "cnn")],
    ("keras", "cnn", "onnx", "dynamic"),
    *[("torch", arch, "onnx", mode) for arch in ("mlp", "cnn") for mode in ("float", "dynamic")],
    *[("torch", arch, "ptl", "float") for arch in ("mlp", "cnn")],
    ("torch", "mlp", "pte", "float"),
    ("torch", "cnn", "pte", "int8"),
    ("torch", "cnn", "pte", "float"),
    ("torch", "mlp", "pte", "int8"),
]


@pytest.mark.parametrize("framework,arch,fmt,mode", CASES)
def test_export_parity_batches_and_sidecar(framework, arch, fmt, mode, exported, trained, digits_parts):
    from device_tests import load_artifact
    from toolkit.models import predict_proba

    info = exported(framework, arch, fmt, mode)
    path = Path(info.path)
    content = path.read_bytes()
    tol = TOLERANCES[mode]
    # the sidecar is the ArtifactInfo, and states what is on disk
    side = json.loads(Path(str(path) + ".json").read_text())
    assert side == json.loads(json.dumps(info.to_dict()))
    import hashlib

    assert side["sha256"] == hashlib.sha256(content).hexdigest() and side["bytes"] == len(content)
    assert 0 < side["gzip_bytes"] <= len(content) + 64
    assert (side["format"], side["mode"], side["n_classes"]) == (fmt, mode, 10)
    assert side["input_shape"] == [8, 8, 1] and side["input_dtype"] == "float32"
    assert side["source"]["framework"] == framework and side["outputs"] == "probabilities"
    assert side["parity"]["n"] == 200
    assert side["parity"]["max_abs_diff"] <= tol.max_abs_diff and side["parity"]["top1_agreement"] >= tol.min_top1
    assert not list(path.parent.glob(f".tmp-*{path.name}"))  # no temporary files left

    rt = load_artifact(path)
    assert (rt.format, rt.n_classes, rt.input_shape, rt.sha256) == (fmt, 10, (8, 8, 1), side["sha256"])
    x = digits_parts["nonmembers"].x
    ref = predict_proba(trained(framework, arch), x[:300])
    outs = {}
    for n in (1, 7, 300):  # the same runtime at several batch sizes (resize / pad / chunk paths)
        p = rt.predict_proba(x[:n])
        assert p.shape == (n, 10) and p.dtype == np.float32
        assert np.allclose(p.sum(1), 1.0, atol=1e-3)
        assert np.abs(p - ref[:n]).max() <= tol.max_abs_diff
        outs[n] = p
    assert np.mean(outs[300].argmax(1) == ref.argmax(1)) >= tol.min_top1
    # Float artifacts answer a row the same whatever else is in the batch; dynamic int8 (ONNX Runtime) picks
    # activation scales per batch, so a row's output depends on its batch-mates, within the mode's tolerance.
    same_row = 1e-5 if mode in ("float", "float16") else tol.max_abs_diff
    assert np.abs(outs[7] - outs[300][:7]).max() <= same_row


def test_quantized_artifacts_are_smaller(exported):
    f = exported("keras", "mlp", "tflite", "float").bytes
    assert exported("keras", "mlp", "tflite", "int8").bytes < 0.4 * f
    assert exported("keras", "mlp", "tflite", "dynamic").bytes < 0.4 * f
    assert exported("keras", "mlp", "tflite", "float16").bytes < 0.6 * f
    assert exported("torch", "mlp", "onnx", "dynamic").bytes < 0.4 * exported("torch", "mlp", "onnx", "float").bytes


def test_onnx_is_one_file_with_dynamic_batch(exported):
    import onnx

    info = exported("torch", "cnn", "onnx", "float")
    path = Path(info.path)
    assert sorted(p.name for p in path.parent.glob(path.name + "*")) == [path.name, path.name + ".json"]
    m = onnx.load(str(path))
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value
    assert m.graph.node[-1].op_type == "Softmax"
    assert {p.key: p.value for p in m.metadata_props}["safecompress.n_classes"] == "10"


def test_int8_tflite_has_int8_io_and_pte_int8_is_smaller(exported):
    from device_tests import load_artifact

    rt = load_artifact(exported("keras", "cnn", "tflite", "int8").path)
    assert rt.input_dtype == np.int8
    assert exported("torch", "cnn", "pte", "int8").bytes < 0.5 * exported("torch", "mlp", "onnx", "float").bytes


def test_refusals_leave_nothing_behind(trained, sample, tmp_path, monkeypatch):
    from exporters import export
    from toolkit.errors import ConfigError, ExportError

    x, _ = sample
    torch_mlp, keras_mlp = trained("torch", "mlp"), trained("keras", "mlp")
    with pytest.raises(ConfigError, match="unknown export format 'tfl'.*tflite"):
        export(torch_mlp, "tfl", tmp_path / "a", x)
    with pytest.raises(ExportError, match="tflite artifacts are made from keras or tflite models, not torch"):
        export(torch_mlp, "tflite", tmp_path / "a.tflite", x)
    with pytest.raises(ExportError, match="ptl artifacts are made from torch models, not keras"):
        export(keras_mlp, "ptl", tmp_path / "a.ptl", x)
    with pytest.raises(ExportError, match="unknown export mode 'int4'"):
        export(torch_mlp, "onnx", tmp_path / "a.onnx", x, mode="int4")
    with pytest.raises(ExportError, match="int8 ONNX comes from a torch_static_int8 model"):
        export(torch_mlp, "onnx", tmp_path / "a.onnx", x, mode="int8")
    with pytest.raises(ExportError, match="unknown onnx export option"):
        export(torch_mlp, "onnx", tmp_path / "a.onnx", x, opset=3)
    with pytest.raises(ExportError, match="NaN"):
        export(torch_mlp, "onnx", tmp_path / "a.onnx", np.full_like(x, np.nan))
    # an artifact outside its tolerance is not written (nor its sidecar)
    from exporters import validate

    monkeypatch.setitem(validate.TOLERANCES, "float", validate.Tolerance(max_abs_diff=-1.0, min_top1=1.0))
    with pytest.raises(ExportError, match="does not match its source model"):
        export(torch_mlp, "onnx", tmp_path / "a.onnx", x)
    assert list(tmp_path.iterdir()) == []


def test_export_does_not_change_the_model_mode(trained, sample, tmp_path):
    from exporters import export

    model = trained("torch", "mlp")
    assert not model.training
    export(model, "onnx", tmp_path / "m.onnx", sample[0][:20], exporter="legacy")
    assert not any(m.training for m in model.modules())
