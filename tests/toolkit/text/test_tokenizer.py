"""The locally trained tokenizer: fixed-length int64 ids, trained on the given texts only, deterministic."""

import json
import subprocess
import sys

import numpy as np
import pytest

from toolkit.errors import DataError
from toolkit.text.tokenizer import TextTokenizer, TokenizerConfig

CORPUS = [f"the quick brown fox number {i} jumps over the lazy dog" for i in range(30)] + \
         ["computers are useless, they can only give you answers"] * 3

_FIT_SCRIPT = """
import json, sys
from toolkit.data import load_dataset
from toolkit.data.text import texts
from toolkit.text.tokenizer import TextTokenizer, TokenizerConfig
corpus = texts(load_dataset("fortunes", topics=["computers", "zippy"], max_per_class=150))
tok = TextTokenizer.fit(corpus, 32, TokenizerConfig(kind=sys.argv[1], vocab_size=800))
print(json.dumps({"sha": tok.sha256, "ids": tok.encode(corpus[:5]).tolist()}))
"""


def _fit_in_subprocess(kind: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FIT_SCRIPT, kind], capture_output=True, text=True, check=True,
                         timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bpe_is_deterministic_across_processes():
    # Rust hash maps are seeded per process: determinism must hold across processes, not only within one.
    a, b = _fit_in_subprocess("bpe"), _fit_in_subprocess("bpe")
    assert a == b


def test_encoding_layout():
    tok = TextTokenizer.fit(CORPUS, 12, TokenizerConfig(vocab_size=400, min_frequency=1))
    ids = tok.encode(["The quick brown fox", "computers " * 40, ""])
    assert ids.dtype == np.int64 and ids.shape == (3, 12) and tok.pad_id == 0
    assert (ids[:, 0] == 2).all()  # [CLS]
    n0 = int((ids[0] != 0).sum())
    assert ids[0, n0 - 1] == 3 and (ids[0, n0:] == 0).all()  # [SEP] then right padding
    assert (ids[1] != 0).all() and ids[1, -1] == 3  # truncated to 12, still ends with [SEP]
    assert ids[2].tolist()[:3] == [2, 3, 0]
    assert tok.decode(ids[:1])[0].strip() == "the quick brown fox"  # lower-cased by default
    with pytest.raises(DataError, match="list of texts"):
        tok.encode("one string")


def test_vocabulary_comes_from_the_training_texts_only():
    tok = TextTokenizer.fit(CORPUS, 16, TokenizerConfig(vocab_size=400, min_frequency=1))
    vocab = tok.tokenizer.get_vocab()
    assert any("fox" in t for t in vocab)
    # a word never seen in training falls apart into several pieces
    seen = int((tok.encode(["fox"])[0] != 0).sum())
    unseen = int((tok.encode(["xylophone"])[0] != 0).sum())
    assert seen == 3 and unseen > 3


def test_wordpiece_and_json_round_trip(tmp_path):
    tok = TextTokenizer.fit(CORPUS, 10, TokenizerConfig(kind="wordpiece", vocab_size=150, min_frequency=1))
    path = tok.save(tmp_path / "tokenizer.json")
    back = TextTokenizer.load(path)
    assert back.seq_len == 10 and back.sha256 == tok.sha256
    assert np.array_equal(back.encode(CORPUS[:4]), tok.encode(CORPUS[:4]))
    assert TextTokenizer.load(path, seq_len=6).encode(CORPUS[:1]).shape == (1, 6)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(DataError, match="not a tokenizers JSON"):
        TextTokenizer.load(bad)
    with pytest.raises(DataError, match="at least 2"):
        TextTokenizer.fit(["only one"], 8)
    with pytest.raises(ValueError, match="no room for merges"):
        TokenizerConfig(kind="bpe", vocab_size=200)
