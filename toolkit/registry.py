"""Name -> implementation registries that load their entries lazily.

A registry maps names (the user-facing interface: method names, attack names, formats) to objects given as
``"package.module:attribute"`` strings. Nothing is imported until the entry is used, so listing names
costs nothing and importing the CLI does not pull in TensorFlow or PyTorch. Asking for an unknown name
raises :class:`~toolkit.errors.UnknownNameError` that lists the known ones.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UnknownNameError


@dataclass
class _Entry:
    target: str | Any
    meta: dict[str, Any] = field(default_factory=dict)
    loaded: Any = None


class Registry:
    """An ordered name -> object table.

    ``register(name, "pkg.mod:attr", **meta)`` adds a lazy entry; ``register(name, obj)`` an eager one.
    ``get(name)`` returns the object (importing its module on first use). ``meta(name)`` returns the static
    metadata given at registration without importing anything.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, target: str | Any, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = _Entry(target, dict(meta))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(self._entries) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; known: {known}") from None

    def meta(self, name: str) -> dict[str, Any]:
        return dict(self._entry(name).meta)

    def get(self, name: str) -> Any:
        entry = self._entry(name)
        if entry.loaded is None:
            target = entry.target
            if isinstance(target, str):
                module_name, _, attr = target.partition(":")
                obj: Any = importlib.import_module(module_name)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
                entry.loaded = obj
            else:
                entry.loaded = target
        return entry.loaded

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self._entries:
            yield name, self.get(name)
