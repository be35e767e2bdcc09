"""Typed, validated configs of compression methods.

Every method has a pydantic config class deriving from :class:`MethodConfig`. Unknown keys are refused
(``extra="forbid"``) with an error naming the key and the allowed ones. The ``method`` field names the
registered method, so a config alone says what to run (``compress(model, TorchL1Config(sparsity=0.5))``).
"""

from __future__ import annotations

from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError
from toolkit.seed import Seed


class MethodConfig(ConfigModel):
    """Base of all method configs. Subclasses pin ``method`` to their registered name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    #: Epochs of fine-tuning on the members after compressing (0 = none; PTQ methods ignore it).
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning on the members (0 = none)")
    #: Seed of fine-tuning data order and any randomness of the method.
    seed: Seed = Field(0, description="Seed of the fine-tuning data order and of any randomness of the method")


def describe_fields(cls: type[BaseModel]) -> list[dict[str, Any]]:
    """``[{name, type, default, description}]`` for ``methods --json``."""
    out = []
    for name, field in cls.model_fields.items():
        if name == "method":
            continue
        ann = field.annotation
        # A Literal's name alone ("Literal") would hide the choices: spell them out.
        named = None if get_origin(ann) is Literal else getattr(ann, "__name__", None)
        type_name = named or str(ann).replace("typing.", "")
        default = field.get_default(call_default_factory=True) if not field.is_required() else None
        out.append({"name": name, "type": type_name, "default": default, "required": field.is_required(),
                    "description": field.description or ""})
    return out


def validation_message(exc: ValidationError, what: str, cls: type[BaseModel] | None = None) -> str:
    """One line from a pydantic error: the offending key(s) and, for unknown keys, the allowed ones."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            allowed = ", ".join(k for k in (cls.model_fields if cls else {}) if k != "method")
            parts.append(f"unknown key {loc!r}" + (f" (allowed: {allowed})" if allowed else ""))
        else:
            parts.append(f"{loc or 'value'}: {err.get('msg')}")
    return f"invalid {what}: " + "; ".join(parts)


def parse_config(cls: type[MethodConfig], values: dict[str, Any], what: str) -> MethodConfig:
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, what, cls)) from None
