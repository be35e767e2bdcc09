"""The gate policy (YAML, ``--policy``) and the thresholds it and the command-line flags define.

A policy holds limits and audit settings; the artifact and the data stay on the command line::

    max: {auc: 0.6, "tpr@0.001": 0.05}
    min: {accuracy: 0.85}
    max_increase: {auc: 0.02}
    baseline: previous/report.json

Flags override the policy **per metric and kind**: ``--max auc=0.55`` replaces the policy's ``max.auc`` and
keeps its other limits; ``--attacks``, ``--config``, ``--baseline``, ``--seed`` replace ``attacks``,
``audit_config``, ``baseline``, ``seed``. Relative paths in a policy are resolved against its directory.
Every key is documented in ``configs/README.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError, UnknownNameError
from toolkit.seed import Seed


@dataclass(frozen=True)
class Threshold:
    """One limit: ``metric`` (canonical name), ``kind`` (max | min | max_increase | max_decrease), ``limit``,
    and where it came from (``flag`` or ``policy``)."""

    metric: str
    kind: str
    limit: float
    source: str = "flag"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        from toolkit.gate.metrics import KINDS

        return f"{self.metric} {KINDS[self.kind].symbol} {self.limit:g}"


def _limits(kind: str):
    def check(v: dict[str, float] | None) -> dict[str, float]:
        from toolkit.gate.metrics import check_limit

        if v is not None and not isinstance(v, dict):
            raise ValueError(f"expected a mapping metric: limit (e.g. {{auc: 0.6}}), got {type(v).__name__}")
        out: dict[str, float] = {}
        for name, limit in (v or {}).items():
            try:
                metric, _, value = check_limit(name, kind, limit, in_policy=True)
            except (UnknownNameError, ConfigError) as exc:
                raise ValueError(str(exc)) from None
            if metric.name in out:
                raise ValueError(f"{metric.name} is given twice (as {name!r})")
            out[metric.name] = value
        return out

    return check


class GatePolicy(ConfigModel):
    """Limits of a release gate (``configs/gate.example.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: dict[str, float] = Field(default_factory=dict, description="metric -> upper limit (leakage metrics: "
                                  "for the strongest attack; accuracy_gap)")
    min: dict[str, float] = Field(default_factory=dict, description="metric -> lower limit (accuracy)")
    max_increase: dict[str, float] = Field(default_factory=dict, description="metric -> largest allowed "
                                           "increase over the baseline, per attack")
    max_decrease: dict[str, float] = Field(default_factory=dict, description="metric -> largest allowed "
                                           "decrease below the baseline (accuracy)")
    baseline: str | None = Field(None, description="report.json of a previous audit or gate run")
    attacks: list[str] | None = Field(None, description="attacks to run (default: the audit's default set)")
    audit_config: str | None = Field(None, description="audit config YAML (reference models for shadow/LiRA/RMIA)")
    seed: Seed | None = Field(None, description="seed of the audit (known halves, learned attacks, bootstrap)")

    @field_validator("max", "min", "max_increase", "max_decrease", mode="before")
    @classmethod
    def _check_limits(cls, v, info):
        return _limits(info.field_name)(v)

    @field_validator("attacks")
    @classmethod
    def _known_attacks(cls, v):
        from toolkit.attacks import validate_attack_field

        return validate_attack_field(v)

    def resolved(self, base: Path) -> "GatePolicy":
        """A copy with relative ``baseline`` / ``audit_config`` paths made absolute against ``base``."""
        try:
            upd = {k: str((base / getattr(self, k)).resolve())
                   for k in ("baseline", "audit_config")
                   if getattr(self, k) is not None and not Path(getattr(self, k)).is_absolute()}
        except (OSError, ValueError) as exc:  # a NUL byte in a path, a name too long...
            raise ConfigError(f"gate policy: baseline / audit_config is not a usable path: {exc}") from None
        return self.model_copy(update=upd)

    def thresholds(self) -> list[Threshold]:
        return [Threshold(m, kind, v, "policy") for kind in ("max", "min", "max_increase", "max_decrease")
                for m, v in getattr(self, kind).items()]


def load_policy(path: str | Path) -> GatePolicy:
    """Read and validate a policy YAML (safe_load only); paths inside resolve against its directory."""
    from toolkit.config_io import load_config

    p = Path(path)
    return load_config(p, GatePolicy, f"gate policy {p}").resolved(p.resolve().parent)


def parse_flag_items(kind: str, items: list[str] | None) -> list[Threshold]:
    """``["auc=0.6", "tpr@0.001=0.05"]`` given to the flag of ``kind`` -> thresholds (validated)."""
    from toolkit.gate.metrics import KINDS, check_limit

    flag = KINDS[kind].flag
    out: dict[str, Threshold] = {}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{flag} expects METRIC=LIMIT (e.g. {flag} auc=0.6), got {item!r}")
        metric, _, limit = check_limit(name, kind, value.strip())
        if metric.name in out:
            raise ConfigError(f"{flag} {metric.name} is given twice")
        out[metric.name] = Threshold(metric.name, kind, limit, "flag")
    return list(out.values())


def merge(policy: GatePolicy | None, flags: list[Threshold]) -> list[Threshold]:
    """Policy thresholds overridden per (metric, kind) by flag thresholds; order: policy's, then new flags."""
    merged: dict[tuple[str, str], Threshold] = {}
    for t in (policy.thresholds() if policy is not None else []):
        merged[(t.metric, t.kind)] = t
    for t in flags:
        merged[(t.metric, t.kind)] = t
    return list(merged.values())
