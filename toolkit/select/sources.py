"""Candidate sources of a run, behind one call: ``make_candidate(source_name, dense, data, params)``.

Three registries feed a run: the compression methods of :data:`toolkit.compress.METHODS` (they fine-tune on
members only), the SafeCompress variants of :data:`~toolkit.select.safecompress.SAFECOMPRESS_METHODS` and the
paper's baselines of :data:`~toolkit.select.baselines.BASELINES` (those two need the membership halves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UnknownNameError


@dataclass
class Produced:
    """A compressed model plus what the report needs about how it was made."""

    model: Any
    framework: str
    backend: str
    kind: str
    params: dict[str, Any]
    stats: dict[str, Any]
    seconds: float
    framework_accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _registries():
    from toolkit.compress import METHODS
    from toolkit.select.baselines import BASELINES
    from toolkit.select.safecompress import SAFECOMPRESS_METHODS

    return {"compress": METHODS, "safecompress": SAFECOMPRESS_METHODS, "baseline": BASELINES}


def family_of(name: str) -> str:
    regs = _registries()
    for family, reg in regs.items():
        if name in reg:
            return family
    known = ", ".join(n for reg in regs.values() for n in reg)
    raise UnknownNameError(f"unknown candidate method {name!r}; known: {known}")


def input_framework(name: str, requested: str | None) -> str:
    """The dense model's framework a source needs (compression methods fix it; others default to torch)."""
    from toolkit.errors import ConfigError

    family = family_of(name)
    reg = _registries()[family]
    if family == "compress":
        fw = reg.meta(name)["framework"]
        if requested not in (None, fw):
            raise ConfigError(f"method {name!r} compresses {fw} models; the config asks for framework {requested!r}")
        return fw
    frameworks = reg.get(name).frameworks
    fw = requested or "torch"
    if fw not in frameworks:
        raise ConfigError(f"{name!r} supports frameworks {', '.join(frameworks)}; the config asks for {fw!r}")
    return fw


def _compress(name, dense, data, params, recipe) -> Produced:
    from toolkit.compress import CompressData, compress

    cd = CompressData(data.members.x, data.members.y, data.nonmembers.x, data.nonmembers.y, recipe)
    res = compress(dense, {"method": name, **params}, cd)
    return Produced(res.model, res.framework, res.backend, res.kind, res.config.model_dump(mode="json"),
                    res.stats.to_dict(), res.seconds, res.accuracy,
                    {"notes": res.notes, "seconds_per_epoch": res.seconds_per_epoch})


def _safecompress(name, dense, data, params, recipe) -> Produced:
    from toolkit.models import framework_of
    from toolkit.select.safecompress import SAFECOMPRESS_METHODS

    method = SAFECOMPRESS_METHODS.get(name)
    res = method.apply(dense, data, params, framework=framework_of(dense))
    return Produced(res.model, res.framework, method.backend, method.kind, res.config.model_dump(mode="json"),
                    res.stats.to_dict(), res.seconds, res.accuracy,
                    {"history": res.history_rows(), "simulated_mia_accuracy": res.mia_accuracy})


def _baseline(name, dense, data, params, recipe) -> Produced:
    from toolkit.models import framework_of
    from toolkit.select.baselines import BASELINES

    method = BASELINES.get(name)
    fw = framework_of(dense)
    res = method.apply(dense, data, params, framework=fw)
    info = res.to_dict()
    return Produced(res.model, fw, method.backend, method.kind, info["config"], res.stats.to_dict(),
                    float(info["seconds"]), info["accuracy"],
                    {k: info[k] for k in ("defense", "details", "density", "params_ratio", "mia_accuracy")})


_RUNNERS = {"compress": _compress, "safecompress": _safecompress, "baseline": _baseline}


def make_candidate(name: str, dense, data, params: dict[str, Any], recipe) -> Produced:
    """Compress (a copy of) ``dense`` with source ``name`` and ``params``; ``data`` is a MembershipData."""
    return _RUNNERS[family_of(name)](name, dense, data, dict(params), recipe)
