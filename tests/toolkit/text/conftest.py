"""Small real text fixtures: two fortunes topics, a BPE tokenizer fit on the members, tiny BERT / GPT-2.

Trained once per session (a few seconds each on 2 cores); tests clone before mutating.
"""

from __future__ import annotations

import pytest

TOPICS = ("computers", "zippy")
SEQ_LEN = 32


@pytest.fixture(scope="session")
def fortunes_small():
    from toolkit.data import load_dataset

    return load_dataset("fortunes", topics=list(TOPICS), max_per_class=150)


@pytest.fixture(scope="session")
def text_split(fortunes_small):
    from toolkit.data import make_split

    return make_split(fortunes_small, members=200, nonmembers=100, population=0, seed=0)


@pytest.fixture(scope="session")
def text_tokens(fortunes_small, text_split):
    """``(tokenizer, (x_members, y_members), (x_nonmembers, y_nonmembers))`` with the tokenizer fit on members."""
    from toolkit.data.text import texts
    from toolkit.text.tokenizer import TextTokenizer, TokenizerConfig

    mem = text_split.take(fortunes_small, "members")
    non = text_split.take(fortunes_small, "nonmembers")
    tok = TextTokenizer.fit(texts(mem.x), SEQ_LEN, TokenizerConfig(vocab_size=500))
    return tok, (tok.encode(texts(mem.x)), mem.y), (tok.encode(texts(non.x)), non.y)


@pytest.fixture(scope="session")
def text_spec(text_tokens):
    from toolkit.models.text_nets import TextModelSpec

    tok = text_tokens[0]

    def make(arch: str):
        return TextModelSpec(arch=arch, vocab_size=tok.vocab_size, seq_len=SEQ_LEN, n_classes=2, layers=1, heads=2,
                             hidden=32, intermediate=64)

    return make


@pytest.fixture(scope="session")
def text_recipe():
    from toolkit.models import TrainRecipe

    return TrainRecipe(epochs=6, batch_size=16, lr=3e-3, seed=0)


@pytest.fixture(scope="session")
def trained_text(text_tokens, text_spec, text_recipe):
    """``trained_text(arch)``: a tiny text model trained on the members (cached; clone before mutating)."""
    from toolkit.models import train_reference_model

    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            x, y = text_tokens[1]
            cache[arch] = train_reference_model(text_spec(arch), "torch", x, y, text_recipe)
        return cache[arch]

    return get
