"""Report writers: ``report.json`` (the audit report + optional ``gate`` / ``provenance`` / run sections),
``report.html`` (one self-contained page, :mod:`~toolkit.report.html`), ``summary.md`` (Markdown for CI
step summaries and merge-request comments, :mod:`~toolkit.report.markdown`), JUnit XML for gates
(:mod:`~toolkit.report.junit`); plots in :mod:`~toolkit.report.plots` (matplotlib Agg, PNG).

Orchestration layer: it reads report dicts only and never imports a framework.
"""

from __future__ import annotations

from pathlib import Path


def write_reports(report: dict, out_dir: str | Path) -> dict:
    """Write ``report.html``, ``summary.md`` and ``report.json`` (with their paths in ``files``) under ``out_dir``.

    ``report.json`` is written last, so its ``files`` section lists everything next to it. Returns ``files``.
    """
    from toolkit.io import atomic_write_json
    from toolkit.report.html import write_html
    from toolkit.report.markdown import write_summary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = dict(report.get("files") or {})
    files.setdefault("report", str(out / "report.json"))
    files.update(html=str(out / "report.html"), summary=str(out / "summary.md"))
    report["files"] = files
    write_html(report, out / "report.html", out)
    write_summary(report, out / "summary.md")
    atomic_write_json(out / "report.json", report)
    return files
