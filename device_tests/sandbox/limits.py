"""The resource limits of a sandbox child, and the record of what confinement it achieved.

Limits come from the environment so that CI and users can size them without a flag on every command:

======================================  =========  =========================================================
variable                                default    meaning
======================================  =========  =========================================================
``SAFECOMPRESS_SANDBOX_MEMORY``         ``1536M``  address space of the child (``RLIMIT_AS``); every runtime
                                                   runs the seed models within 1G. With the CLI's own few
                                                   hundred MB, a hostile artifact stays under 2 GB in all;
                                                   raise it for large image models and big batches
``SAFECOMPRESS_SANDBOX_TIMEOUT``        ``30``     seconds one call (load, or one chunk of queries) may take
``SAFECOMPRESS_SANDBOX_CPU``            ``3600``   CPU seconds over the child's life (``RLIMIT_CPU``)
======================================  =========  =========================================================

Sizes accept ``K``/``M``/``G`` suffixes (powers of 1024). A malformed value is a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import ConfigError

_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)B?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class SandboxLimits(BaseModel):
    """What a child may use. ``open_files`` and ``file_size`` are fixed: the child opens no files of its own
    and writes none (its log goes to one inherited descriptor, capped by ``file_size``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_bytes: int = Field(1536 * 1024**2, ge=256 * 1024**2)
    call_timeout_s: float = Field(30.0, gt=0, le=86_400)
    cpu_seconds: int = Field(3600, ge=1)
    open_files: int = 64
    file_size: int = 1024**2

    @classmethod
    def from_env(cls) -> "SandboxLimits":
        env = os.environ
        values: dict = {}
        try:
            if "SAFECOMPRESS_SANDBOX_MEMORY" in env:
                values["memory_bytes"] = _parse_size(env["SAFECOMPRESS_SANDBOX_MEMORY"])
            if "SAFECOMPRESS_SANDBOX_TIMEOUT" in env:
                values["call_timeout_s"] = float(env["SAFECOMPRESS_SANDBOX_TIMEOUT"])
            if "SAFECOMPRESS_SANDBOX_CPU" in env:
                values["cpu_seconds"] = int(env["SAFECOMPRESS_SANDBOX_CPU"])
            return cls(**values)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(f"invalid sandbox limit in the environment (SAFECOMPRESS_SANDBOX_MEMORY / _TIMEOUT / "
                              f"_CPU): {' '.join(str(exc).split())[:200]}") from None


def _parse_size(text: str) -> int:
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (e.g. 2G, 512M)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


class Protections(BaseModel):
    """What a sandbox child actually enabled (reported by the child itself, validated by the parent).

    ``landlock_abi`` is 0 when Landlock is unavailable; ``seccomp`` is False when no syscall filter could be
    loaded (no libseccomp, or a kernel without seccomp). ``missing`` names each protection that could not be
    enabled, with the reason, for the warning and ``safecompress doctor``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rlimits: bool
    parent_death_signal: bool
    landlock_abi: int = Field(ge=0, le=1000)
    seccomp: bool
    private_workdir: bool
    missing: list[str] = Field(default_factory=list, max_length=16)

    @property
    def complete(self) -> bool:
        return not self.missing
