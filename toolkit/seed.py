"""The one range of seeds every config and CLI option accepts.

Seeds reach numpy (``default_rng`` and the legacy global seed), torch and TensorFlow, whose widest common
range is an unsigned 32-bit integer; a seed outside it would fail deep inside training, so it is refused
where it is read.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_SEED = 2**32 - 1

#: A config field type: ``seed: Seed = 0`` (add ``Field(..., description=...)`` as the default if wanted).
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
