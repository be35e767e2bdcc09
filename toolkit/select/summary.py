"""A terminal summary of a run report (what ``safecompress run`` prints)."""

from __future__ import annotations

from pathlib import Path


def format_run(report: dict, out: Path) -> str:
    """A fixed-width table of candidates (winner starred) plus where the reports are."""
    lines = [f"{'':2}{'candidate':<44} {'backend':<12} {'acc':>6} {'MIA acc':>8} {'TM':>6} {'bytes':>9} {'Pareto':>6}"]
    rows = list(report.get("dense_models", {}).values()) + list(report.get("candidates", []))
    for c in rows:
        mark = "*" if c.get("name") == report.get("selected") else " "
        lines.append(f"{mark:2}{c['name'][:44]:<44} {c.get('backend', 'dense'):<12} {c['accuracy']:>6.3f} "
                     f"{c['mia_accuracy']:>8.3f} {c['tm_score']:>6.3f} {c['bytes']:>9d} "
                     f"{'yes' if c.get('pareto') else '':>6}")
    final = report.get("final_audit") or {}
    for a in final.get("attacks", []):
        lines.append(f"  final audit {a['name']:<18} AUC {a['auc']:.3f}  TPR@0.1%FPR {a['tpr_at_fpr']['0.001']:.4f}")
    if report.get("selected") is None:
        lines.append("no candidate meets the selection constraints: " + "; ".join(report.get("infeasible", [])))
    lines.append(f"report: {Path(out) / 'report.html'}")
    return "\n".join(lines)
