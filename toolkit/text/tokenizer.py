"""Sub-word tokenizers trained locally with Hugging Face ``tokenizers`` (no download), fixed-length int64 ids.

:meth:`TextTokenizer.fit` trains a byte-level BPE (GPT-2-style, the default) or a WordPiece (BERT-style: BERT
normalizer, ``##`` continuation) vocabulary on the given texts only. Every encoding is
``[CLS] tokens [SEP]``, truncated to ``seq_len`` and right-padded with ``[PAD]`` (id 0), as an
``(n, seq_len)`` int64 array: the one input of the text models (the attention mask is derived from the pad id
inside the model).

**Which texts train it** is a privacy decision made by the caller (:mod:`toolkit.text.pipeline`, option
``tokenizer.fit_on``). A real team fits the tokenizer on its training corpus, i.e. on the *members*; the
vocabulary then contains members' rare words as whole tokens while a non-member's rare words fall apart into
pieces or ``[UNK]``. That difference is part of what a shipped model (tokenizer + network) leaks and the audit
measures it (default ``members``). ``population`` fits it on public data instead, which isolates the network's
own leakage. Non-members never train the tokenizer in either mode.

Special tokens have fixed ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3. Byte-level BPE (the default)
trains deterministically for a given list of texts (checked by the tests in separate processes: same JSON, same
sha256). WordPiece does not: ``tokenizers`` 0.23's ``WordPieceTrainer`` assigns the ids of ``##`` pieces in
hash-map order, which changes from process to process and breaks merge ties differently
(huggingface/tokenizers#1794), so two runs can yield different vocabularies; a run stays reproducible from its
saved ``tokenizer.json`` only. Tokenizers are saved as the library's JSON, never pickled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
PAD, UNK, CLS, SEP = SPECIAL_TOKENS


class TokenizerConfig(ConfigModel):
    """How the tokenizer is trained (``seq_len`` belongs to the model spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bpe", "wordpiece"] = Field("bpe", description="bpe (byte-level, GPT-2-style; deterministic) or "
                                                                  "wordpiece (BERT-style; not reproducible across "
                                                                  "processes, tokenizers issue #1794)")
    vocab_size: int = Field(4000, ge=64, le=100_000, description="Target vocabulary size incl. special tokens")
    min_frequency: int = Field(2, ge=1, description="Minimum count of a merge/word piece to enter the vocabulary")
    lowercase: bool = Field(True, description="Lower-case before tokenizing")
    fit_on: Literal["members", "population", "members+population"] = Field(
        "members", description="Which split parts train the tokenizer (non-members never do)")

    @model_validator(mode="after")
    def _room_for_merges(self):
        floor = 256 + len(SPECIAL_TOKENS)
        if self.kind == "bpe" and self.vocab_size <= floor:
            raise ValueError(f"a byte-level BPE vocabulary starts with {floor} symbols (256 bytes + special tokens); "
                             f"vocab_size {self.vocab_size} leaves no room for merges")
        return self


class TextTokenizer:
    """A trained ``tokenizers.Tokenizer`` with fixed truncation/padding to ``seq_len``."""

    def __init__(self, tokenizer, seq_len: int):
        if seq_len < 3:
            raise ConfigError(f"seq_len must be at least 3 ([CLS] text [SEP]), got {seq_len}")
        pad_id = tokenizer.token_to_id(PAD)
        if pad_id is None:
            raise DataError(f"the tokenizer has no {PAD} token")
        tokenizer.enable_truncation(max_length=seq_len)
        tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=PAD, length=seq_len)
        self.tokenizer = tokenizer
        self.seq_len = int(seq_len)
        self.pad_id = int(pad_id)

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, corpus: Sequence[str], seq_len: int, config: TokenizerConfig | None = None) -> "TextTokenizer":
        """Train on ``corpus`` (a list of texts) only."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

        config = config or TokenizerConfig()
        corpus = [t for t in corpus if t]
        if len(corpus) < 2:
            raise DataError(f"a tokenizer needs at least 2 non-empty training texts, got {len(corpus)}")
        if config.kind == "wordpiece":
            tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
            tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=None, lowercase=config.lowercase)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                                special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        else:
            tok = Tokenizer(models.BPE(unk_token=UNK))
            tok.normalizer = (normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()]) if config.lowercase
                              else normalizers.NFC())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                          special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise DataError(f"tokenizer special tokens got ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
        tok.post_processor = processors.TemplateProcessing(single=f"{CLS} $A {SEP}",
                                                           special_tokens=[(CLS, ids[2]), (SEP, ids[3])])
        return cls(tok, seq_len)

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, corpus: Sequence[str]) -> np.ndarray:
        """``(n, seq_len)`` int64 token ids: ``[CLS] ... [SEP]`` then ``[PAD]`` (id :attr:`pad_id`)."""
        if isinstance(corpus, str):
            raise DataError("encode takes a list of texts, not one string")
        encodings = self.tokenizer.encode_batch(list(corpus))
        out = np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), self.seq_len)
        return out

    def decode(self, ids: np.ndarray) -> list[str]:
        return self.tokenizer.decode_batch([[int(i) for i in row] for row in np.asarray(ids)],
                                           skip_special_tokens=True)

    def unknown_rate(self, ids: np.ndarray) -> float:
        """Fraction of non-pad tokens that are ``[UNK]`` (how well the vocabulary covers a text set)."""
        ids = np.asarray(ids)
        real = ids != self.pad_id
        return float((ids[real] == self.tokenizer.token_to_id(UNK)).mean()) if real.any() else 0.0

    # ------------------------------------------------------------------ persistence (JSON only)
    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        from toolkit.io import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, seq_len: int | None = None) -> "TextTokenizer":
        """A tokenizer from its JSON; ``seq_len`` defaults to the truncation length stored in it."""
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(text)
        except Exception as exc:  # the Rust side raises plain Exception subclasses for malformed JSON
            raise DataError(f"not a tokenizers JSON file: {' '.join(str(exc).split())[:200]}") from None
        stored = tok.truncation["max_length"] if tok.truncation else None
        if seq_len is None and stored is None:
            raise DataError("the tokenizer JSON stores no truncation length: pass seq_len")
        return cls(tok, int(seq_len or stored))

    @classmethod
    def load(cls, path: str | Path, seq_len: int | None = None) -> "TextTokenizer":
        from toolkit.io import check_input_file

        p = check_input_file(path, "tokenizer file", DataError, max_bytes=64 * 1024**2)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{p} is not UTF-8 text") from None
        return cls.from_json(text, seq_len)
