"""Method-specific checks of the PyTorch backends (torch.nn.utils.prune, torch.ao quantization, clustering).

The registry-generated conformance suite checks targets, accuracy and no-ops; these check what each method
promises beyond that: per-layer / global / structured zero patterns, masks baked in, int8 modules for MLP
and CNN, tied clusters that survive fine-tuning, and the declared export formats.
"""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.compress import CompressData, compress, get_method
from toolkit.errors import CompressionError, ConfigError

ARCHS = ("mlp", "cnn")


@pytest.fixture(scope="module")
def data(digits_parts, quick_recipe):
    tr, te = digits_parts["members"], digits_parts["nonmembers"]
    return CompressData(tr.x, tr.y, te.x, te.y, quick_recipe)


def layers(model):
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def plain_weights(model):
    """The prunable weights as numpy; fails if a pruning reparametrization is still attached."""
    out = {}
    for name, mod in layers(model):
        assert not hasattr(mod, "weight_orig") and not mod._forward_pre_hooks, f"{name} still carries a prune mask"
        assert not hasattr(mod, "parametrizations"), f"{name} still carries a parametrization"
        out[name] = mod.weight.detach().numpy().copy()
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_l1_unstructured_prunes_every_layer_and_bakes_the_masks(arch, trained, data):
    model = trained("torch", arch)
    result = compress(model, {"method": "torch_l1_unstructured", "sparsity": 0.6, "fine_tune_epochs": 1}, data)
    weights = plain_weights(result.model)
    assert result.model.state_dict().keys() == model.state_dict().keys()
    dense = {n: m.weight.detach().numpy() for n, m in layers(model)}
    for name, w in weights.items():
        assert np.mean(w == 0) >= round(0.6 * w.size) / w.size
        kept = w != 0
        # Fine-tuning trained the surviving weights (with the mask in place, the pruned ones stayed zero).
        assert not np.allclose(w[kept], dense[name][kept])
    assert result.fine_tune_epochs == 1 and result.seconds_per_epoch > 0


def test_global_unstructured_ranks_weights_across_layers(trained, data):
    result = compress(trained("torch", "mlp"), {"method": "torch_global_unstructured", "sparsity": 0.7,
                                                "fine_tune_epochs": 0}, data)
    weights = plain_weights(result.model)
    zeros = sum(int(np.sum(w == 0)) for w in weights.values())
    total = sum(w.size for w in weights.values())
    assert zeros >= round(0.7 * total)
    per_layer = [float(np.mean(w == 0)) for w in weights.values()]
    # One global threshold: the layers end up with different sparsities, unlike per-layer pruning.
    assert max(per_layer) - min(per_layer) > 0.05, per_layer
    assert result.stats.extra["layer_sparsity"] == pytest.approx(dict(zip((f"{n}.weight" for n in weights),
                                                                          per_layer)))


def zero_slices(w: np.ndarray, dim: int) -> int:
    other = tuple(d for d in range(w.ndim) if d != dim)
    return int(np.sum(np.all(w == 0, axis=other)))


@pytest.mark.parametrize("arch", ARCHS)
def test_ln_structured_zeroes_output_channels_but_keeps_every_class(arch, trained, data):
    result = compress(trained("torch", arch), {"method": "torch_ln_structured", "sparsity": 0.5, "n": 1,
                                               "fine_tune_epochs": 1}, data)
    weights = plain_weights(result.model)
    *hidden, last = weights
    for name in hidden:
        w = weights[name]
        assert zero_slices(w, 0) == w.shape[0] // 2, name
    # The classifier's outputs are the classes: pruned along its inputs instead, every class row alive.
    assert zero_slices(weights[last], 0) == 0
    assert zero_slices(weights[last], 1) == weights[last].shape[1] // 2
    assert result.stats.sparsity >= 0.5 - 1e-3


def test_ln_structured_along_inputs(trained, data):
    result = compress(trained("torch", "mlp"), {"method": "torch_ln_structured", "sparsity": 0.25, "dim": 1,
                                                "fine_tune_epochs": 0}, data)
    for name, w in plain_weights(result.model).items():
        assert zero_slices(w, 1) == round(0.25 * w.shape[1]), name


def test_pruning_amount_too_small_to_prune_anything_fails_loudly(trained, data):
    with pytest.raises(CompressionError, match="masks nothing"):
        compress(trained("torch", "mlp"), {"method": "torch_ln_structured", "sparsity": 0.001}, data)


@pytest.mark.parametrize("arch", ARCHS)
def test_static_int8_quantizes_every_layer_of_mlp_and_cnn(arch, trained, data):
    import torch

    from toolkit.models import n_params, predict_proba
    from toolkit.models.torch_nets import quantized_layer_types, weight_arrays

    model = trained("torch", arch)
    result = compress(model, {"method": "torch_static_int8", "calibration_samples": 128}, data)
    q = result.model
    names = [n for n, _ in layers(model)]
    for name in names:
        mod = q.get_submodule(name)
        assert isinstance(mod, quantized_layer_types()) and mod.weight().dtype == torch.qint8
    assert result.stats.bits == {f"{n}.weight": 8 for n in names}
    # Measured on the dequantized int8 weights; packed weights count as parameters.
    assert set(weight_arrays(q)) == {f"{n}.weight" for n in names}
    assert n_params(q) == n_params(model)
    agree = np.mean(predict_proba(q, data.x_eval).argmax(1) == predict_proba(model, data.x_eval).argmax(1))
    assert agree >= 0.97 and result.accuracy >= result.base_accuracy - 0.03
    assert result.stats.extra["calibration_samples"] == 128


