"""Every compression method (its ``example`` config on the digits MLP) exported to every format it lists in
``Method.exports``, reloaded in the format's runtime and checked for parity with the compressed model.

``torch_prune_heads`` applies to transformer text models only (``archs`` = bert/gpt2 in the METHODS registry):
it is not run on the MLP; ``test_text_only_method_exports`` exports it from a tiny BERT instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.compress import METHODS, get_method

MLP_METHODS = [n for n in METHODS.names() if "mlp" in METHODS.meta(n)["archs"]]
TEXT_ONLY = [n for n in METHODS.names() if n not in MLP_METHODS]


def _cases():
    for name in MLP_METHODS:
        for fmt in get_method(name).exports:
            yield name, fmt


@pytest.fixture(scope="module")
def compressed(trained, digits_parts, quick_recipe):
    from toolkit.compress import CompressData, compress

    cache: dict = {}
    m, n = digits_parts["members"], digits_parts["nonmembers"]

    def get(name: str):
        if name not in cache:
            method = get_method(name)
            data = CompressData(m.x, m.y, n.x[:200], n.y[:200], quick_recipe)
            cache[name] = compress(trained(method.framework, "mlp"), {"method": name, **(method.example or {})}, data)
        return cache[name]

    return get


@pytest.mark.parametrize("name,fmt", list(_cases()))
def test_method_exports_and_reloads(name, fmt, compressed, digits_parts, tmp_path):
    from device_tests import load_artifact
    from exporters import export
    from exporters.validate import TOLERANCES
    from toolkit.models import predict_proba

    result = compressed(name)
    x = digits_parts["nonmembers"].x
    info = export(result, fmt, tmp_path / f"{name}.{fmt}", x[:200], representative=digits_parts["members"].x[:200])
    side = json.loads(Path(info.path + ".json").read_text())
    assert side["source"]["method"] == name and side["format"] == fmt
    tol = TOLERANCES[info.mode]
    rt = load_artifact(info.path)
    p, ref = rt.predict_proba(x[:300]), predict_proba(result.model, x[:300])
    assert p.shape == (300, 10)
    assert np.abs(p - ref).max() <= tol.max_abs_diff
    assert np.mean(p.argmax(1) == ref.argmax(1)) >= tol.min_top1


def test_modes_are_recorded_from_the_method(compressed, digits_parts, tmp_path):
    from exporters import export
    from toolkit.errors import ExportError

    x = digits_parts["nonmembers"].x[:50]
    assert export(compressed("tflite_int8"), "tflite", tmp_path / "a.tflite", x).mode == "int8"
    assert export(compressed("tflite_float16"), "tflite", tmp_path / "b.tflite", x).mode == "float16"
    assert export(compressed("torch_dynamic_int8"), "ptl", tmp_path / "c.ptl", x).mode == "dynamic"
    assert export(compressed("torch_static_int8"), "onnx", tmp_path / "d.onnx", x).mode == "int8"
    with pytest.raises(ExportError, match="torch_dynamic_int8 models export to ptl, not onnx"):
        export(compressed("torch_dynamic_int8"), "onnx", tmp_path / "e.onnx", x)
    with pytest.raises(ExportError, match="no ONNX export"):  # the bare module, without the method's name
        export(compressed("torch_dynamic_int8").model, "onnx", tmp_path / "e.onnx", x)
    with pytest.raises(ExportError, match="already int8-quantized"):
        export(compressed("torch_static_int8"), "ptl", tmp_path / "f.ptl", x, mode="dynamic")
    with pytest.raises(ExportError, match="torch.export rejects"):
        export(compressed("torch_static_int8").model, "pte", tmp_path / "g.pte", x)
    assert not any(p.name[0] in "efg" for p in tmp_path.iterdir())


def test_text_only_method_exports(tmp_path):
    """torch_prune_heads on a tiny BERT (random token ids, a real fine-tune), exported to ONNX and reloaded."""
    from device_tests import load_artifact
    from exporters import export
    from toolkit.compress import CompressData, compress
    from toolkit.models import TrainRecipe, predict_proba, train_reference_model
    from toolkit.models.text_nets import TextModelSpec

    assert TEXT_ONLY == ["torch_prune_heads"]
    rng = np.random.default_rng(0)
    x = rng.integers(4, 60, size=(64, 12)).astype(np.int64)
    y = (x[:, 0] > 30).astype(np.int64)
    spec = TextModelSpec(arch="bert", vocab_size=64, seq_len=12, n_classes=2, layers=1, heads=2, hidden=32,
                         intermediate=64)
    recipe = TrainRecipe(epochs=2, batch_size=16, lr=3e-3, seed=0)
    model = train_reference_model(spec, "torch", x, y, recipe)
    method = get_method("torch_prune_heads")
    result = compress(model, {"method": "torch_prune_heads", **method.example}, CompressData(x, y, x, y, recipe))
    for fmt in method.exports:
        info = export(result, fmt, tmp_path / f"heads.{fmt}", x[:16])
        assert info.input_dtype == "int64" and info.parity["cases"]["short"]["max_abs_diff"] < 1e-4
        p = load_artifact(info.path).predict_proba(x[:5, :7])
        assert np.abs(p - predict_proba(result.model, x[:5, :7])).max() < 1e-4
