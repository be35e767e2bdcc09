"""The torch compressors on transformer text models, and torch_prune_heads (structured head/FFN pruning)."""

import numpy as np
import pytest

from toolkit.compress import METHODS, CompressData, compress
from toolkit.errors import ConfigError, ModelError
from toolkit.models import predict_proba

ARCHS = ("bert", "gpt2")


@pytest.fixture(scope="module")
def text_data(text_tokens, text_recipe):
    (xm, ym), (xn, yn) = text_tokens[1], text_tokens[2]
    return CompressData(xm, ym, xn, yn, text_recipe.model_copy(update={"epochs": 1}))


def _named(model, kind):
    return {n: p.detach().clone() for n, p in model.named_parameters() if kind in n}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["torch_l1_unstructured", "torch_global_unstructured"])
def test_magnitude_pruning_prunes_linear_layers_only(arch, method, trained_text, text_data):
    import torch

    model = trained_text(arch)
    res = compress(model, {"method": method, "sparsity": 0.5, "fine_tune_epochs": 0}, text_data)
    assert res.stats.sparsity >= 0.5 and res.accuracy is not None
    # every attention / FFN / classifier Linear holds zeros; embeddings and LayerNorms are untouched
    linear = [m for m in res.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) >= 5 and all(float((m.weight == 0).float().mean()) > 0 for m in linear)
    for kind in ("embeddings", "wte", "wpe", "LayerNorm", "ln_"):
        before, after = _named(model, kind), _named(res.model, kind)
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("arch", ARCHS)
def test_dynamic_int8_quantizes_every_linear(arch, trained_text, text_data):
    import torch

    model = trained_text(arch)
    res = compress(model, {"method": "torch_dynamic_int8"}, text_data)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert len(res.stats.bits) == n_linear and set(res.stats.bits.values()) == {8}
    agree = np.mean(predict_proba(res.model, text_data.x_eval).argmax(1)
                    == predict_proba(model, text_data.x_eval).argmax(1))
    assert agree >= 0.9


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("criterion", ["taylor", "l2"])
def test_prune_heads_shrinks_blocks(arch, criterion, trained_text, text_data, text_spec):
    model = trained_text(arch)
    spec = text_spec(arch)
    res = compress(model, {"method": "torch_prune_heads", "heads": 0.5, "ffn": 0.5, "criterion": criterion,
                           "fine_tune_epochs": 1}, text_data)
    blocks = res.stats.extra["blocks"]
    assert len(blocks) == spec.layers
    for b in blocks.values():
        assert b["heads"] == [spec.heads, spec.heads // 2] and b["ffn"] == [spec.intermediate, spec.intermediate // 2]
    removed_per_block = 4 * spec.hidden * spec.hidden // 2 + spec.hidden // 2 * 3 \
        + 2 * spec.hidden * spec.intermediate // 2 + spec.intermediate // 2
    assert res.stats.params_before - res.stats.params_after == spec.layers * removed_per_block
    assert res.fine_tune_epochs == 1 and res.accuracy >= 0.5
    out = predict_proba(res.model, text_data.x_eval[:8])
    assert out.shape == (8, 2) and np.allclose(out.sum(1), 1, atol=1e-5)


def test_prune_heads_noop_keeps_predictions(trained_text, text_data):
    model = trained_text("bert")
    res = compress(model, {"method": "torch_prune_heads", **METHODS.get("torch_prune_heads").noop}, text_data)
    assert res.stats.params_after == res.stats.params_before
    assert np.allclose(predict_proba(res.model, text_data.x_eval), predict_proba(model, text_data.x_eval), atol=1e-6)


def test_prune_heads_refusals(trained_text, text_data, trained):
    with pytest.raises(ModelError, match="BertLayer / GPT2Block blocks"):
        compress(trained("torch", "mlp"), {"method": "torch_prune_heads"}, CompressData(text_data.x, text_data.y))
    quantized = compress(trained_text("gpt2"), {"method": "torch_dynamic_int8"}, text_data).model
    with pytest.raises(ModelError, match="prune before quantizing"):
        compress(quantized, {"method": "torch_prune_heads"}, text_data)
    with pytest.raises(ConfigError, match="heads"):
        compress(trained_text("bert"), {"method": "torch_prune_heads", "heads": 1.0}, text_data)


@pytest.mark.parametrize("arch", ARCHS)
def test_prune_heads_conformance_on_text_models(arch, trained_text, text_data):
    """What tests/toolkit/compress/test_conformance.py checks for every method, on the models this one is for."""
    method = METHODS.get("torch_prune_heads")
    model = trained_text(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = compress(model, {"method": "torch_prune_heads", **method.example}, text_data)
    after = model.state_dict()
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)  # input untouched
    targets = method.targets(result.config)
    assert result.stats.params_after / result.stats.params_before <= targets["params_ratio"]
    assert result.accuracy >= result.base_accuracy - 0.15
