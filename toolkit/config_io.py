"""Reading YAML configs into pydantic models: one loader, one one-line error format for every config.

``load_config(path, Model)`` reads ``path`` with :func:`toolkit.io.load_yaml` (``yaml.safe_load`` only, size
limited) and validates it with ``Model`` (which should set ``extra="forbid"``). Any problem is a
:class:`~toolkit.errors.ConfigError` with a single line naming the file and the offending key(s); an unknown
key also lists the keys allowed *at that level* (nested sections included: ``recipe.epoch`` lists the
recipe's keys) and, when one is close, suggests it. The gate policy, the audit config and the run config
all go through here, so a typo reads the same everywhere::

    invalid gate policy gate.yaml: unknown key 'max_increse' (allowed: max, min, max_increase, ...);
    did you mean 'max_increase'?

Config models derive from :class:`ConfigModel`: unknown keys refused, frozen, and no silent coercion of a
YAML value into a number: ``epochs: true`` is not 1 and ``epochs: "3"`` is not 3 (pydantic's lax mode would
take both). Strings stay accepted for float fields, because PyYAML reads ``1e-3`` (no dot) as a string.
"""

from __future__ import annotations

import collections.abc
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

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


#: Problems named in one message; a file with thousands of bad values gets a line, not a page.
MAX_PROBLEMS = 5


def validation_message(exc: ValidationError, what: str, cls: type[BaseModel] | None = None) -> str:
    """One line from a pydantic error: the offending keys (the first :data:`MAX_PROBLEMS`, then a count), and
    for unknown keys the allowed ones of the section they appear in (and the closest allowed key, if any).
    Keys come from the user's file, so they are made printable and cut to 80 characters."""
    from toolkit.report.escape import printable

    parts = []
    errors = exc.errors()
    for err in errors[:MAX_PROBLEMS]:
        loc = tuple(err.get("loc", ()))
        where = printable(".".join(str(p) for p in loc) or "value")[:80]
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
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problem(s)")
    return f"invalid {what}: " + "; ".join(parts)


def _arms(annotation: Any) -> list:
    """The alternatives of an annotation, ``Annotated`` and unions unwrapped (``int | None`` -> [int, None])."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _arms(arg)]
    return [annotation]


def _takes_bool(arm: Any) -> bool:
    return arm is bool or (typing.get_origin(arm) is Literal and any(isinstance(v, bool) for v in typing.get_args(arm)))


_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def coercion_problem(value: Any, annotation: Any) -> str | None:
    """Why ``value`` (from YAML) must not be coerced to ``annotation``, or None when it may be validated.

    Contract: a bool is refused wherever a number (int or float) but no bool is accepted; anything but a bool
    is refused where only a bool is accepted (``overfit: 1``, ``overfit: "no"``); a string is refused where only
    integers are accepted; lists, tuples and dicts are checked item by item against their item
    type. Everything else (ranges, other types, nested models) is left to pydantic."""
    arms = [a for a in _arms(annotation) if a is not type(None)]
    if not arms or any(a is Any or a is object for a in arms):
        return None
    if all(a is bool for a in arms) and value is not None and not isinstance(value, bool):
        return f"expected true or false, got {str(value)[:40]!r}"
    if isinstance(value, bool):
        if any(a in (int, float) for a in arms) and not any(_takes_bool(a) for a in arms):
            return f"expected a number, got {str(value).lower()} (a boolean)"
        return None
    if isinstance(value, str):
        # only a string pydantic would turn into an int ("3", " 3 "): any other it refuses with its own message
        if all(a is int for a in arms) and value.strip().lstrip("+-").isdigit():
            return f"expected an integer, got the string {value[:40]!r} (write it without quotes)"
        return None
    if isinstance(value, (list, tuple)):
        for arm in arms:
            origin, args = typing.get_origin(arm), typing.get_args(arm)
            if origin in _SEQUENCES:
                positional = origin is tuple and args and args[-1] is not Ellipsis
                for i, item in enumerate(value):
                    item_type = (args[i] if i < len(args) else Any) if positional else (args[0] if args else Any)
                    problem = coercion_problem(item, item_type)
                    if problem:
                        return f"item {i}: {problem}"
                return None
        return None
    if isinstance(value, dict):
        for arm in arms:
            origin, args = typing.get_origin(arm), typing.get_args(arm)
            if origin in _MAPPINGS and len(args) == 2:
                for key, item in value.items():
                    problem = coercion_problem(item, args[1])
                    if problem:
                        return f"{str(key)[:40]!r}: {problem}"
                return None
    return None


class ConfigModel(BaseModel):
    """Base of the config models read from YAML: unknown keys refused (:func:`validation_message` lists the
    allowed ones), frozen, and no coercion of booleans or strings into numbers (:func:`coercion_problem`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        problem = coercion_problem(value, field.annotation) if field is not None else None
        if problem:
            raise ValueError(problem)
        return value


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


__all__ = ["ConfigModel", "coercion_problem", "load_config", "parse_config", "validation_message"]
