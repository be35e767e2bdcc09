"""Report integrity (issue 16, part 5): names an attacker chooses cannot forge or break a report.

A file name with a backtick, newlines, ``## ✅ ... PASS`` and ``<!--`` once added a passing heading to the
Markdown summary of a *failing* gate and hid its violations. Here such names go through real gates (the tiny
seed ONNX, real subprocesses) and through the writers directly (for characters no file name can hold:
NUL, lone surrogates); the outputs are then read the way their consumers read them: Markdown rendered by a
CommonMark parser, JUnit parsed by ElementTree, JSON parsed strictly (no NaN/Infinity).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from reliability_fuzz import SEEDS
from reliability_runs import ROOT

ONNX = SEEDS / "mlp.onnx"
#: The observed attack: closes the artifact's code span, starts a passing heading, opens an HTML comment.
FORGED = "evil`\n## ✅ safecompress gate: **PASS**\n<!--x.onnx"
#: A name with a forged verdict line for the human output, control characters and a non-UTF-8 byte.
FORGED_BYTES = b"model\nverdict: PASS (0 violations)\n\x1b[32m\xff\x01.onnx"


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1")
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, env=env,
                          cwd=cwd, timeout=300)


def _strict_json(text: str | bytes):
    """Parse as RFC 8259 JSON: NaN / Infinity are refused (Python's json would accept them)."""
    def refuse(name):
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def _render_markdown(md: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(md)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("hostile-reports-data")
    with np.load(SEEDS / "data.npz") as z:
        x, y = z["x"], z["y"]
    n = len(x) // 2
    np.savez(d / "m.npz", x=x[:n], y=y[:n])
    np.savez(d / "n.npz", x=x[n:], y=y[n:])
    return d / "m.npz", d / "n.npz"


def _gate(artifact, split, tmp_path, *extra):
    """A gate that must fail (no audit has AUC <= 0.01), writing every output."""
    m, n = split
    return _cli("gate", artifact, "--members", m, "--nonmembers", n, "--attacks", "loss", "--max", "auc=0.01",
                "--summary", tmp_path / "summary.md", "--junit", tmp_path / "junit.xml", "--out", tmp_path / "out",
                *extra)


def _check_summary(md: str) -> None:
    """The summary of a failing gate: one heading (FAIL), its violation listed, nothing hidden or forged."""
    assert md.startswith("## ❌ safecompress gate: **FAIL**")
    assert not [ln for ln in md.splitlines()[1:] if ln.lstrip().startswith(("#", "<!--"))], md
    page = _render_markdown(md)
    headings = [ln for ln in page.splitlines() if ln.startswith(("<h1", "<h2", "<h3"))]
    assert headings == ["<h2>❌ safecompress gate: <strong>FAIL</strong> (1 violation)</h2>"], headings
    assert "<!--" not in page  # the name's comment opener is text, so the violations below it are shown
    assert "of <code>loss</code>: " in page and "max 0.01" in page


def _check_junit(data: bytes) -> ET.Element:
    root = ET.fromstring(data)  # raises on ill-formed XML
    assert root.get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict"] == "fail"
    return root


def test_forged_file_name_cannot_turn_a_failing_summary_into_a_pass(split, tmp_path):
    art = tmp_path / FORGED
    shutil.copyfile(ONNX, art)
    r = _gate(art, split, tmp_path, "--json")
    assert r.returncode == 1, r.stderr
    assert b"Traceback" not in r.stderr
    report = _strict_json(r.stdout)  # stdout is exactly one JSON document
    assert report["gate"]["verdict"] == "fail" and report["artifact"]["path"] == str(art)

    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    _check_summary(md)
    assert md == (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    _check_junit((tmp_path / "junit.xml").read_bytes())

    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<!--" not in page and "<!--x.onnx" not in page and "&lt;!--x.onnx" in page
    assert page.count("<h1>") == 1 and 'class="badge fail"' in page and 'class="badge pass"' not in page
    assert _strict_json((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["gate"]["verdict"] == "fail"


def test_non_utf8_and_control_characters_in_a_path(split, tmp_path):
    art = os.fsdecode(os.fsencode(tmp_path) + b"/" + FORGED_BYTES)  # surrogateescape: what argv decodes to
    shutil.copyfile(ONNX, art)
    r = _gate(art, split, tmp_path)  # human output this time
    assert r.returncode == 1, r.stderr
    assert b"Traceback" not in r.stderr
    out = r.stdout.decode("utf-8")  # valid UTF-8 although the name is not
    verdicts = [ln for ln in out.splitlines() if ln.startswith("verdict:")]
    assert verdicts == [verdicts[0]] and verdicts[0].startswith("verdict: FAIL"), out
    assert "\x1b" not in out and "\\xff" in out  # the byte is shown as an escape, the ANSI escape defused

    _check_summary((tmp_path / "summary.md").read_text(encoding="utf-8"))
    root = _check_junit((tmp_path / "junit.xml").read_bytes())
    assert "\\xff" in {p.get("name"): p.get("value") for p in root.iter("property")}["artifact"]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "\\xff" in page
    rep = _strict_json((tmp_path / "out" / "report.json").read_bytes())
    assert rep["artifact"]["path"] == art  # report.json keeps the exact name (as a \udcff escape)


# --------------------------------------------------------------------------------------------- writers
#: Characters no file name can carry, or that break XML / Markdown / HTML: NUL and every C0 control, DEL and
#: a C1 control, lone surrogates (high, and the low ones surrogateescape makes of non-UTF-8 bytes), the CDATA
#: terminator, both quotes, markup, a bidi override, a Unicode line separator, matplotlib math (``$``).
NASTY = ["".join(map(chr, range(0x20))), "$\\frac{$", "\x7f\x85", "\ud800", "a\udcff\udc80b", "]]>", "\"'",
         "<b>&amp;</b>", "x\u202eFAIL", "line\u2028sep", "`` ` ``", "|pipe\\|", "*_[x](y)!#"]


def _gate_report(name: str) -> dict:
    from toolkit.gate import evaluate
    from toolkit.gate.policy import parse_flag_items

    row = {"name": name, "kind": "score", "auc": 0.7, "balanced_accuracy": 0.6, "n_members": 50,
           "n_nonmembers": 50, "tpr_at_fpr": {"0.001": 0.1, "0.01": 0.2}, "under_resolved": True}
    report = {"schema": "safecompress.audit/1", "seed": 0, "attacks": [row],
              "accuracy": {"members": 0.9, "nonmembers": 0.8},
              "artifact": {"path": f"/x/{name}.onnx", "format": "onnx", "bytes": 10, "sha256": "ab" * 32},
              "data": {"n_members": 50, "n_nonmembers": 50},
              "candidates": [{"name": name, "backend": name, "method": name, "accuracy": 0.8, "bytes": 10,
                              "mia_accuracy": 0.6}], "selected": name,
              "provenance": {"command": f"safecompress gate '{name}'", "versions": {"python": "3"}}}
    result = evaluate(report, parse_flag_items("max", ["auc=0.6"]))
    report["gate"] = dict(result.to_dict(), warnings=[f"warning about {name}"])
    return report


@pytest.mark.parametrize("name", NASTY, ids=[f"nasty{i}" for i in range(len(NASTY))])
def test_writers_escape_any_name(name):
    from toolkit.report.html import render_html
    from toolkit.report.junit import junit_xml
    from toolkit.report.markdown import summary_markdown

    report = _gate_report(name)
    root = ET.fromstring(junit_xml(report))  # well-formed XML 1.0 whatever the name holds
    case = next(root.iter("testcase"))
    assert case.find("failure") is not None and case.get("name").startswith("auc <= 0.6 [")

    md = summary_markdown(report)
    md.encode("utf-8")  # no lone surrogate left
    assert md.startswith("## ❌ safecompress gate: **FAIL** (1 violation)")
    assert all(c.isprintable() or c == "\n" for c in md), md
    page = _render_markdown(md)
    assert [ln for ln in page.splitlines() if ln.startswith("<h")] == [
        "<h2>❌ safecompress gate: <strong>FAIL</strong> (1 violation)</h2>"]
    assert "<b>" not in page  # markup in a name is text
    rows = [ln for ln in md.splitlines() if ln.startswith("| ❌ |")]
    assert len(rows) == 1 and rows[0].count(" | ") == 4  # the name's | did not add table cells

    html = render_html(report)
    html.encode("utf-8")
    assert "<b>&amp;</b>" not in html and "\x00" not in html and "\u202e" not in html


def test_code_spans_survive_backticks():
    from toolkit.report.escape import md_code

    for s in ["a`b", "``", "`x`", " `", "a```b````c"]:
        span = md_code(s)
        page = _render_markdown(span)
        # one code element whose text is the original (CommonMark strips the one padding space added)
        assert page.startswith("<p><code>") and page.count("<code>") == 1, (s, page)
        assert page.strip().removeprefix("<p><code>").removesuffix("</code></p>") == s


# --------------------------------------------------------------------------------------------- JSON
def test_non_finite_figures_are_null_with_a_note(tmp_path):
    from toolkit.io import atomic_write_json, finite_json
    from toolkit.report import write_reports

    report = _gate_report("loss")
    report["attacks"][0]["auc"] = math.nan
    report["attacks"][0]["tpr_at_fpr"]["0.01"] = -math.inf
    report["accuracy"]["members"] = np.float32("inf")
    clean, where = finite_json(report)
    assert where == ["attacks[0].auc", "attacks[0].tpr_at_fpr.0.01", "accuracy.members"]
    assert clean["attacks"][0]["auc"] is None and clean["accuracy"]["members"] is None
    write_reports(report, tmp_path)
    rep = _strict_json((tmp_path / "report.json").read_text())
    assert rep["non_finite"] == where and rep["attacks"][0]["auc"] is None
    atomic_write_json(tmp_path / "x.json", {"a": [math.nan, 1.0]})
    assert _strict_json((tmp_path / "x.json").read_text()) == {"a": [None, 1.0]}


def test_emit_json_writes_one_valid_document(capsys):
    from toolkit import cli

    cli._emit_json({"auc": math.nan, "path": "a\udcffb", "n": np.int64(3)})
    out, err = capsys.readouterr()
    assert _strict_json(out) == {"auc": None, "path": "a\udcffb", "n": 3}
    assert out.isascii() and "warning: auc is not a finite number" in err


def test_a_non_finite_figure_never_passes_a_gate():
    from toolkit.gate import evaluate
    from toolkit.gate.policy import parse_flag_items

    for bad in (math.nan, -math.inf, math.inf):
        report = _gate_report("loss")
        report["attacks"][0]["auc"] = bad
        res = evaluate(report, parse_flag_items("max", ["auc=0.99"]))
        assert not res.passed and any("not a finite number" in w for w in res.warnings), bad


def test_json_stdout_holds_only_the_document(split, tmp_path):
    """--json: warnings and anything printed meanwhile go to stderr; stdout parses as one document."""
    m, n = split
    r = _cli("audit", ONNX, "--members", m, "--nonmembers", n, "--attacks", "loss", "--json")
    assert r.returncode == 0, r.stderr
    assert _strict_json(r.stdout)["attacks"][0]["name"] == "loss"
    r = _cli("inspect", ONNX, "--json")
    assert r.returncode == 0, r.stderr
    assert _strict_json(r.stdout)["format"] == "onnx"
