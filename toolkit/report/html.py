"""``report.html``: one self-contained page for an audit, gate or selection-run report.

Self-contained means: CSS in a ``<style>`` element, every plot a ``data:image/png;base64`` image, no script,
no external URL (the page renders offline and can be attached to a CI run as one file). Every value from the
report is HTML-escaped with :func:`~toolkit.report.escape.esc` (which also makes control characters and
non-UTF-8 file names visible escapes); only markup written here is not.

Sections, each rendered when the report holds its data (so the run engine's report gets them by adding keys):

* ``gate``: the verdict, violations, warnings and the threshold table (worst attack, value, baseline, delta);
* ``artifact`` / ``references``: format, sha256, bytes;
* ``accuracy`` and ``data``;
* ``attacks``: the attack table (95% CIs, under-resolved flags), the audit's log-log ``roc.png`` (taken from
  ``files.roc``, or ``roc.png`` next to the report) and a per-attack AUC / TPR chart;
* ``candidates`` (+ ``selected``, ``dense``/``baseline``): the Pareto plot (accuracy vs leakage, marker area =
  bytes), the candidate table with compression figures, the selected model;
  a nested audit report under ``final_audit`` (or ``audit``) is rendered like a top-level one;
* ``provenance``: command, seed, package versions.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from toolkit.report.escape import esc, esc_block
from toolkit.report.markdown import fmt, signed, size
from toolkit.report.pareto import attack_rows, leakage, max_tpr, pareto_mask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.muted { color: var(--muted); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
table { border-collapse: collapse; margin: 6px 0 12px; width: 100%; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num .muted { display: block; font-size: 11.5px; white-space: nowrap; }
table { font-size: 13px; }
tr.fail td { background: #ffebe9; } tr.front td:first-child { border-left: 4px solid #e45756; }
tr.selected td { background: #fff8c5; }
.badge { display: inline-block; padding: 4px 14px; border-radius: 6px; color: white; font-weight: 700;
         font-size: 18px; letter-spacing: .5px; } .pass { background: var(--ok); } .fail { background: var(--bad); }
.flag { color: var(--warn); font-weight: 600; } .ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; }
ul.violations li { color: var(--bad); } .warning { color: var(--warn); }
figure { margin: 8px 0 16px; } figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12.5px; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
"""


def num(v, digits: int = 3) -> str:
    """A figure as HTML: :func:`fmt` for numbers, bools and None; anything else escaped text."""
    return fmt(v, digits) if v is None or isinstance(v, (int, float)) else esc(v)


