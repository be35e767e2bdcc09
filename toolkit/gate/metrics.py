"""The metrics a gate can put limits on, and the kinds of limit.

Metric names (the keys of ``--max``/``--min``/``--max-increase``/``--max-decrease`` and of the policy):

* leakage metrics, one value per attack, **higher = more leakage**; a limit applies to every attack, so it
  holds exactly when it holds for the strongest (worst) attack:
  ``auc``, ``balanced_accuracy`` (the paper's "MIA Acc"), ``tpr@<fpr>`` for every FPR the audit reports
  (``tpr@0.001``, ``tpr@0.01``; ``tpr@1e-3`` is the same metric);
* model metrics, one value for the artifact: ``accuracy`` = accuracy on the **non-members** (held-out data,
  the figure users will see; higher = better), ``accuracy_gap`` = member accuracy - non-member accuracy
  (the generalization gap; higher = worse).

Kinds of limit: ``max`` / ``max_increase`` for metrics where higher is worse, ``min`` / ``max_decrease`` for
metrics where higher is better. ``max_increase``/``max_decrease`` compare with a baseline report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from toolkit.attacks.metrics import FPR_TARGETS as _FPRS  # the FPRs whose TPR every audit reports
from toolkit.errors import ConfigError
from toolkit.registry import Registry


@dataclass(frozen=True)
class Metric:
    """A gated quantity. ``scope`` "attack": ``value(row)`` of one attack row; "model": ``value(report)``."""

    name: str
    scope: str  # "attack" | "model"
    higher_is_worse: bool
    value: Callable[[dict], float]
    lo: float
    hi: float
    description: str
    fpr: float | None = None

    def worst(self, values: dict[str, float]) -> tuple[str, float]:
        """``(attack, value)`` of the worst entry: the largest when higher is worse, else the smallest."""
        pick = max if self.higher_is_worse else min
        name = pick(values, key=lambda k: values[k])
        return name, values[name]


@dataclass(frozen=True)
class Kind:
    """A kind of limit: ``max``, ``min`` (absolute) or ``max_increase``, ``max_decrease`` (vs. a baseline)."""

    name: str
    flag: str
    relative: bool
    for_higher_is_worse: bool
    symbol: str
    description: str

    def passes(self, value: float, limit: float, base: float | None = None) -> bool:
        # ``sign`` turns every kind into "this figure must not exceed the limit"; 1e-9 absorbs float noise
        # in differences such as 0.62 - 0.60.
        sign = 1.0 if self.for_higher_is_worse else -1.0
        figure = sign * (value - base) if self.relative else sign * (value - limit)
        bound = limit if self.relative else 0.0
        return figure <= bound + 1e-9


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("max", "--max", False, True, "<=", "upper limit for the worst attack (leakage) or for accuracy_gap"),
    Kind("min", "--min", False, False, ">=", "lower limit (accuracy)"),
    Kind("max_increase", "--max-increase", True, True, "increase <=",
         "largest allowed increase over the baseline report, per attack"),
    Kind("max_decrease", "--max-decrease", True, False, "decrease <=",
         "largest allowed decrease below the baseline report (accuracy)"),
)}

METRICS = Registry("gate metric")


def _tpr(key: str) -> Callable[[dict], float]:
    return lambda row: float(row["tpr_at_fpr"][key])


def _register() -> None:
    METRICS.register("auc", Metric("auc", "attack", True, lambda r: float(r["auc"]), 0.0, 1.0,
                                   "ROC AUC of the attack (0.5 = chance)"))
    METRICS.register("balanced_accuracy", Metric(
        "balanced_accuracy", "attack", True, lambda r: float(r["balanced_accuracy"]), 0.0, 1.0,
        "balanced accuracy of the attack on the unknown half (the paper's MIA Acc; 0.5 = chance)"))
    for f in _FPRS:
        key = fpr_key(f)
        METRICS.register(f"tpr@{key}", Metric(f"tpr@{key}", "attack", True, _tpr(key), 0.0, 1.0,
                                             f"TPR of the attack at {f:.1%} FPR (chance = {key})", fpr=f))
    METRICS.register("accuracy", Metric(
        "accuracy", "model", False, lambda rep: float(rep["accuracy"]["nonmembers"]), 0.0, 1.0,
        "accuracy of the artifact on the non-members (held-out data)"))
    METRICS.register("accuracy_gap", Metric(
        "accuracy_gap", "model", True,
        lambda rep: float(rep["accuracy"]["members"]) - float(rep["accuracy"]["nonmembers"]), -1.0, 1.0,
        "member accuracy minus non-member accuracy (generalization gap)"))


def fpr_key(fpr: float) -> str:
    """The report's key for an FPR (``0.001`` -> ``"0.001"``), as the audit writes ``tpr_at_fpr``."""
    return str(fpr)


def canonical(name: str) -> str:
    """The registered spelling of a metric name: strips blanks, lower-cases, ``tpr@1e-3`` -> ``tpr@0.001``."""
    n = str(name).strip().lower()
    head, sep, tail = n.partition("@")
    if sep and head == "tpr":
        try:
            f = float(tail.rstrip("%")) / (100.0 if tail.endswith("%") else 1.0)
        except ValueError:
            return n
        for known in _FPRS:
            if abs(f - known) <= 1e-12:
                return f"tpr@{fpr_key(known)}"
    return n


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (any accepted spelling); unknown names list the known ones."""
    return METRICS.get(canonical(name))


def check_limit(metric_name: str, kind_name: str, limit, *, in_policy: bool = False) -> tuple[Metric, Kind, float]:
    """Validate one limit: a known metric, a kind that fits its direction, a finite value in range.

    Messages name the flag (``--max``) or, ``in_policy``, the policy key (``max``)."""
    metric = get_metric(metric_name)
    kind = KINDS[kind_name]

    def label(k: Kind) -> str:
        return k.name if in_policy else k.flag

    if kind.for_higher_is_worse != metric.higher_is_worse:
        fits = [label(k) for k in KINDS.values() if k.for_higher_is_worse == metric.higher_is_worse]
        worse = "higher" if metric.higher_is_worse else "lower"
        raise ConfigError(f"{label(kind)} does not apply to {metric.name} ({worse} is worse); "
                          f"use {' or '.join(fits)}")
    try:
        if isinstance(limit, bool):  # float(True) is 1.0: a policy's `auc: true` must not become a limit of 1
            raise TypeError("a boolean is not a limit")
        value = float(limit)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        try:
            shown = repr(limit)
        except ValueError:  # an integer too long for str() (Python's int-string limit)
            shown = f"a {type(limit).__name__} too long to print"
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigError(f"{label(kind)} {metric.name}: the limit must be a number, got {shown}") from None
    lo, hi = (0.0, metric.hi - metric.lo) if kind.relative else (metric.lo, metric.hi)
    if not lo <= value <= hi:  # also refuses NaN
        raise ConfigError(f"{label(kind)} {metric.name}={limit}: the limit must lie in [{lo:g}, {hi:g}]")
    return metric, kind, value


_register()
