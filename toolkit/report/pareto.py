"""The Pareto front of selection candidates over accuracy (higher is better), leakage and bytes (lower is better).

A candidate of a run report (issue 6) is a dict with at least ``name``, ``accuracy``, ``bytes`` and either
``attacks`` (attack rows as in the audit report, a list or a name -> row mapping) or ``mia_accuracy``.
Its leakage is the strongest attack's AUC, else its ``mia_accuracy``.
"""

from __future__ import annotations

import math
from typing import Any


def attack_rows(candidate: dict) -> list[dict]:
    """A candidate's attack rows as a list (``attacks`` may be a list of rows or a name -> row mapping)."""
    rows = candidate.get("attacks") or []
    if isinstance(rows, dict):
        rows = [dict(r, name=r.get("name", n)) for n, r in rows.items() if isinstance(r, dict)]
    return [r for r in rows if isinstance(r, dict)]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def leakage(candidate: dict) -> tuple[float | None, str]:
    """``(value, label)``: max attack AUC over the candidate's attacks, else its MIA accuracy."""
    aucs = [a for a in (_num(r.get("auc")) for r in attack_rows(candidate)) if a is not None]
    if aucs:
        return max(aucs), "max attack AUC"
    return _num(candidate.get("mia_accuracy")), "MIA accuracy"


def max_tpr(candidate: dict, key: str = "0.001") -> float | None:
    vals = [_num((r.get("tpr_at_fpr") or {}).get(key)) for r in attack_rows(candidate)]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def pareto_mask(candidates: list[dict]) -> list[bool]:
    """True for candidates no other candidate dominates (>= accuracy, <= leakage, <= bytes, one strictly).

    Candidates lacking one of the three figures are never on the front.
    """
    pts = []
    for c in candidates:
        acc, leak, size = _num(c.get("accuracy")), leakage(c)[0], _num(c.get("bytes"))
        pts.append(None if None in (acc, leak, size) else (-acc, leak, size))  # all "lower is better"
    mask = []
    for i, p in enumerate(pts):
        if p is None:
            mask.append(False)
            continue
        dominated = any(q is not None and j != i and all(a <= b for a, b in zip(q, p)) and q != p
                        for j, q in enumerate(pts))
        mask.append(not dominated)
    return mask
