"""`safecompress gate` end to end: real artifacts (.tflite, .onnx) in their runtimes, real subprocesses.

Exit codes 0/1/2, one-line violations and errors, JUnit XML, the Markdown summary, report.json/html, the
baseline comparison and the policy file.
"""

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FAST = "loss,confidence,entropy"
VIOLATION = re.compile(r"^FAIL (\S+) attack=(\S+) value=([0-9.]+) .*limit: (max|min|max_increase|max_decrease)=\S+$")


def _junit(path: Path) -> tuple[ET.Element, list[ET.Element]]:
    """Parse a JUnit file and check the structure every JUnit consumer relies on; return root and cases."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    for el in (root, suite):
        assert int(el.get("tests")) == len(cases)
        assert int(el.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(el.get("errors")) == 0
        float(el.get("time"))
    assert suite.get("name") and suite.get("timestamp") and suite.get("hostname")
    assert [c.tag for c in suite][0] == "properties" and [c.tag for c in suite][-2:] == ["system-out", "system-err"]
    for c in cases:
        assert c.get("name") and c.get("classname") and float(c.get("time")) >= 0
        f = c.find("failure")
        assert f is None or (f.get("message") and f.get("type"))
    return root, cases


def _violations(text: str) -> list[re.Match]:
    return [m for m in map(VIOLATION.match, text.splitlines()) if m]


def test_gate_passes_and_writes_every_output(cli, gate_files, tmp_path):
    out = tmp_path / "out"
    r = cli("gate", gate_files / "model.tflite", "--members", gate_files / "members.npz",
            "--nonmembers", gate_files / "nonmembers.npz", "--attacks", FAST, "--max", "auc=0.9",
            "--max", "tpr@1e-3=0.5", "--min", "accuracy=0.85", "--max", "accuracy_gap=0.2",
            "--junit", tmp_path / "junit.xml", "--summary", tmp_path / "summary.md", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "\x1b[" not in r.stdout  # no progress bars off a TTY
    assert r.stdout.splitlines()[-1].startswith("verdict: PASS")
    assert not _violations(r.stdout)
    # 600 non-members < 1,000: TPR@0.1%FPR is flagged, as one warning line
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: tpr@0.001 is under-resolved")]
    assert len(warn) == 1 and "600 non-members" in warn[0], r.stderr

    root, cases = _junit(tmp_path / "junit.xml")
    assert len(cases) == 3 * 2 + 2 and root.get("failures") == "0"  # (auc, tpr) x 3 attacks + 2 model metrics
    assert {c.get("name") for c in cases} >= {"auc <= 0.9 [loss]", "tpr@0.001 <= 0.5 [entropy]",
                                              "accuracy >= 0.85 [model]"}

    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("## ✅ safecompress gate: **PASS**")
    assert "| ✅ | `auc` ≤ 0.9 |" in md and "`accuracy` ≥ 0.85" in md and "under-resolved" in md
    assert md == (out / "summary.md").read_text()

    rep = json.loads((out / "report.json").read_text())
    assert rep["schema"] == "safecompress.audit/1" and rep["gate"]["verdict"] == "pass"
    assert rep["artifact"]["bytes"] == (gate_files / "model.tflite").stat().st_size
    assert len(rep["artifact"]["sha256"]) == 64
    worst = {w["metric"]: w for w in rep["gate"]["worst"]}
    assert worst["auc"]["value"] == max(a["auc"] for a in rep["attacks"])
    assert worst["accuracy"]["value"] == rep["accuracy"]["nonmembers"]
    assert worst["accuracy_gap"]["value"] == pytest.approx(rep["accuracy"]["members"] - rep["accuracy"]["nonmembers"])
    assert rep["provenance"]["command"].startswith("safecompress gate ") and rep["provenance"]["seed"] == 0
    assert "numpy" in rep["provenance"]["versions"]
    assert set(rep["files"]) >= {"report", "roc", "risk", "html", "summary"}
    html = (out / "report.html").read_text()
    assert "PASS" in html and "data:image/png;base64," in html


def test_gate_violations_exit_1_one_line_each(cli, gate_files, tmp_path):
    r = cli("gate", gate_files / "leaky.onnx", "--members", gate_files / "members150.npz",
            "--nonmembers", gate_files / "nonmembers150.npz", "--attacks", FAST, "--max", "auc=0.6",
            "--min", "accuracy=0.95", "--max", "tpr@0.01=1", "--junit", tmp_path / "junit.xml", "--out", tmp_path / "o")
    assert r.returncode == 1, r.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    leaking = {a["name"]: a["auc"] for a in rep["attacks"] if a["auc"] > 0.6}
    assert len(leaking) == 3, rep["attacks"]  # the overfit MLP leaks to every metric attack
    found = _violations(r.stdout)
    assert {(m[1], m[2]) for m in found} == {("auc", a) for a in leaking} | {("accuracy", "model")}
    for m in found:  # the printed value is the report's
        want = leaking.get(m[2], rep["accuracy"]["nonmembers"])
        assert float(m[3]) == pytest.approx(want, abs=5e-5)
    assert r.stdout.splitlines()[-1].startswith("verdict: FAIL (4 violations")
    _, cases = _junit(tmp_path / "junit.xml")
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None)
    assert failed == sorted([f"auc <= 0.6 [{a}]" for a in leaking] + ["accuracy >= 0.95 [model]"])
    assert len(rep["gate"]["violations"]) == 4 and rep["gate"]["verdict"] == "fail"

    q = cli("gate", gate_files / "leaky.onnx", "--members", gate_files / "members150.npz",
            "--nonmembers", gate_files / "nonmembers150.npz", "--attacks", "loss", "--max", "auc=0.6", "--quiet")
    assert q.returncode == 1
    assert [ln for ln in q.stdout.splitlines()] == [_violations(q.stdout)[0].group(0), q.stdout.splitlines()[-1]]


def test_baseline_comparison(cli, gate_files, tmp_path):
    common = ("--members", gate_files / "members150.npz", "--nonmembers", gate_files / "nonmembers150.npz",
              "--attacks", FAST)
    # the previous release: the little-leaking model
    r = cli("gate", gate_files / "model.tflite", *common, "--max", "auc=0.9", "--out", tmp_path / "base")
    assert r.returncode == 0, r.stderr
    base = json.loads((tmp_path / "base" / "report.json").read_text())

    # the same artifact again: no increase at all
    r = cli("gate", gate_files / "model.tflite", *common, "--baseline", tmp_path / "base" / "report.json",
            "--max-increase", "auc=0.02", "--max-decrease", "accuracy=0.0")
    assert r.returncode == 0, r.stdout + r.stderr

    # the candidate leaks more: a generous limit passes (and --json prints only JSON on stdout) ...
    r = cli("gate", gate_files / "leaky.onnx", *common, "--baseline", tmp_path / "base" / "report.json",
            "--max-increase", "auc=0.5", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    deltas = {c["attack"]: c["delta"] for c in rep["gate"]["checks"]}
    by_base = {a["name"]: a["auc"] for a in base["attacks"]}
    for a in rep["attacks"]:
        assert deltas[a["name"]] == pytest.approx(a["auc"] - by_base[a["name"]])
        assert 0.02 < deltas[a["name"]] < 0.5

    # ... a tight one, from a policy file with a relative baseline path, fails per attack
    pol = tmp_path / "policy" / "gate.yaml"
    pol.parent.mkdir()
    pol.write_text("max_increase: {auc: 0.02}\nbaseline: ../base/report.json\nattacks: [loss, confidence, entropy]\n")
    r = cli("gate", gate_files / "leaky.onnx", "--members", gate_files / "members150.npz", "--nonmembers",
            gate_files / "nonmembers150.npz", "--policy", pol, "--summary", tmp_path / "s.md")
    assert r.returncode == 1, r.stderr
    found = _violations(r.stdout)
    assert sorted(m[2] for m in found) == sorted(by_base) and all(m[4] == "max_increase" for m in found)
    assert all("increase=" in m.group(0) and "baseline=" in m.group(0) for m in found)
    md = (tmp_path / "s.md").read_text()
    assert "❌ safecompress gate: **FAIL**" in md and "| baseline | Δ |" in md and "increase ≤ 0.02" in md
    assert re.search(r"\| \+0\.\d{4} \|", md)


def test_policy_file_and_flag_override(cli, gate_files, tmp_path):
    example = REPO / "configs" / "gate.example.yaml"
    shutil.copy(example, tmp_path / "gate.yaml")
    r = cli("gate", gate_files / "model.tflite", "--members", gate_files / "members.npz", "--nonmembers",
            gate_files / "nonmembers.npz", "--policy", tmp_path / "gate.yaml", "--attacks", "loss",
            "--max", "auc=0.99", "--json")
    rep = json.loads(r.stdout)
    gate = rep["gate"]
    limits = {(t["metric"], t["kind"]): (t["limit"], t["source"]) for t in gate["thresholds"]}
    assert limits == {("auc", "max"): (0.99, "flag"), ("tpr@0.001", "max"): (0.05, "policy"),
                      ("accuracy_gap", "max"): (0.1, "policy"), ("accuracy", "min"): (0.85, "policy")}
    assert [a["name"] for a in rep["attacks"]] == ["loss"]  # --attacks overrides the policy's list
    assert r.returncode == (0 if gate["verdict"] == "pass" else 1) and gate["verdict"] == (
        "fail" if gate["violations"] else "pass")


@pytest.mark.parametrize("args,needle", [
    (("--max", "aucc=0.5"), "unknown gate metric 'aucc' (did you mean 'auc'?); known: auc, balanced_accuracy, "
                            "tpr@0.001, tpr@0.01, accuracy, accuracy_gap"),
    (("--max", "tpr@0.05=0.1"), "unknown gate metric 'tpr@0.05'"),
    (("--min", "auc=0.5"), "--min does not apply to auc (higher is worse); use --max or --max-increase"),
    (("--max", "auc=1.5"), "--max auc=1.5: the limit must lie in [0, 1]"),
    (("--max", "auc"), "--max expects METRIC=LIMIT"),
    (("--max-increase", "auc=0.02"), "needs a baseline"),
    ((), "no thresholds"),
    (("--max", "auc=0.6", "--policy", "{d}/bad_key.yaml"), "unknown key 'max_increse' (allowed: max, min, "
                                                           "max_increase"),
    (("--policy", "{d}/bad_metric.yaml"), "invalid gate policy"),
    (("--policy", "{d}/bad_yaml.yaml"), "is not valid YAML"),
    (("--max", "auc=0.6", "--baseline", "{d}/members.npz"), "baseline report"),
    (("--max", "auc=0.6", "--nonmembers", "{d}/overlap.npz"), "3 sample(s) occur in both members and non-members"),
    (("--max", "auc=0.6", "--members", "{d}/missing.npz"), "data file not found"),
])
def test_bad_usage_and_input_exit_2(cli, gate_files, args, needle):
    d = gate_files
    (d / "bad_key.yaml").write_text("max: {auc: 0.6}\nmax_increse: {auc: 0.02}\n")
    (d / "bad_metric.yaml").write_text("min: {accuracy: 0.8}\nmax: {auc: 0.6, tpr@0.5: 0.1}\n")
    (d / "bad_yaml.yaml").write_text("max: {auc: 0.6\n")
    base = ["gate", d / "model.tflite", "--members", d / "members.npz", "--nonmembers", d / "nonmembers.npz"]
    args = [a.format(d=d) for a in args]
    # later options win in click: --members/--nonmembers given in args replace the defaults above
    r = cli(*base, *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("artifact,data,needle", [
    ("corrupt.tflite", "nonmembers.npz", "corrupt.tflite"),
    ("model.tflite", "flat.npz", "shape"),
])
def test_bad_artifact_or_data_that_does_not_fit_exit_2(cli, gate_files, artifact, data, needle):
    d = gate_files
    members = "flat_members.npz" if data == "flat.npz" else "members.npz"
    if data == "flat.npz":
        import numpy as np

        m = np.load(d / "members.npz")
        np.savez(d / members, x=m["x"].reshape(len(m["x"]), -1), y=m["y"])
    r = cli("gate", d / artifact, "--members", d / members, "--nonmembers", d / data, "--max", "auc=0.6",
            "--attacks", "loss")
    assert r.returncode == 2, (r.stdout, r.stderr)
    # One error line, and it is the last; a runtime may log on stderr as it loads (LiteRT: "INFO: Created
    # TensorFlow Lite XNNPACK delegate for CPU."), which is not ours to silence here.
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and r.stderr.rstrip().endswith(errors[0]), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_gate_help_lists_flags(cli):
    r = cli("gate", "--help")
    assert r.returncode == 0
    for flag in ("--max", "--min", "--max-increase", "--baseline", "--policy", "--junit", "--summary", "--quiet",
                 "--json"):
        assert flag in r.stdout
