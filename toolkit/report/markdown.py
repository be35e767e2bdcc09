"""A Markdown summary of an audit / gate / run report, for ``$GITHUB_STEP_SUMMARY`` and merge-request comments.

GitHub-flavoured Markdown only (tables, ``<details>``); no images, so it reads the same in a CI log. Sections,
each present when the report has the data: verdict and gate table (threshold, worst attack, value, baseline,
delta), violations, warnings, the attack table, accuracy, selection candidates, and the command to reproduce.

Every string that is not ours (paths, attack / candidate / metric names, warnings, the command line) goes
through :func:`~toolkit.report.escape.md_code` or :func:`~toolkit.report.escape.md_text`, so a forged name
cannot add a heading, a verdict or an HTML comment to the summary of a failing gate.
"""

from __future__ import annotations

import re

from toolkit.report.escape import md_code, md_fence, md_text, printable
from toolkit.report.pareto import leakage, max_tpr


def fmt(v, digits: int = 3) -> str:
    """A figure with ``digits`` decimals; ``-`` for None; anything else as literal Markdown text."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return md_text(v)


def signed(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:+.{digits}f}"


def size(n) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    return f"{n:,.0f} B" if n < 1024 else f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.2f} MiB"


def _cell(v) -> str:
    """A table cell: every ``|`` escaped (GFM splits cells on ``|`` even inside code spans). Backslashes right
    before a ``|`` are doubled first, so that no renderer reads ``\\|`` as an escaped backslash + a cell border;
    newlines (never in text from md_text/md_code) would end the row, so they become spaces."""
    s = str(v).replace("\r", " ").replace("\n", " ")
    return re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", s)


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def attack_rows(report: dict) -> list[list]:
    rows = []
    for r in report.get("attacks") or []:
        ci = r.get("ci95") or {}
        tci = ci.get("tpr_at_fpr") or {}
        flag = " ⚠ under-resolved" if r.get("under_resolved") else ""
        rows.append([md_code(r["name"]), md_text(r.get("kind", "-")), f"{fmt(r['auc'])}{_ci(ci.get('auc'))}",
                     f"{fmt(r['balanced_accuracy'])}{_ci(ci.get('balanced_accuracy'))}",
                     f"{fmt(r['tpr_at_fpr']['0.001'])}{_ci(tci.get('0.001'))}{flag}",
                     f"{fmt(r['tpr_at_fpr']['0.01'])}{_ci(tci.get('0.01'))}",
                     md_text(f"{r.get('evaluated_on', '-')} ({r.get('n_members')}+{r.get('n_nonmembers')})")])
    return rows


SYMBOLS = {"max": "≤", "min": "≥", "max_increase": "increase ≤", "max_decrease": "decrease ≤"}
ATTACK_HEADER = ["attack", "kind", "AUC [95% CI]", "MIA acc [95% CI]", "TPR@0.1%FPR [95% CI]", "TPR@1%FPR [95% CI]",
                 "evaluated on (members+non-members)"]


def summary_markdown(report: dict) -> str:
    """The whole summary as one Markdown string."""
    gate = report.get("gate")
    art = report.get("artifact") or {}
    lines: list[str] = []
    if gate:
        ok = gate.get("verdict") == "pass"
        n_viol = len(gate.get("violations") or [])
        lines.append(f"## {'✅' if ok else '❌'} safecompress gate: **{'PASS' if ok else 'FAIL'}**"
                     + ("" if ok else f" ({n_viol} violation{'s' if n_viol != 1 else ''})"))
    elif report.get("candidates"):
        lines.append("## safecompress run")
    else:
        lines.append("## safecompress audit")
    lines.append("")
    if art:
        sha = art.get("sha256")
        lines.append(f"Artifact {md_code(art.get('path'))} ({md_text(art.get('format'))}, {size(art.get('bytes'))}"
                     + (f", sha256 {md_code(str(sha)[:12] + '…')}" if sha else "") + ")")
    data = report.get("data") or {}
    if data:
        lines.append(md_text(f"· {data.get('n_members')} members / {data.get('n_nonmembers')} non-members"
                             f" · seed {report.get('seed')}"))
    lines.append("")

    if gate:
        has_base = gate.get("baseline") is not None
        header = ["", "threshold", "worst attack", "value"] + (["baseline", "Δ"] if has_base else []) + ["failing"]
        rows = []
        for w in gate.get("worst") or []:
            sym = SYMBOLS[w["kind"]]
            flag = " ⚠" if w.get("under_resolved") else ""
            row = ["✅" if w["passed"] else "❌", f"{md_code(w['metric'])} {sym} {w['limit']:g}",
                   md_code(w["attack"]),
                   fmt(w["value"], 4) + flag]
            if has_base:
                row += [fmt(w.get("baseline"), 4), signed(w.get("delta"), 4)]
            row.append(f"{w['violations']}/{w['checks']}")
            rows.append(row)
        lines += table(header, rows)
        lines.append("")
        if gate.get("violations"):
            lines.append("**Violations**")
            lines.append("")
            for v in gate["violations"]:
                lim = {"max": "max", "min": "min", "max_increase": "max increase",
                       "max_decrease": "max decrease"}[v["kind"]]
                extra = (f" (baseline {v['baseline']:.4f}, Δ {v['delta']:+.4f})" if v.get("delta") is not None
                         else "")
                lines.append(f"- {md_code(v['metric'])} of {md_code(v['attack'])}: {fmt(v['value'], 4)}{extra}, "
                             f"{lim} {v['limit']:g}")
            lines.append("")
        for w in gate.get("warnings") or []:
            lines.append(f"> ⚠ {md_text(w)}")
            lines.append("")
        if has_base:
            lines.append(f"Baseline: {md_code((gate['baseline'] or {}).get('path'))}")
            lines.append("")

    acc = report.get("accuracy")
    if acc:
        lines.append(f"Accuracy: non-members (held-out) **{fmt(acc.get('nonmembers'))}**, members "
                     f"{fmt(acc.get('members'))}, gap {signed(acc.get('members', 0) - acc.get('nonmembers', 0))}")
        lines.append("")

    if report.get("attacks"):
        fold = bool(gate)
        if fold:
            lines += ["<details><summary>All attacks</summary>", ""]
        lines += table(ATTACK_HEADER, attack_rows(report))
        if any(r.get("under_resolved") for r in report["attacks"]):
            lines += ["", "⚠ under-resolved: fewer than 1,000 evaluated non-members, so TPR@0.1%FPR rests on "
                          "less than one false positive."]
        if fold:
            lines += ["", "</details>"]
        lines.append("")

    cands = report.get("candidates") or []
    if cands:
        lines.append(f"**Candidates** (selected: {md_code(report.get('selected'))})")
        lines.append("")
        rows = []
        for c in cands:
            leak, _ = leakage(c)
            rows.append([("★ " if c.get("name") == report.get("selected") else "") + md_code(c.get("name")),
                         md_text(c.get("backend", "-")), md_text(c.get("method", "-")), fmt(c.get("accuracy")),
                         fmt(c.get("mia_accuracy")), fmt(c.get("tm_score")), fmt(leak), fmt(max_tpr(c)),
                         size(c.get("bytes"))])
        lines += table(["candidate", "backend", "method", "accuracy", "MIA acc", "TM-score", "max AUC",
                        "max TPR@0.1%", "bytes"], rows)
        lines.append("")

    prov = report.get("provenance") or {}
    if prov.get("command"):
        # one line even where a quoted argument holds a newline: no line of the summary starts with a name's text
        lines += ["<details><summary>Reproduce</summary>", "", *md_fence(printable(prov["command"]), "sh"), "",
                  md_text(", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())), "",
                  "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_summary(report: dict, path) -> str:
    from toolkit.io import atomic_write_text

    text = summary_markdown(report)
    atomic_write_text(path, text)
    return text
