"""report.html / summary.md / JUnit writers on a report built from real audits, and the audit CLI's outputs."""

import base64
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from toolkit.report import write_reports
from toolkit.report.html import render_html
from toolkit.report.junit import junit_xml
from toolkit.report.markdown import summary_markdown
from toolkit.report.pareto import pareto_mask


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.imgs = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href", "action", "poster", "data"):
            if key in a:
                self.urls.append(a[key])
        if tag == "img":
            self.imgs.append(a)


def test_html_is_one_self_contained_file(run_report, tmp_path):
    report, audit_dir = run_report
    files = write_reports(dict(report, files=dict(report["files"])), tmp_path)
    html = (tmp_path / "report.html").read_text()
    p = Collect()
    p.feed(html)
    assert "script" not in p.tags and "iframe" not in p.tags
    assert all(u.startswith("data:") for u in p.urls), [u[:40] for u in p.urls if not u.startswith("data:")]
    assert not re.search(r"https?://|url\(", html)
    alts = [i["alt"] for i in p.imgs]
    assert alts == ["Pareto front of the candidates", "ROC curves (log-log)", "AUC and TPR per attack"]
    roc = (audit_dir / "roc.png").read_bytes()
    for img in p.imgs:
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert any(base64.b64decode(i["src"].split(",", 1)[1]) == roc for i in p.imgs)  # the audit's own ROC plot
    for section in ('id="gate"', 'id="candidates"', 'id="selected"', 'id="artifact"', 'id="attacks"',
                    'id="reproduce"'):
        assert section in html
    assert "FAIL" in html and "under-resolved" in html  # min accuracy 0.99 fails; 600 non-members < 1,000
    for c in report["candidates"]:
        assert f"<code>{c['name']}</code>" in html
    assert report["provenance"]["command"] in html and "scikit-learn" in html
    assert json.loads((tmp_path / "report.json").read_text())["files"]["html"] == files["html"]


def test_html_escapes_report_values(run_report):
    report, _ = run_report
    evil = "<script>alert(1)</script>"
    cands = [dict(c, name=evil if i == 1 else c["name"], method=evil) for i, c in enumerate(report["candidates"])]
    html = render_html(dict(report, candidates=cands, selected=evil))
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pareto_front_over_accuracy_leakage_bytes(run_report):
    report, _ = run_report
    cands = report["candidates"]
    mask = pareto_mask(cands)
    assert any(mask)
    def key(c):  # (accuracy: higher is better, leakage and bytes: lower is better)
        return c["accuracy"], max(a["auc"] for a in c["attacks"]), c["bytes"]

    for c, on in zip(cands, mask):  # nothing on the front is dominated; everything off it is
        acc, leak, size = key(c)
        dominated = any(o[0] >= acc and o[1] <= leak and o[2] <= size and o != key(c)
                        for o in map(key, cands))
        assert on != dominated
    pts = [{"name": "a", "accuracy": 0.9, "mia_accuracy": 0.6, "bytes": 100},
           {"name": "b", "accuracy": 0.8, "mia_accuracy": 0.55, "bytes": 100},
           {"name": "c", "accuracy": 0.8, "mia_accuracy": 0.6, "bytes": 200},
           {"name": "d", "accuracy": None, "bytes": 1}]
    assert pareto_mask(pts) == [True, True, False, False]


def test_markdown_summary_tables(run_report):
    report, _ = run_report
    md = summary_markdown(report)
    assert md.startswith("## ❌ safecompress gate: **FAIL** (1 violation)")
    assert "| ❌ | `accuracy` ≥ 0.99 | `model` |" in md
    assert "`accuracy` of `model`" in md
    header = "| attack | kind | AUC [95% CI] | MIA acc [95% CI] | TPR@0.1%FPR [95% CI] | TPR@1%FPR [95% CI] |"
    assert header in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| `loss`") or ln.startswith("| `entropy`")]
    assert len(rows) == 2 and all(ln.count("|") == 8 for ln in rows)
    assert f"**Candidates** (selected: `{report['selected']}`)" in md and f"| ★ `{report['selected']}` |" in md
    plain = {k: v for k, v in report.items() if k not in ("gate", "candidates", "selected", "dense")}
    assert summary_markdown(plain).startswith("## safecompress audit")


def test_junit_counts(run_report):
    report, _ = run_report
    root = ET.fromstring(junit_xml(report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 2 * len(report["attacks"]) + 1 == int(root.get("tests")) == int(suite.get("tests"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == len(report["gate"]["violations"]) == int(suite.get("failures"))
    assert failed[-1].find("failure").get("message").startswith("FAIL accuracy attack=model")


def test_audit_cli_writes_html_and_summary(cli, onnx_files, tmp_path):
    out = tmp_path / "audit"
    r = cli("audit", onnx_files / "model.onnx", "--members", onnx_files / "members.npz", "--nonmembers",
            onnx_files / "nonmembers.npz", "--attacks", "loss,entropy", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout and "html: " in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["files"]["html"] == str(out / "report.html") and rep["provenance"]["command"].startswith(
        "safecompress audit ")
    html = (out / "report.html").read_text()
    assert "<h1>safecompress leakage audit: model.onnx</h1>" in html and html.count("data:image/png;base64,") == 2
    md = (out / "summary.md").read_text()
    assert md.startswith("## safecompress audit") and "| `loss` | score |" in md


@pytest.mark.parametrize("flag", ["--json", "--quiet"])
def test_audit_machine_flags(cli, onnx_files, flag):
    r = cli("audit", onnx_files / "model.onnx", "--members", onnx_files / "members.npz", "--nonmembers",
            onnx_files / "nonmembers.npz", "--attacks", "loss", flag)
    assert r.returncode == 0, r.stderr
    if flag == "--json":
        assert json.loads(r.stdout)["attacks"][0]["name"] == "loss"
    assert r.stderr == ""
