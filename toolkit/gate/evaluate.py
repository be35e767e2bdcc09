"""Evaluate thresholds on an audit report (and a baseline report): checks, violations, warnings.

``evaluate(report, thresholds, baseline=None) -> GateResult`` is pure: report dicts in, a result out.

* An attack-scope limit (``auc``, ``balanced_accuracy``, ``tpr@...``) is checked for **every** attack of the
  report, one check each; it holds iff it holds for the strongest attack (``worst``). A model-scope limit
  (``accuracy``, ``accuracy_gap``) is one check with attack ``"model"``.
* ``max_increase``/``max_decrease`` compare each attack with the same attack in the baseline report (attacks
  absent from the baseline are named in a warning; none in common is an error); model metrics compare the
  model figures. Whenever a baseline is given, every check carries the baseline value and the delta.
* Warnings (one line each): TPR at an FPR below 1 / (evaluated non-members) rests on less than one false
  positive (``under_resolved``; for TPR@0.1%FPR: fewer than 1,000 non-members); a baseline audited on other
  data than this report; a figure that is not a finite number (its check fails: NaN or an infinity must never
  let a gate pass).
* A baseline report is someone else's file: :func:`load_baseline` reads it with limits
  (:func:`toolkit.io.load_json_strict`: size, nesting, digits, no NaN/Infinity) and validates the fields the
  gate reads with a pydantic schema (:class:`BaselineReport`: figures are finite numbers in their range, never
  booleans or strings; attack names are unique strings). Anything else in it is dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from toolkit.errors import ConfigError, DataError
from toolkit.gate.metrics import KINDS, get_metric
from toolkit.gate.policy import Threshold
from toolkit.report.escape import printable

SCHEMA_PREFIX = "safecompress.audit/"
MODEL = "model"
#: Largest baseline report read: a report.json is tens of KB; a file this large is not one.
MAX_BASELINE_BYTES = 16 * 1024**2


@dataclass
class Check:
    """One threshold applied to one attack (or to the model)."""

    metric: str
    kind: str
    limit: float
    attack: str
    value: float
    passed: bool
    baseline: float | None = None
    delta: float | None = None
    under_resolved: bool = False

    def line(self) -> str:
        """The one-line description of a violation: metric, attack, value, limit (the attack name made
        printable: it is printed to the terminal and written into reports)."""
        kind = KINDS[self.kind]
        attack = printable(self.attack)
        if kind.relative:
            change = "increase" if kind.for_higher_is_worse else "decrease"
            return (f"FAIL {self.metric} attack={attack} value={self.value:.4f} baseline={self.baseline:.4f} "
                    f"{change}={abs(self.delta):.4f} limit: {kind.name}={self.limit:g}")
        return f"FAIL {self.metric} attack={attack} value={self.value:.4f} limit: {kind.name}={self.limit:g}"


@dataclass
class GateResult:
    thresholds: list[Threshold]
    checks: list[Check]
    warnings: list[str] = field(default_factory=list)
    baseline: dict | None = None

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def worst(self) -> list[dict]:
        """Per threshold: the worst attack's check (the strongest attack for leakage; the largest increase)."""
        out = []
        for t in self.thresholds:
            checks = [c for c in self.checks if (c.metric, c.kind) == (t.metric, t.kind)]
            if not checks:
                continue
            metric, kind = get_metric(t.metric), KINDS[t.kind]
            sign = 1.0 if metric.higher_is_worse else -1.0
            key = (lambda c: sign * c.delta) if kind.relative else (lambda c: sign * c.value)
            c = max(checks, key=key)
            out.append({**t.to_dict(), "attack": c.attack, "value": c.value, "baseline": c.baseline,
                        "delta": c.delta, "passed": all(x.passed for x in checks),
                        "violations": sum(not x.passed for x in checks), "checks": len(checks),
                        "under_resolved": c.under_resolved})
        return out

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "thresholds": [t.to_dict() for t in self.thresholds],
                "worst": self.worst(), "violations": [asdict(c) for c in self.violations],
                "checks": [asdict(c) for c in self.checks], "warnings": list(self.warnings),
                "baseline": self.baseline}


