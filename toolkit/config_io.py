"""Reading YAML configs into pydantic models: one loader, one one-line error format for every config.

``load_config(path, Model)`` reads ``path`` with :func:`toolkit.io.load_yaml` (``yaml.safe_load`` only, size
limited) and validates it with ``Model`` (which should set ``extra="forbid"``). Any problem is a
:class:`~toolkit.errors.ConfigError` with a single line naming the file and the offending key(s); an unknown
key also lists the keys allowed *at that level* (nested sections included: ``recipe.epoch`` lists the
recipe's keys) and, when one is close, suggests it. The gate policy, the audit config and the run config
all go through here, so a typo reads the same everywhere::

    invalid gate policy gate.yaml: unknown key 'max_increse' (allowed: max, min, max_increase, ...);
    did you mean 'max_increase'?
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from toolkit.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes inside an annotation (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _section(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that owns the last element of ``loc`` (walking nested fields; list indices and dict
    keys between them are skipped)."""
    current: type[BaseModel] | None = cls
    for part in loc[:-1]:
        if current is None:
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            continue  # a list index or a dict key inside the current field's container
        models = _models_in(field.annotation)
        current = models[0] if len(models) == 1 else None
    return current


def _clean(msg: str) -> str:
    # pydantic prefixes messages of ValueErrors raised in validators; the message itself says it all.
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def validation_message(exc: ValidationError, what: str, cls: type[BaseModel] | None = None) -> str:
    """One line from a pydantic error: every offending key, and for unknown keys the allowed ones of the
    section they appear in (and the closest allowed key, if any)."""
    parts = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        where = ".".join(str(p) for p in loc) or "value"
        if err.get("type") == "extra_forbidden":
            owner = _section(cls, loc) if cls is not None and loc else None
            allowed = [k for k in (owner.model_fields if owner else {})]
            text = f"unknown key {where!r}"
            if allowed:
                text += f" (allowed: {', '.join(allowed)})"
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                if close:
                    text += f"; did you mean {close[0]!r}?"
            parts.append(text)
        else:
            parts.append(f"{where}: {_clean(str(err.get('msg')))}")
    return f"invalid {what}: " + "; ".join(parts)


def parse_config(values: Any, model: type[M], what: str) -> M:
    """Validate a mapping (e.g. parsed YAML) with ``model``; a ConfigError of one line on any problem.

    An empty document (``None``) is validated as an empty mapping, so required keys are named as missing.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{what} must be a mapping of keys to values, got {type(values).__name__}")
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"invalid {what}: keys must be strings, got {bad[0]!r}")
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, what, model)) from None


def load_config(path: str | Path, model: type[M], what: str | None = None) -> M:
    """Read the YAML file ``path`` (safe_load only) and validate it with ``model``.

    ``what`` names the config in messages (default ``"config <path>"``). Relative paths inside the config
    are the model's business (resolve them against ``Path(path).parent``).
    """
    from toolkit.io import load_yaml

    p = Path(path)
    return parse_config(load_yaml(p), model, what or f"config {p}")


__all__ = ["load_config", "parse_config", "validation_message"]
