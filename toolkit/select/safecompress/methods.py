"""SafeCompress as candidate sources of the selection engine: :data:`SAFECOMPRESS_METHODS`.

These are *not* in :data:`toolkit.compress.METHODS` (core must not import ``toolkit.select``) and their
``apply`` has its own signature: SafeCompress needs the membership halves (its attacker trains on the known
ones), not just the members that :class:`toolkit.compress.CompressData` carries.

Each entry is a :class:`SafeCompressMethod`; its ``fixed`` fields are implied by the name
(``safecompress_re2`` always uses ``regularizer: re2``) and a params dict may not contradict them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import ConfigError
from toolkit.registry import Registry
from toolkit.select.safecompress.config import SafeCompressConfig, parse_config


@dataclass(frozen=True)
class SafeCompressMethod:
    """One SafeCompress variant, described like :class:`toolkit.compress.Method`.

    ``config(params)`` validates user params (plus the fixed ones) into a :class:`SafeCompressConfig`;
    ``apply(model, data, params_or_config, framework=None)`` runs it and returns a
    :class:`~toolkit.select.safecompress.result.SafeCompressResult` whose ``model`` is of the input's
    framework (so it exports like the dense model: torch -> ONNX / lite / ExecuTorch, Keras -> TFLite).
    ``targets(config)`` is what the result must show: ``density`` (kept fraction of the prunable weights,
    i.e. ``1 - CompressionStats.sparsity`` at most).
    """

    name: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    backend: str = "safecompress"
    kind: str = "prune"
    frameworks: tuple[str, ...] = ("torch", "keras")
    config_cls: type[SafeCompressConfig] = SafeCompressConfig
    #: A small, fast config (docs, smoke tests): two short rounds at density 0.1.
    example: dict[str, Any] = field(default_factory=lambda: {
        "density": 0.1, "rounds": 2, "epochs_per_round": 1.0, "fine_tune_epochs": 0.25, "attack_epochs": 10,
        "attack_fine_tune_epochs": 2})

    def config(self, params: dict[str, Any] | SafeCompressConfig | None = None) -> SafeCompressConfig:
        """Validate ``params`` (a dict, optionally with ``method`` = this name) plus the fixed fields.

        A full :class:`SafeCompressConfig` is taken as it is, but must agree with the fixed fields.
        """
        if isinstance(params, SafeCompressConfig):
            clash = {k: v for k, v in self.fixed.items() if getattr(params, k) != v}
            if clash:
                key = next(iter(clash))
                raise ConfigError(f"method {self.name!r} fixes {key}={clash[key]!r}; the config has "
                                  f"{key}={getattr(params, key)!r}")
            return params
        body = dict(params or {})
        method = body.pop("method", self.name)
        if method != self.name:
            raise ConfigError(f"params name method {method!r} but were given to {self.name!r}")
        for key, value in self.fixed.items():
            if key in body and body[key] != value:
                raise ConfigError(f"method {self.name!r} fixes {key}={value!r}; got {key}={body[key]!r}")
        return parse_config({**body, **self.fixed})

    def targets(self, config: SafeCompressConfig) -> dict[str, Any]:
        return {"density": config.density}

    def apply(self, model, data, params: dict[str, Any] | SafeCompressConfig | None = None,
              framework: str | None = None):
        from toolkit.select.safecompress.engine import safecompress

        return safecompress(model, data, self.config(params), framework=framework)


SAFECOMPRESS_METHODS = Registry("SafeCompress method")
for _m in (
    SafeCompressMethod("safecompress", "MIA-SafeCompress: test-driven dynamic sparse training, TM-score selection "
                                       "(Zhu et al., ASE'22, Sec. 4.3)", {"regularizer": "none"}),
    SafeCompressMethod("safecompress_re1", "MIA-SafeCompress with the re1 entropy regularizer (Eq. 8)",
                       {"regularizer": "re1"}),
    SafeCompressMethod("safecompress_re2", "MIA-SafeCompress with the re2 entropy regularizer (Eq. 9)",
                       {"regularizer": "re2"}),
):
    SAFECOMPRESS_METHODS.register(_m.name, _m, backend=_m.backend, kind=_m.kind, frameworks=_m.frameworks,
                                  description=_m.description)
