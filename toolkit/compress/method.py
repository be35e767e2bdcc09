"""The description every compression backend registers for each method it offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.compress.config import MethodConfig


@dataclass(frozen=True)
class Method:
    """One registered compression method.

    ``apply(model, config, data) -> MethodOutput`` does the work on a model *already cloned* by
    :func:`toolkit.compress.compress` (it may mutate it). ``framework`` is the input framework it accepts
    (``keras`` or ``torch``); ``kind`` is ``prune``, ``quantize``, ``cluster`` or a ``+``-joined
    combination; ``exports`` lists the artifact formats its output can be exported to.

    ``targets(config) -> dict`` states what the measured :class:`CompressionStats` must show for that
    config (keys: ``sparsity`` — minimum overall zero fraction; ``params_ratio`` — maximum
    params_after/params_before; ``max_distinct_values`` — per clustered layer; ``bits`` — bit width of
    quantized layers). ``example`` is a small, fast config (docs and conformance tests); ``noop`` a config
    that must leave predictions unchanged (sparsity 0, as many clusters as values), or None.
    """

    name: str
    backend: str
    kind: str
    framework: str
    config_cls: type[MethodConfig]
    apply: Callable[..., "MethodOutput"]
    exports: tuple[str, ...] = ()
    description: str = ""
    targets: Callable[[MethodConfig], dict[str, Any]] | None = None
    example: dict[str, Any] | None = None
    noop: dict[str, Any] | None = None


@dataclass
class MethodOutput:
    """What a backend's ``apply`` returns; ``compress`` adds measurements and accuracy."""

    model: Any
    framework: str
    fine_tune_epochs: int = 0
    fine_tune_seconds: float = 0.0
    #: Method-specific measured figures merged into ``CompressionStats.extra`` (e.g. bit widths).
    extra: dict[str, Any] | None = None
    bits: dict[str, int] | None = None
    notes: list[str] | None = None