def _img(png: bytes, alt: str, caption: str = "", cls: str = "plot") -> str:
    if not png.startswith(PNG_MAGIC):
        raise ValueError(f"{alt}: not PNG data")
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _table(header: list[str], rows: list[tuple[list[str], str]], cls: str = "") -> str:
    """``rows``: (cells already escaped/marked up, css class of the row)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(f'<tr class="{rc}">' + "".join(cells) + "</tr>" for cells, rc in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def td(v, num: bool = False) -> str:
    return f'<td class="num">{v}</td>' if num else f"<td>{v}</td>"


def _ci(ci) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return f' <span class="muted">[{ci[0]:.3f}, {ci[1]:.3f}]</span>'
    return ""


# --------------------------------------------------------------------------- sections
def _gate_section(gate: dict) -> str:
    ok = gate.get("verdict") == "pass"
    parts = ['<h2 id="gate">Gate verdict</h2>',
             f'<p><span class="badge {"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span> '
             f'<span class="muted">{len(gate.get("violations") or [])} violation(s) in '
             f'{len(gate.get("checks") or [])} check(s) of {len(gate.get("thresholds") or [])} threshold(s)</span></p>']
    if gate.get("violations"):
        items = "".join(f"<li><code>{esc(v['metric'])}</code> of attack <code>{esc(v['attack'])}</code>: "
                        f"{num(v['value'], 4)}"
                        + (f" (baseline {num(v['baseline'], 4)}, &Delta; {signed(v['delta'], 4)})"
                           if v.get("delta") is not None else "")
                        + f" &mdash; limit {esc(v['kind'])} {v['limit']:g}</li>" for v in gate["violations"])
        parts.append(f'<h3>Violations</h3><ul class="violations">{items}</ul>')
    for w in gate.get("warnings") or []:
        parts.append(f'<p class="warning">&#9888; {esc(w)}</p>')
    has_base = gate.get("baseline") is not None
    sym = {"max": "&le;", "min": "&ge;", "max_increase": "increase &le;", "max_decrease": "decrease &le;"}
    rows = []
    for w in gate.get("worst") or []:
        cells = [td('<span class="ok">pass</span>' if w["passed"] else '<span class="bad">FAIL</span>'),
                 td(f"<code>{esc(w['metric'])}</code> {sym[w['kind']]} {w['limit']:g}"),
                 td(esc(w.get("source"))), td(f"<code>{esc(w['attack'])}</code>"),
                 td(num(w["value"], 4) + (' <span class="flag">under-resolved</span>' if w.get("under_resolved")
                                          else ""), True)]
        if has_base:
            cells += [td(num(w.get("baseline"), 4), True), td(signed(w.get("delta"), 4), True)]
        cells.append(td(f"{w['violations']}/{w['checks']}", True))
        rows.append((cells, "" if w["passed"] else "fail"))
    header = ["", "threshold", "from", "worst attack", "value"] + (["baseline", "&Delta;"] if has_base else []) \
        + ["failing checks"]
    parts.append(_table(header, rows, "gate"))
    if has_base:
        parts.append(f'<p class="muted">Baseline: <code>{esc((gate["baseline"] or {}).get("path"))}</code></p>')
    return "\n".join(parts)


def _artifact_section(report: dict) -> str:
    art = report.get("artifact") or {}
    rows = [([td("target"), td(f"<code>{esc(art.get('path'))}</code>"), td(esc(art.get("format"))),
              td(f"<code>{esc(art.get('sha256'))}</code>"), td(f"{size(art.get('bytes'))}", True)], "")]
    for r in report.get("references") or []:
        rows.append(([td(esc(r.get("role"))), td(f"<code>{esc(r.get('path') or r.get('name'))}</code>"),
                      td(esc(r.get("format"))), td(f"<code>{esc(r.get('sha256'))}</code>"),
                      td(size(r.get("bytes")), True)], ""))
    out = ['<h2 id="artifact">Artifact</h2>',
           _table(["role", "path", "format", "sha256", "bytes"], rows, "artifact")]
    acc, data = report.get("accuracy") or {}, report.get("data") or {}
    if acc:
        both = None not in (acc.get("members"), acc.get("nonmembers"))
        gap = acc["members"] - acc["nonmembers"] if both else None
        out.append('<h3 id="accuracy">Accuracy</h3>' + _table(
            ["non-members (held-out) = accuracy", "members", "gap (members - non-members)", "members / non-members",
             "known halves"],
            [([td(f"<b>{num(acc.get('nonmembers'))}</b>", True), td(num(acc.get("members")), True),
               td(signed(gap), True), td(f"{esc(data.get('n_members'))} / {esc(data.get('n_nonmembers'))}", True),
               td(f"{esc(data.get('known_members'))} / {esc(data.get('known_nonmembers'))}", True)], "")],
            "accuracy"))
    refs = report.get("reference_models")
    if refs:
        out.append('<p class="muted">Reference models: ' + esc(", ".join(f"{k}={v}" for k, v in refs.items()))
                   + "</p>")
    return "\n".join(out)


def _roc_png(report: dict, base_dir: Path | None) -> bytes | None:
    candidates = []
    roc = (report.get("files") or {}).get("roc")
    if roc:
        candidates.append(Path(roc))
        if base_dir is not None:
            candidates.append(base_dir / Path(roc).name)
    if base_dir is not None:
        candidates.append(base_dir / "roc.png")
    for p in candidates:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if data.startswith(PNG_MAGIC):
            return data
    return None


def _attacks_section(report: dict, base_dir: Path | None, title: str = "Attacks") -> str:
    from toolkit.report.plots import attack_figure

    rows = []
    for r in report.get("attacks") or []:
        ci = r.get("ci95") or {}
        tci = ci.get("tpr_at_fpr") or {}
        under = ' <span class="flag">under-resolved</span>' if r.get("under_resolved") else ""
        rows.append(([td(f"<code>{esc(r['name'])}</code>"), td(esc(r.get("kind"))), td(esc(r.get("evaluated_on"))),
                      td(f"{num(r['auc'])}{_ci(ci.get('auc'))}", True),
                      td(f"{num(r['balanced_accuracy'])}{_ci(ci.get('balanced_accuracy'))}", True),
                      td(f"{num(r['tpr_at_fpr']['0.001'])}{_ci(tci.get('0.001'))}{under}", True),
                      td(f"{num(r['tpr_at_fpr']['0.01'])}{_ci(tci.get('0.01'))}", True),
                      td(f"{esc(r.get('n_members'))} + {esc(r.get('n_nonmembers'))}", True),
                      td(num(r.get("seconds"), 2), True)], ""))
    out = [f'<h2 id="attacks">{esc(title)}</h2>',
           _table(["attack", "kind", "evaluated on", "AUC [95% CI]", "MIA acc [95% CI]", "TPR@0.1%FPR [95% CI]",
                   "TPR@1%FPR [95% CI]", "members + non-members", "seconds"], rows, "attacks")]
    if any(r.get("under_resolved") for r in report.get("attacks") or []):
        out.append('<p class="flag">Under-resolved: fewer than 1,000 evaluated non-members, so TPR at 0.1% FPR '
                   "rests on less than one false positive. Audit with &ge; 1,000 (ideally 10,000) non-members.</p>")
    figs = []
    roc = _roc_png(report, base_dir)
    if roc is not None:
        figs.append(_img(roc, "ROC curves (log-log)", "Membership-inference ROC per attack, log-log axes; "
                                                      "chance is the diagonal.", "roc"))
    else:
        figs.append('<p class="muted">ROC plot: roc.png not found next to this report.</p>')
    figs.append(_img(attack_figure(report), "AUC and TPR per attack",
                     "AUC and TPR at 0.1% FPR per attack with 95% bootstrap intervals, chance and the gate's limits.",
                     "attack-bars"))
    out.append('<div class="grid">' + "".join(figs) + "</div>")
    return "\n".join(out)


def _params(p) -> str:
    if isinstance(p, dict):
        return ", ".join(f"{k}={v}" for k, v in p.items() if k != "method")
    return "" if p is None else str(p)


def _stats(s) -> str:
    if not isinstance(s, dict):
        return "-"
    bits = []
    if isinstance(s.get("sparsity"), (int, float)):
        bits.append(f"sparsity {s['sparsity']:.2f}")
    if s.get("params_after") is not None and s.get("params_before") is not None:
        bits.append(f"params {s['params_after']:,}/{s['params_before']:,}")
    if s.get("bits"):
        bits.append("bits " + ",".join(sorted({str(b) for b in s["bits"].values()})))
    if s.get("max_distinct_values") is not None:
        bits.append(f"≤ {s['max_distinct_values']} values")
    return esc("; ".join(bits) or "-")


def _candidates_section(report: dict) -> str:
    from toolkit.report.plots import pareto_figure

    cands = [c for c in report.get("candidates") or [] if isinstance(c, dict)]
    selected = report.get("selected")
    if isinstance(selected, dict):
        selected = selected.get("name")
    flags = [c.get("pareto") for c in cands]
    front = flags if all(isinstance(f, bool) for f in flags) else pareto_mask(cands)
    dense = report.get("dense") or report.get("baseline")
    dense = dense if isinstance(dense, dict) else None
    out = ['<h2 id="candidates">Candidates</h2>',
           _img(pareto_figure(cands, selected, front, dense), "Pareto front of the candidates",
                "Accuracy vs leakage (strongest attack's AUC), marker area proportional to the artifact's bytes; "
                "red: the Pareto front over accuracy, leakage and bytes; star: the selected model.", "pareto")]
    rows = []
    for c, on in zip(cands, front):
        leak, _ = leakage(c)
        cls = " ".join(x for x in ("front" if on else "", "selected" if c.get("name") == selected else "") if x)
        rows.append(([td(("&#9733; " if c.get("name") == selected else "") + f"<code>{esc(c.get('name'))}</code>"),
                      td(esc(c.get("backend"))), td(esc(c.get("method"))),
                      td(f"<code>{esc(_params(c.get('params')))}</code>"),
                      td(num(c.get("accuracy")), True), td(num(c.get("mia_accuracy")), True),
                      td(num(c.get("tm_score")), True), td(num(leak), True), td(num(max_tpr(c)), True),
                      td(size(c.get("bytes")), True), td(_stats(c.get("stats"))),
                      td(f"<code>{esc(c.get('artifact'))}</code>"), td("yes" if on else "", False)], cls))
    out.append(_table(["candidate", "backend", "method", "params", "accuracy", "MIA acc", "TM-score", "max AUC",
                       "max TPR@0.1%", "bytes", "compression", "artifact", "Pareto"], rows, "candidates"))
    if dense:
        out.append(f'<p class="muted">Dense baseline: accuracy {num(dense.get("accuracy"))}, MIA acc '
                   f'{num(dense.get("mia_accuracy"))}, {size(dense.get("bytes"))}.</p>')
    chosen = next((c for c in cands if c.get("name") == selected), None)
    if chosen is not None:
        out.append('<h3 id="selected">Selected model</h3>')
        out.append(_table(["name", "backend", "method", "params", "accuracy", "MIA acc", "TM-score", "bytes",
                           "artifact"],
                          [([td(f"<code>{esc(chosen.get('name'))}</code>"), td(esc(chosen.get("backend"))),
                             td(esc(chosen.get("method"))), td(f"<code>{esc(_params(chosen.get('params')))}</code>"),
                             td(num(chosen.get("accuracy")), True), td(num(chosen.get("mia_accuracy")), True),
                             td(num(chosen.get("tm_score")), True), td(size(chosen.get("bytes")), True),
                             td(f"<code>{esc(chosen.get('artifact'))}</code>")], "selected")], "selected"))
        rows = attack_rows(chosen)
        if rows:
            out.append(_table(["attack", "AUC", "MIA acc", "TPR@0.1%FPR", "TPR@1%FPR"],
                              [([td(f"<code>{esc(r.get('name'))}</code>"), td(num(r.get("auc")), True),
                                 td(num(r.get("balanced_accuracy")), True),
                                 td(num((r.get("tpr_at_fpr") or {}).get("0.001")), True),
                                 td(num((r.get("tpr_at_fpr") or {}).get("0.01")), True)], "") for r in rows],
                              "selected-attacks"))
    elif selected is not None:
        out.append(f'<p class="bad">The selected candidate {esc(selected)} is not among the candidates.</p>')
    return "\n".join(out)


def _provenance_section(report: dict) -> str:
    prov = report.get("provenance") or {}
    out = ['<h2 id="reproduce">Reproduce</h2>']
    if prov.get("command"):
        out.append(f"<pre><code>{esc_block(prov['command'])}</code></pre>")
    out.append(f'<p>Seed <code>{esc(prov.get("seed", report.get("seed")))}</code>'
               + (f' &middot; working directory <code>{esc(prov["cwd"])}</code>' if prov.get("cwd") else "")
               + (f' &middot; {esc(prov["platform"])}' if prov.get("platform") else "")
               + (f' &middot; created {esc(prov["created"])}' if prov.get("created") else "") + "</p>")
    versions = prov.get("versions") or {}
    if versions:
        out.append(_table(["package", "version"], [([td(esc(k)), td(f"<code>{esc(v)}</code>")], "")
                                                   for k, v in versions.items()], "versions"))
    data = report.get("data") or {}
    if data.get("members_sha256"):
        out.append(f'<p class="muted">Data: members sha256 <code>{esc(data["members_sha256"])}</code>, non-members '
                   f'sha256 <code>{esc(data.get("nonmembers_sha256"))}</code></p>')
    return "\n".join(out)


def render_html(report: dict, base_dir: str | Path | None = None) -> str:
    """The page for ``report`` (audit, gate or run report). ``base_dir``: where roc.png is looked up."""
    base = Path(base_dir) if base_dir is not None else None
    gate = report.get("gate")
    art = report.get("artifact") or {}
    kind = "Selection run" if report.get("candidates") else "Gate" if gate else "Leakage audit"
    title = f"safecompress {kind.lower()}: {Path(str(art.get('path'))).name if art.get('path') else ''}".rstrip(": ")
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">schema {esc(report.get("schema"))} &middot; seed {esc(report.get("seed"))}'
            + (f' &middot; {esc((report.get("provenance") or {}).get("created"))}' if report.get("provenance") else "")
            + "</p>"]
    if gate:
        body.append(_gate_section(gate))
    if report.get("candidates"):
        body.append(_candidates_section(report))
    if art:
        body.append(_artifact_section(report))
    if report.get("attacks"):
        body.append(_attacks_section(report, base))
    for key in ("final_audit", "audit"):
        nested = report.get(key)
        if isinstance(nested, dict) and nested.get("attacks"):
            label = "Final audit" if key == "final_audit" else "Audit"
            body.append(f'<h2 id="{key}">{label} of the selected model</h2>')
            if nested.get("artifact"):
                body.append(_artifact_section(nested))
            body.append(_attacks_section(nested, base, "Attacks (final audit)"))
    body.append(_provenance_section(report))
    body.append('<details><summary class="muted">report.json</summary><pre><code>'
                + esc_block(json.dumps({k: v for k, v in report.items() if k not in ("provenance",)}, indent=1,
                                 default=str)[:200_000]) + "</code></pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(report: dict, path: str | Path, base_dir: str | Path | None = None) -> Path:
    from toolkit.io import atomic_write_text

    p = Path(path)
    return atomic_write_text(p, render_html(report, base_dir if base_dir is not None else p.parent))