# --------------------------------------------------------------------------- baseline
#: A figure of a baseline: a finite number in [0, 1]; never a bool or a string (strict).
Fraction = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Strict(), Field(ge=0, le=2**53)]
Text = Annotated[str, Strict(), StringConstraints(max_length=4096)]
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=200)]


class _BaselinePart(BaseModel):
    # A report holds many more keys than the gate reads (CIs, timings, provenance...): those are dropped.
    model_config = ConfigDict(extra="ignore", frozen=True)


class BaselineAttack(_BaselinePart):
    """One attack row of a baseline: the figures a gate can compare (missing ones stay None)."""

    name: Name
    kind: Name | None = None
    auc: Fraction | None = None
    balanced_accuracy: Fraction | None = None
    tpr_at_fpr: dict[Annotated[str, StringConstraints(max_length=32)], Fraction] = Field(
        default_factory=dict, max_length=64)
    n_members: Count | None = None
    n_nonmembers: Count | None = None


class BaselineAccuracy(_BaselinePart):
    members: Fraction | None = None
    nonmembers: Fraction | None = None


class BaselineArtifact(_BaselinePart):
    path: Text | None = None
    format: Name | None = None
    sha256: Name | None = None
    bytes: Count | None = None


class BaselineData(_BaselinePart):
    members_sha256: Name | None = None
    nonmembers_sha256: Name | None = None


class BaselineGate(_BaselinePart):
    verdict: Literal["pass", "fail"] | None = None


class BaselineReport(_BaselinePart):
    """What the gate reads from a baseline ``report.json`` (of ``safecompress audit`` or ``gate``)."""

    schema_: Annotated[str, Strict(), StringConstraints(max_length=64)] = Field(alias="schema")
    attacks: list[BaselineAttack] = Field(max_length=1000)
    accuracy: BaselineAccuracy
    artifact: BaselineArtifact | None = None
    data: BaselineData | None = None
    gate: BaselineGate | None = None


def load_baseline(path: str | Path) -> dict:
    """A previous ``report.json`` (audit or gate), read strictly and validated with :class:`BaselineReport`.

    Returns the validated fields as a plain dict (the layout of an audit report, unknown keys dropped) with
    ``_path``; raises :class:`DataError` (exit 2) for anything else: too large, not JSON, too deep, not an
    audit report, a figure that is not a finite number in its range, an attack name that is not a string,
    an attack listed twice."""
    from toolkit.config_io import validation_message
    from toolkit.io import load_json_strict

    p = Path(path)
    rep = load_json_strict(p, "baseline report", DataError, max_bytes=MAX_BASELINE_BYTES)
    what = f"baseline report {printable(p)}"
    schema = rep.get("schema") if isinstance(rep, dict) else None
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX):
        shown = printable(repr(schema) if isinstance(schema, str) or schema is None else type(schema).__name__)
        raise DataError(f"{what} is not an audit report (schema {shown[:80]}, expected "
                        f"{SCHEMA_PREFIX}1): pass the report.json of `safecompress audit` or `gate`")
    if not isinstance(rep.get("attacks"), list) or not isinstance(rep.get("accuracy"), dict):
        raise DataError(f"{what} lacks its 'attacks' or 'accuracy' section")
    try:
        model = BaselineReport.model_validate(rep)
    except ValidationError as exc:
        raise DataError(validation_message(exc, what)) from None
    seen: set[str] = set()
    for a in model.attacks:  # a second row of one attack would silently replace the first
        if a.name in seen:
            raise DataError(f"{what} lists attack {printable(a.name)!r} twice")
        seen.add(a.name)
    out = model.model_dump(by_alias=True)
    out["_path"] = str(p)
    return out


def _value(metric, row_or_report: dict, where: str) -> float:
    """The figure of ``metric`` (may be NaN or infinite: the caller fails the check and warns)."""
    try:
        return metric.value(row_or_report)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DataError(f"{where} has no {metric.name} figure") from None


