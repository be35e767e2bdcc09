"""Method-specific checks of the NNI backends (pruners + ModelSpeedup, QAT/PTQ quantizers).

Beyond the registry-generated conformance suite: structured pruners really shrink the MLP and the CNN (and
each uses its own criterion), Taylor trains before it masks, Level keeps shapes and bakes its masks, the
quantizers return plain (NNI-free) fake-quant modules that reproduce NNI's simulation, and NNI stays quiet
on stdout and is imported lazily.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from toolkit.compress import CompressData, compress
from toolkit.errors import CompressionError, ConfigError

ARCHS = ("mlp", "cnn")
STRUCTURED = ("nni_l1norm", "nni_l2norm", "nni_fpgm", "nni_taylor")
#: Parameters after removing half the output channels of every layer but the classifier (digits, 8x8x1):
#: MLP 64-128-64-10, CNN conv 16 filters -> Linear 256-64 -> 10.
SHRUNK_PARAMS = {"mlp": 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10,
                 "cnn": 16 * 9 + 16 + 256 * 64 + 64 + 64 * 10 + 10}


@pytest.fixture(scope="module")
def data(digits_parts, quick_recipe):
    tr, te = digits_parts["members"], digits_parts["nonmembers"]
    return CompressData(tr.x, tr.y, te.x, te.y, quick_recipe)


def layers(model):
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def assert_no_nni(model):
    assert not any("_nni_wrapper" in n or "ModuleWrapper" in type(m).__name__ for n, m in model.named_modules())
    assert not any("_nni_wrapper" in k for k in model.state_dict())


def rows(w: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in w.reshape(w.shape[0], -1)}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_pruners_really_shrink(name, arch, trained, data):
    import torch

    model = trained("torch", arch)
    result = compress(model, {"method": name, "sparsity": 0.5, "fine_tune_epochs": 0}, data)
    shrunk = result.model
    assert_no_nni(shrunk)
    assert result.stats.params_before == sum(p.numel() for p in model.parameters())
    assert result.stats.params_after == SHRUNK_PARAMS[arch] == sum(p.numel() for p in shrunk.parameters())
    before, after = layers(model), layers(shrunk)
    assert [n for n, _ in before] == [n for n, _ in after]
    for (name_, a), (_, b) in zip(before[:-1], after[:-1]):
        assert b.weight.shape[0] == a.weight.shape[0] // 2, name_
    assert after[-1][1].weight.shape[0] == 10  # every class kept
    assert result.stats.extra["channels"] == {n: {"before": a.weight.shape[0], "after": a.weight.shape[0] // 2}
                                              for n, a in before[:-1]}
    with torch.no_grad():
        assert shrunk(torch.from_numpy(data.x_eval[:5])).shape == (5, 10)
    torch.fx.symbolic_trace(shrunk)  # still an ordinary traceable module


def test_norm_criteria_keep_original_rows_and_differ(trained, data):
    model = trained("torch", "mlp")
    first = layers(model)[0][1].weight.detach().numpy()
    kept = {}
    for name in ("nni_l1norm", "nni_fpgm"):
        shrunk = compress(model, {"method": name, "sparsity": 0.5, "fine_tune_epochs": 0}, data).model
        kept[name] = rows(layers(shrunk)[0][1].weight.detach().numpy())
        assert kept[name] <= rows(first)  # channels removed, the rest untouched (no fine-tuning asked)
    assert kept["nni_l1norm"] != kept["nni_fpgm"]


def test_taylor_trains_to_estimate_importance(trained, data):
    model = trained("torch", "mlp")
    result = compress(model, {"method": "nni_taylor", "sparsity": 0.5, "importance_epochs": 1,
                              "fine_tune_epochs": 0}, data)
    steps = int(np.ceil(len(data.x) / data.recipe.batch_size))
    assert result.stats.extra["importance_steps"] == steps
    assert result.fine_tune_epochs == 1 and result.stats.extra["importance_seconds"] > 0
    # The surviving channels were trained by NNI's evaluator loop: none is an untouched row of the input.
    first = rows(layers(model)[0][1].weight.detach().numpy())
    assert not rows(layers(result.model)[0][1].weight.detach().numpy()) & first
    assert result.accuracy >= result.base_accuracy - 0.1


def test_structured_fine_tuning_is_measured(trained, data):
    result = compress(trained("torch", "cnn"), {"method": "nni_l2norm", "sparsity": 0.5, "fine_tune_epochs": 1}, data)
    assert result.fine_tune_epochs == 1 and result.seconds_per_epoch > 0
    assert result.accuracy >= result.base_accuracy - 0.1


def test_sparsity_that_removes_no_channel_fails_loudly(trained, data):
    with pytest.raises(CompressionError, match="removed no channel"):
        compress(trained("torch", "cnn"), {"method": "nni_l1norm", "sparsity": 0.005, "fine_tune_epochs": 0}, data)


@pytest.mark.parametrize("arch", ARCHS)
def test_level_masks_are_baked_in_without_shrinking(arch, trained, data):
    model = trained("torch", arch)
    result = compress(model, {"method": "nni_level", "sparsity": 0.7, "fine_tune_epochs": 1}, data)
    assert_no_nni(result.model)
    assert result.model.state_dict().keys() == model.state_dict().keys()
    assert result.stats.params_after == result.stats.params_before
    for (name, a), (_, b) in zip(layers(model), layers(result.model)):
        w = b.weight.detach().numpy()
        assert w.shape == tuple(a.weight.shape)
        assert np.mean(w == 0) >= np.floor(0.7 * w.size) / w.size, name
        kept = w != 0
        assert not np.allclose(w[kept], a.weight.detach().numpy()[kept])  # fine-tuned through NNI's wrappers


@pytest.mark.parametrize("arch", ARCHS)
def test_qat_returns_a_plain_fake_quant_module(arch, trained, data):
    import torch

    result = compress(trained("torch", arch), {"method": "nni_qat", "fine_tune_epochs": 1, "quant_start_step": 2},
                      data)
    model = result.model
    assert_no_nni(model)
    fq = [m for m in model.modules() if type(m).__name__ == "FakeQuantized"]
    assert len(fq) == len(layers(model)) == len(result.stats.bits)
    assert set(result.stats.bits.values()) == {8}
    for layer in result.stats.layers:
        assert layer.distinct_values <= 255, layer
    assert result.fine_tune_epochs == 1 and result.stats.extra["training_steps"] == 10
    assert result.accuracy >= result.base_accuracy - 0.05
    torch.jit.script(model)  # the frozen simulation is plain TorchScript-able torch


def test_qat_needs_quantization_to_start_within_training(trained, data):
    with pytest.raises(ConfigError, match="quant_start_step"):
        compress(trained("torch", "mlp"), {"method": "nni_qat", "fine_tune_epochs": 1, "quant_start_step": 10}, data)


@pytest.mark.parametrize("arch", ARCHS)
def test_ptq_rounds_the_trained_weights_without_training(arch, trained, data):
    model = trained("torch", arch)
    result = compress(model, {"method": "nni_ptq", "bits": 4, "calibration_samples": 100}, data)
    assert set(result.stats.bits.values()) == {4}
    assert result.fine_tune_epochs == 0
    for (name, a), (_, b) in zip(layers(model), layers(result.model)):
        w, q = a.weight.detach().numpy(), b.weight.detach().numpy()
        assert len(np.unique(q)) <= 15, name  # int4 levels -7..7
        step = (max(w.max(), 0) - min(w.min(), 0)) / 14
        assert np.abs(q - w).max() <= step / 2 + 1e-6, name  # rounded, not trained
    assert result.accuracy >= result.base_accuracy - 0.3  # 4-bit activations too: coarse but far above chance
    with pytest.raises(ConfigError, match="fine_tune_epochs"):
        compress(model, {"method": "nni_ptq", "fine_tune_epochs": 1}, data)


def test_nni_prints_nothing_on_stdout(trained, data, capfd):
    compress(trained("torch", "cnn"), {"method": "nni_fpgm", "sparsity": 0.5, "fine_tune_epochs": 0}, data)
    compress(trained("torch", "cnn"), {"method": "nni_ptq"}, data)
    assert capfd.readouterr().out == ""


def test_backend_modules_import_no_framework():
    code = ("import sys, toolkit.compress.backends.nni_prune, toolkit.compress.backends.nni_quant, "
            "toolkit.compress.backends.torch_prune, toolkit.compress.backends.torch_quant, "
            "toolkit.compress.backends.torch_cluster; "
            "print(sorted(m for m in ('torch', 'nni', 'tensorflow', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
