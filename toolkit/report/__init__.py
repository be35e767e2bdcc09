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
    ``report.json`` is always JSON: a figure that is NaN or infinite (a bug or a broken model, never a
    number to compare) is written as null and its path listed under ``non_finite``. A directory or file that
    cannot be written is one :class:`~toolkit.errors.ConfigError` line (exit 2).
    """
    from toolkit.io import atomic_write_json, check_output_dir, finite_json
    from toolkit.report.html import write_html
    from toolkit.report.markdown import write_summary

    out = check_output_dir(out_dir)
    non_finite = finite_json(report)[1]
    if non_finite:
        report["non_finite"] = non_finite
    files = dict(report.get("files") or {})
    files.setdefault("report", str(out / "report.json"))
    files.update(html=str(out / "report.html"), summary=str(out / "summary.md"))
    report["files"] = files
    write_html(report, out / "report.html", out)
    write_summary(report, out / "summary.md")
    atomic_write_json(out / "report.json", report)
    return files
