"""Plots of the reports, rendered with matplotlib's Agg backend to PNG bytes (embedded in report.html).

* :func:`attack_figure` - per attack: AUC and TPR@0.1%FPR with their 95% bootstrap intervals, the gate's
  limits drawn as lines, under-resolved TPRs hatched;
* :func:`pareto_figure` - selection candidates: accuracy vs leakage (strongest attack's AUC), marker area
  proportional to the artifact's bytes, the Pareto front highlighted and joined, the selected one starred.

The log-log ROC curves per attack are the audit's own ``roc.png`` (drawn from the full score vectors, which
the report does not hold); report.html embeds that file.
"""

from __future__ import annotations

import io
import math

from toolkit.report.escape import printable
from toolkit.report.pareto import leakage, pareto_mask


def plot_text(name) -> str:
    """A name as plot text: :func:`printable` (the font renderer refuses lone surrogates; control characters
    would draw as boxes or new lines) with ``$`` escaped, since matplotlib reads ``$...$`` as math and a name
    that is not valid TeX math would fail the whole report."""
    return printable(name).replace("$", r"\$")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    return buf.getvalue()


def _limit(gate: dict | None, metric: str) -> float | None:
    for t in (gate or {}).get("thresholds", []):
        if t.get("metric") == metric and t.get("kind") == "max":
            return float(t["limit"])
    return None


def attack_figure(report: dict) -> bytes:
    """AUC and TPR@0.1%FPR per attack: points with 95% CI whiskers, chance and the gate's ``max`` limits."""
    plt = _plt()
    rows = report.get("attacks") or []
    names = [plot_text(r["name"]) for r in rows]
    gate = report.get("gate")
    height = 0.32 * max(len(rows), 2) + 1.1
    fig, axes = plt.subplots(2, 1, figsize=(5.6, 2 * height), dpi=100)
    panels = [("AUC", lambda r: r["auc"], lambda r: (r.get("ci95") or {}).get("auc"), 0.5, "auc"),
              ("TPR at 0.1% FPR", lambda r: r["tpr_at_fpr"]["0.001"],
               lambda r: ((r.get("ci95") or {}).get("tpr_at_fpr") or {}).get("0.001"), 0.001, "tpr@0.001")]
    ys = list(range(len(rows)))
    for ax, (title, val, ci, chance, metric) in zip(axes, panels):
        lo_all, hi_all = [chance], [chance]
        for y, r in zip(ys, rows):
            v = float(val(r))
            bounds = ci(r)
            ok = bounds and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
            color = "#f58518" if r.get("kind") == "learned" else "#4c78a8"
            hollow = metric.startswith("tpr") and r.get("under_resolved")
            ax.errorbar(v, y, xerr=[[max(v - bounds[0], 0)], [max(bounds[1] - v, 0)]] if ok else None,
                        fmt="o", color=color, mfc="white" if hollow else color, ecolor=color, capsize=3, lw=1.2)
            lo_all += [bounds[0] if ok else v]
            hi_all += [bounds[1] if ok else v]
        ax.axvline(chance, color="grey", ls="--", lw=0.8, label=f"chance {chance:g}")
        lim = _limit(gate, metric)
        if lim is not None:
            ax.axvline(lim, color="#d62728", lw=1.4, label=f"gate max {lim:g}")
            hi_all.append(lim)
        span = max(hi_all) - min(lo_all)
        ax.set_xlim(max(0.0, min(lo_all) - 0.08 * span - 1e-3), min(1.0, max(hi_all) + 0.08 * span + 1e-3))
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Per attack, 95% CI (blue: score-based, orange: learned; hollow: under-resolved)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def pareto_figure(candidates: list[dict], selected: str | None = None, front: list[bool] | None = None,
                  dense: dict | None = None) -> bytes:
    """Accuracy vs leakage of candidates, marker area ~ bytes, Pareto front highlighted (PNG bytes)."""
    plt = _plt()
    front = pareto_mask(candidates) if front is None else front
    pts = []
    for c, on in zip(candidates, front):
        leak, label = leakage(c)
        acc, size = c.get("accuracy"), c.get("bytes")
        if leak is None or not isinstance(acc, (int, float)):
            continue
        pts.append((c, float(leak), float(acc), float(size) if isinstance(size, (int, float)) else None, on, label))
    fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=100)
    sizes = [p[3] for p in pts if p[3]]
    big = max(sizes) if sizes else 1.0

    def area(b):
        return 40.0 + 460.0 * math.sqrt(b / big) if b else 40.0

    for c, leak, acc, size, on, _ in pts:
        ax.scatter(leak, acc, s=area(size), alpha=0.55, color="#e45756" if on else "#9d9d9d",
                   edgecolors="black" if on else "none", linewidths=1.0, zorder=3)
        tag = plot_text(c.get("name")) + (f"\n{size / 1024:.1f} KiB" if size else "")
        ax.annotate(tag, (leak, acc), fontsize=6.5, xytext=(5, 4), textcoords="offset points", zorder=4)
    on_front = sorted((p for p in pts if p[4]), key=lambda p: p[1])
    if len(on_front) > 1:
        ax.plot([p[1] for p in on_front], [p[2] for p in on_front], color="#e45756", lw=1, ls="-", zorder=2,
                label="Pareto front (accuracy, leakage, bytes)")
    elif on_front:
        ax.scatter([], [], color="#e45756", label="Pareto front (accuracy, leakage, bytes)")
    for p in pts:
        if selected is not None and p[0].get("name") == selected:
            ax.scatter(p[1], p[2], marker="*", s=260, color="gold", edgecolors="black", zorder=5, label="selected")
    if dense and isinstance(dense.get("accuracy"), (int, float)) and leakage(dense)[0] is not None:
        ax.scatter(leakage(dense)[0], dense["accuracy"], marker="D", s=60, color="#4c78a8", zorder=5,
                   label="dense baseline")
    ax.set_xlabel(f"leakage: {pts[0][5] if pts else 'max attack AUC'} (lower is better)")
    ax.set_ylabel("accuracy on held-out data (higher is better)")
    ax.set_title("Candidates: accuracy vs leakage (marker area ~ artifact bytes)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)

