"""Small BERT / GPT-2 classifiers built from transformers configs, trained with the toolkit's seeded routine."""

import numpy as np
import pytest

from toolkit.errors import ModelError
from toolkit.models import (accuracy, build_model, clone_model, framework_of, n_params, predict_proba,
                            train_reference_model)
from toolkit.models.text_nets import TextModelSpec

ARCHS = ("bert", "gpt2")


def test_spec_defaults_and_validation():
    s = TextModelSpec(arch="gpt2", vocab_size=100, n_classes=3)
    assert (s.layers, s.heads, s.hidden, s.intermediate, s.input_shape) == (2, 2, 128, 256, (64,))
    with pytest.raises(ValueError, match="multiple of heads"):
        TextModelSpec(arch="bert", vocab_size=100, n_classes=2, hidden=30, heads=4)
    with pytest.raises(ValueError, match="needs vocab_size"):
        TextModelSpec(arch="bert", n_classes=2)
    with pytest.raises(ValueError, match="fixed by its checkpoint"):
        TextModelSpec(arch="minilm", n_classes=2, layers=2)
    with pytest.raises(ValueError, match="Extra inputs"):
        TextModelSpec(arch="bert", vocab_size=100, n_classes=2, hiddden=64)
    with pytest.raises(ModelError, match="built with torch"):
        build_model(s, "keras")


@pytest.mark.parametrize("arch", ARCHS)
def test_trains_above_chance_on_held_out_quotes(arch, trained_text, text_tokens):
    model = trained_text(arch)
    (xm, ym), (xn, yn) = text_tokens[1], text_tokens[2]
    assert framework_of(model) == "torch" and model.input_dtype == "int64"
    assert accuracy(model, xm, ym) > 0.8
    assert accuracy(model, xn, yn) >= 0.6  # 2 topics, 100 held-out quotes: chance is 0.5


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_model_and_linear_projections(arch, text_spec, text_tokens, text_recipe):
    from transformers.pytorch_utils import Conv1D

    x, y = text_tokens[1]
    recipe = text_recipe.model_copy(update={"epochs": 1})
    a = train_reference_model(text_spec(arch), "torch", x[:64], y[:64], recipe)
    b = train_reference_model(text_spec(arch), "torch", x[:64], y[:64], recipe)
    assert np.array_equal(predict_proba(a, x[:32]), predict_proba(b, x[:32]))
    assert not any(isinstance(m, Conv1D) for m in a.modules())  # GPT-2's Conv1D rebuilt as nn.Linear


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_ignore_trailing_padding(arch, trained_text, text_tokens):
    """What makes the training-time trimming of all-pad columns exact (and a dynamic sequence axis valid)."""
    import torch

    model = trained_text(arch)
    x = text_tokens[2][0][:16]
    width = int((x != 0).sum(axis=1).max())
    with torch.no_grad():
        full = model(torch.from_numpy(x)).numpy()
        short = model(torch.from_numpy(np.ascontiguousarray(x[:, :width]))).numpy()
    assert np.abs(full - short).max() < 1e-5
    with pytest.raises(RuntimeError):
        model(torch.from_numpy(x.astype(np.float32)))  # token ids only


def test_save_load_round_trip(tmp_path, trained_text, text_spec, text_tokens):
    from toolkit.models.text_nets import load, save

    model = trained_text("gpt2")
    path = save(model, text_spec("gpt2"), tmp_path / "m.safetensors")
    back, spec = load(path)
    x = text_tokens[2][0][:20]
    assert spec == text_spec("gpt2") and np.allclose(predict_proba(back, x), predict_proba(model, x), atol=1e-6)
    assert n_params(clone_model(model)) == n_params(model)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    (tmp_path / "bad.safetensors.json").write_text((tmp_path / "m.safetensors.json").read_text())
    with pytest.raises(ModelError, match="cannot load weights"):
        load(tmp_path / "bad.safetensors")


def test_reference_pool_trains_text_models(text_spec, text_tokens, text_recipe):
    from toolkit.models.references import ReferencePool

    (xm, ym), (xn, yn) = text_tokens[1], text_tokens[2]
    recipe = text_recipe.model_copy(update={"epochs": 1})
    pool = ReferencePool(text_spec("bert"), recipe, (xm[:60], ym[:60]), n_models=2, seed=0)
    out = pool.query(xn[:20], yn[:20])
    assert out.probs.shape == (2, 20, 2) and not out.in_mask.any() and pool.trained == 2