def test_dynamic_int8_quantizes_linear_layers_only(trained, data):
    import torch

    result = compress(trained("torch", "cnn"), {"method": "torch_dynamic_int8"}, data)
    linear = [n for n, m in layers(trained("torch", "cnn")) if isinstance(m, torch.nn.Linear)]
    assert result.stats.bits == {f"{n}.weight": 8 for n in linear}
    dtypes = {layer.name: layer.dtype for layer in result.stats.layers}
    assert len(dtypes) == 3  # the conv stays float and is still measured
    assert any("float32" in note for note in result.notes)
    assert result.accuracy >= result.base_accuracy - 0.02


def test_post_training_quantization_refuses_fine_tuning(trained, data):
    with pytest.raises(ConfigError, match="fine_tune_epochs"):
        compress(trained("torch", "mlp"), {"method": "torch_static_int8", "fine_tune_epochs": 1}, data)


def partition(w: np.ndarray) -> np.ndarray:
    """Which weights share a value: the index of each weight's value among the sorted distinct values."""
    return np.unique(w, return_inverse=True)[1].reshape(-1)


@pytest.mark.parametrize("arch", ARCHS)
def test_cluster_keeps_tied_weights_through_fine_tuning(arch, trained, data):
    model = trained("torch", arch)
    cfg = {"method": "torch_cluster", "n_clusters": 8, "seed": 3}
    snapped = plain_weights(compress(model, {**cfg, "fine_tune_epochs": 0}, data).model)
    result = compress(model, {**cfg, "fine_tune_epochs": 1}, data)
    tuned = plain_weights(result.model)
    for name in tuned:
        assert len(np.unique(tuned[name])) <= 8, name
        # Fine-tuning moved the shared centroids, never single weights: same assignment, new values.
        assert not np.array_equal(tuned[name], snapped[name]), name
        np.testing.assert_array_equal(partition(tuned[name]), partition(snapped[name]))
    assert result.stats.max_distinct_values <= 8
    assert result.stats.extra["clustered_layers"] == [f"{n}.weight" for n in tuned]


def test_cluster_fine_tuning_is_deterministic(trained, data):
    cfg = {"method": "torch_cluster", "n_clusters": 16, "fine_tune_epochs": 1}
    a, b = (plain_weights(compress(trained("torch", "mlp"), cfg, data).model) for _ in range(2))
    assert all(np.array_equal(a[n], b[n]) for n in a)


def test_cluster_linear_init_and_oversized_request(trained, data):
    result = compress(trained("torch", "mlp"), {"method": "torch_cluster", "n_clusters": 4, "init": "linear",
                                                "fine_tune_epochs": 0}, data)
    assert result.stats.max_distinct_values <= 4
    with pytest.raises(ConfigError, match="too many"):
        compress(trained("torch", "cnn"), {"method": "torch_cluster", "n_clusters": 8192, "fine_tune_epochs": 0},
                 data)


def export_outputs(model, x: np.ndarray, fmt: str, tmp_path) -> np.ndarray:
    """Run ``model`` exported to ``fmt`` with the plain library calls (the exporters package wraps these)."""
    import torch

    xt = torch.from_numpy(x)
    if fmt == "onnx":
        import onnxruntime as ort

        path = str(tmp_path / "m.onnx")
        torch.onnx.export(model, (xt[:4],), path, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        return ort.InferenceSession(path).run(None, {"x": x})[0]
    if fmt == "ptl":
        from torch.jit.mobile import _load_for_lite_interpreter

        path = str(tmp_path / "m.ptl")
        torch.jit.script(model)._save_for_lite_interpreter(path)
        return _load_for_lite_interpreter(path)(xt).detach().numpy()
    raise AssertionError(fmt)


@pytest.mark.parametrize("name", ["torch_ln_structured", "torch_dynamic_int8", "torch_static_int8", "torch_cluster"])
def test_declared_onnx_and_ptl_exports_reproduce_the_model(name, trained, data, tmp_path):
    import warnings

    import torch

    method = get_method(name)
    result = compress(trained("torch", "cnn"), {"method": name, **method.example}, data)
    x = data.x_eval[:100]
    with torch.no_grad():
        want = result.model(torch.from_numpy(x)).numpy()
    for fmt in ("onnx", "ptl"):
        if fmt not in method.exports:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = export_outputs(result.model, x, fmt, tmp_path)
        # ONNX Runtime's int8 kernels round a few activations differently from fbgemm: one step at most.
        np.testing.assert_allclose(got, want, atol=0.5 if name == "torch_static_int8" else 1e-4)
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.99
