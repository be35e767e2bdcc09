"""Progress display for long work: rich bars on a terminal, nothing otherwise.

Bars are shown only when stdout is a TTY and quiet mode is off (``--quiet``/``--json`` in the CLI, or
``SAFECOMPRESS_QUIET=1``), so CI logs and piped JSON stay clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_quiet = os.environ.get("SAFECOMPRESS_QUIET") == "1"


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def enabled() -> bool:
    return not _quiet and sys.stdout.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, showing a progress bar when enabled."""
    if not enabled():
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)


def info(message: str) -> None:
    """A one-line status message to stderr (suppressed when quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)
