"""The text pipeline's config (``configs/text-*.yaml``), validated with pydantic; unknown keys are refused.

Example (``configs/text-quick.yaml``)::

    name: text-quick
    seed: 0
    data: {topics: [computers, politics, songs-poems, zippy], max_per_class: 400, members: 600, nonmembers: 600}
    tokenizer: {kind: bpe, vocab_size: 2000, fit_on: members}
    models:
      - {arch: bert, seq_len: 48}
      - {arch: gpt2, seq_len: 48}
    recipe: {epochs: 8, batch_size: 32, lr: 0.001}
    versions:
      - {name: pruned50, compress: {method: torch_global_unstructured, sparsity: 0.5, fine_tune_epochs: 1}}
      - {name: heads50, compress: {method: torch_prune_heads, heads: 0.5, ffn: 0.5, fine_tune_epochs: 1}}
      - {name: int8, onnx_quantize: dynamic_int8}
    audit: {references: 0}

Every model gets the dense version (``dense``) plus each entry of ``versions``: ``compress`` (a method config
for :func:`toolkit.compress.compress`, applied to the version named by ``base``, default ``dense``) and/or
``onnx_quantize`` (ONNX Runtime dynamic int8 at export). Every version is exported to ONNX and audited there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError
from toolkit.models.spec import TrainRecipe
from toolkit.seed import Seed
from toolkit.text.tokenizer import TokenizerConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(ConfigModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """The fortunes data set (see :func:`toolkit.data.text.load_fortunes`) and its membership split (counts)."""

    topics: tuple[str, ...] | None = Field(None, description="fortunes topic files (default: the six of "
                                                             "toolkit.data.text.DEFAULT_TOPICS)")
    max_per_class: int | None = Field(550, ge=1, description="cap on quotes per topic (seeded sample)")
    min_per_class: int = Field(50, ge=1, description="refuse topics with fewer distinct quotes")
    max_chars: int = Field(600, ge=16, description="quotes are cut to this many characters")
    members: int = Field(ge=4, description="training samples of the target")
    nonmembers: int | None = Field(None, ge=4, description="held-out samples (default: as many as members)")
    population: int | None = Field(None, ge=0, description="samples for reference models (default: the rest)")


class ModelConfig(_Strict):
    """One text architecture (vocab_size and n_classes come from the tokenizer and the data)."""

    arch: Literal["bert", "gpt2", "minilm"]
    name: str | None = Field(None, description="label in the report (default: arch)")
    seq_len: int = Field(64, ge=3, le=512)
    layers: int | None = Field(None, ge=1)
    heads: int | None = Field(None, ge=1)
    hidden: int | None = Field(None, ge=8)
    intermediate: int | None = Field(None, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    recipe: TrainRecipe | None = Field(None, description="overrides the top-level recipe for this model")

    @property
    def label(self) -> str:
        return self.name or self.arch


class VersionConfig(_Strict):
    """A compressed version: ``compress`` (method config) and/or ``onnx_quantize`` at export."""

    name: str
    base: str = Field("dense", description="version it is derived from (dense or an earlier entry)")
    compress: dict[str, Any] | None = Field(None, description="{method: ..., ...} for toolkit.compress.compress")
    onnx_quantize: Literal["dynamic_int8"] | None = Field(None, description="ONNX Runtime dynamic int8 at export")

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not _NAME.match(v) or v == "dense":
            raise ValueError(f"version name {v!r} must be 1-64 letters, digits, '_', '.', '-' and not 'dense'")
        return v

    @field_validator("compress")
    @classmethod
    def _method(cls, v):
        if v is None:
            return v
        from toolkit.compress import as_config, get_method

        try:
            cfg = as_config(dict(v))
            method = get_method(cfg.method)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if method.framework != "torch":
            raise ValueError(f"text models are torch models; method {method.name!r} compresses {method.framework} "
                             "models")
        if "onnx" not in method.exports:
            raise ValueError(f"method {method.name!r} has no ONNX export (exports: {', '.join(method.exports)}); "
                             "for int8 use onnx_quantize: dynamic_int8")
        return v

    @model_validator(mode="after")
    def _something(self):
        if self.compress is None and self.onnx_quantize is None:
            raise ValueError(f"version {self.name!r} needs compress and/or onnx_quantize")
        return self


class AuditSection(_Strict):
    """What the black-box audit of every version runs."""

    attacks: tuple[str, ...] | None = Field(None, description="attack names; default: metric attacks + nn, "
                                                              "+ CompLeak NR/SR/MR on compressed versions, "
                                                              "+ lira_offline and rmia with references")
    references: int = Field(0, ge=0, description="reference models per architecture for LiRA/RMIA (0 = none)")
    online: bool = Field(False, description="online references (trained on halves including the audit points)")
    population_z: int = Field(500, ge=10, description="population samples z for RMIA")
    n_bootstrap: int = Field(200, ge=0, description="bootstrap resamples for confidence intervals")

    @field_validator("attacks")
    @classmethod
    def _known(cls, v):
        from toolkit.attacks import validate_attack_field

        return validate_attack_field(v)


class TextPipelineConfig(_Strict):
    """data -> tokenizer -> models (dense) -> versions (compressed) -> ONNX -> audit -> report."""

    name: str = "text"
    seed: Seed = 0
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    recipe: TrainRecipe = Field(default_factory=TrainRecipe)
    versions: tuple[VersionConfig, ...] = ()
    audit: AuditSection = Field(default_factory=AuditSection)

    @model_validator(mode="after")
    def _consistent(self):
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"model names repeat: {labels} (give each a distinct name)")
        seen = {"dense"}
        for v in self.versions:
            if v.name in seen:
                raise ValueError(f"version name {v.name!r} repeats")
            if v.base not in seen:
                raise ValueError(f"version {v.name!r} derives from {v.base!r}, which is not defined before it")
            seen.add(v.name)
        if self.audit.references and self.data.population == 0:
            raise ValueError("audit.references needs population data (data.population > 0)")
        return self


def _section(loc: tuple) -> type[BaseModel]:
    """The config class a validation error's location points into (for listing its allowed keys)."""
    cls: type[BaseModel] = TextPipelineConfig
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for ann in candidates:
            for sub in (ann, *getattr(ann, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    cls = sub
    return cls


def parse_text_config(values: Any, what: str = "text pipeline config") -> TextPipelineConfig:
    """Validate a mapping; any error becomes one :class:`ConfigError` line naming the key (and allowed keys)."""
    if isinstance(values, TextPipelineConfig):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{what} must be a mapping of keys, got {type(values).__name__}")
    try:
        return TextPipelineConfig(**values)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            where = ".".join(str(p) for p in loc) or "value"
            if err.get("type") == "extra_forbidden":
                allowed = ", ".join(_section(loc).model_fields)
                parts.append(f"unknown key {where!r} (allowed: {allowed})")
            else:
                parts.append(f"{where}: {err.get('msg')}")
        raise ConfigError(f"invalid {what}: " + "; ".join(parts)) from None


def load_text_config(path: str | Path) -> TextPipelineConfig:
    from toolkit.io import load_yaml

    return parse_text_config(load_yaml(path), f"text pipeline config {path}")