# --------------------------------------------------------------------------- evaluation
def require_baseline(thresholds: list[Threshold], have_baseline: bool) -> None:
    """Refuse an empty threshold list, and relative limits without a baseline (before any audit work)."""
    if not thresholds:
        raise ConfigError("no thresholds: give --max/--min/--max-increase/--max-decrease METRIC=LIMIT or a --policy")
    relative = [t for t in thresholds if KINDS[t.kind].relative]
    if relative and not have_baseline:
        raise ConfigError(f"{KINDS[relative[0].kind].flag} {relative[0].metric} needs a baseline: pass --baseline "
                          "previous/report.json (or set baseline: in the policy)")


def evaluate(report: dict, thresholds: list[Threshold], baseline: dict | None = None) -> GateResult:
    """Apply ``thresholds`` to ``report`` (an audit report dict), comparing with ``baseline`` where asked."""
    require_baseline(thresholds, baseline is not None)
    rows = {r["name"]: r for r in report.get("attacks", [])}
    if not rows and any(get_metric(t.metric).scope == "attack" for t in thresholds):
        raise DataError("the audit ran no attacks, so leakage limits cannot be checked")
    base_rows = {r.get("name"): r for r in (baseline or {}).get("attacks", []) if isinstance(r, dict)}
    warnings: list[str] = []
    checks: list[Check] = []

    for t in thresholds:
        metric, kind = get_metric(t.metric), KINDS[t.kind]
        if metric.scope == MODEL:
            targets = {MODEL: (report, baseline)}
        else:
            targets = {name: (row, base_rows.get(name)) for name, row in rows.items()}
            if kind.relative:
                missing = sorted(n for n, (_, b) in targets.items() if b is None)
                if len(missing) == len(targets):
                    raise DataError(f"the baseline report ran none of the attacks run now "
                                    f"(baseline: {printable(', '.join(sorted(map(str, base_rows))))[:300] or 'none'}; "
                                    f"now: {printable(', '.join(rows))}): compare runs of the same attacks")
                if missing:
                    warnings.append(f"{t.metric} {kind.name}: no baseline for attack(s) {', '.join(missing)}; "
                                    "they are not compared")
                targets = {n: v for n, v in targets.items() if v[1] is not None}
        for name, (cur, base) in targets.items():
            value = _value(metric, cur, "the report" if name == MODEL else f"attack {name!r}")
            base_value = None
            if base is not None:
                base_value = _value(metric, base, "the baseline report" if name == MODEL
                                    else f"the baseline's attack {name!r}")
            delta = None if base_value is None else value - base_value
            under = bool(metric.fpr is not None and int(cur.get("n_nonmembers", 0)) * metric.fpr < 1)
            finite = math.isfinite(value) and (base_value is None or math.isfinite(base_value))
            if not finite:  # NaN compares false and -inf passes every max: neither may let the gate pass
                warnings.append(f"{t.metric} of {'the model' if name == MODEL else f'attack {name}'} is not a "
                                f"finite number (value {value}, baseline {base_value}): the check fails")
            checks.append(Check(t.metric, t.kind, t.limit, name, value,
                                finite and kind.passes(value, t.limit, base_value), base_value, delta, under))

    for metric_name in dict.fromkeys(c.metric for c in checks if c.under_resolved):
        metric = get_metric(metric_name)
        weak = {c.attack: rows[c.attack]["n_nonmembers"] for c in checks
                if c.metric == metric_name and c.under_resolved}
        need = int(round(1 / metric.fpr))
        lo, hi = min(weak.values()), max(weak.values())
        counts = str(lo) if lo == hi else f"{lo}-{hi}"
        warnings.append(f"{metric_name} is under-resolved for attack(s) {', '.join(weak)}: evaluated on "
                        f"{counts} non-members (< {need:,}), so TPR at {metric.fpr:.1%} FPR rests on "
                        f"less than one false positive; audit with >= {need:,} non-members")

    base_info = None
    if baseline is not None:
        base_info = {"path": baseline.get("_path"), "artifact": baseline.get("artifact"),
                     "verdict": (baseline.get("gate") or {}).get("verdict")}
        now_data, base_data = report.get("data") or {}, baseline.get("data") or {}
        if any(now_data.get(k) != base_data.get(k) for k in ("members_sha256", "nonmembers_sha256")):
            warnings.append("the baseline report was audited on other member/non-member data than this run; "
                            "deltas compare different data")
    return GateResult(list(thresholds), checks, warnings, base_info)
