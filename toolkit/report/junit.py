"""JUnit XML of a gate: one ``<testcase>`` per threshold x attack, a ``<failure>`` for each violation.

Built with :mod:`xml.etree.ElementTree` in the common (Ant / Jenkins / GitLab / GitHub test reporters) JUnit
layout::

    <testsuites name="safecompress gate" tests="N" failures="F" errors="0" time="T">
      <testsuite name="safecompress.gate" tests="N" failures="F" errors="0" skipped="0" time="T"
                 timestamp="2024-05-01T12:00:00" hostname="...">
        <properties><property name="artifact" value="..."/>...</properties>
        <testcase classname="safecompress.gate.auc.max" name="auc &lt;= 0.6 [loss]" time="0">
          <failure type="threshold" message="FAIL auc attack=loss value=0.71 limit: max=0.6">...</failure>
        </testcase>
        <system-out>warnings</system-out>
        <system-err/>
      </testsuite>
    </testsuites>

Every string that is not ours (the artifact and baseline paths, attack names, warnings) goes through
:func:`~toolkit.report.escape.printable`: ElementTree escapes markup but writes any character it is given,
and a control character or a lone surrogate (a non-UTF-8 file name) would make the document ill-formed or
unencodable. So the XML is well-formed whatever bytes a name holds.
"""

from __future__ import annotations

import datetime as _dt
import platform
import xml.etree.ElementTree as ET

from toolkit.gate.evaluate import Check
from toolkit.gate.metrics import KINDS
from toolkit.report.escape import printable


def junit_element(report: dict) -> ET.Element:
    gate = report["gate"]
    checks = [Check(**c) for c in gate["checks"]]
    failures = sum(not c.passed for c in checks)
    total_time = float((report.get("seconds") or {}).get("total") or 0.0)
    created = (report.get("provenance") or {}).get("created")
    stamp = (_dt.datetime.fromisoformat(created) if created else _dt.datetime.now(_dt.timezone.utc))
    stamp = stamp.astimezone(_dt.timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": "0"}

    root = ET.Element("testsuites", {"name": "safecompress gate", **counts, "time": f"{total_time:.3f}"})
    suite = ET.SubElement(root, "testsuite", {
        "name": "safecompress.gate", **counts, "skipped": "0", "time": f"{total_time:.3f}", "timestamp": stamp,
        "hostname": printable(platform.node() or "localhost"), "id": "0", "package": "safecompress"})
    props = ET.SubElement(suite, "properties")
    art = report.get("artifact") or {}
    for name, value in (("artifact", art.get("path")), ("format", art.get("format")), ("sha256", art.get("sha256")),
                        ("bytes", art.get("bytes")), ("verdict", gate.get("verdict")), ("seed", report.get("seed")),
                        ("baseline", (gate.get("baseline") or {}).get("path"))):
        if value is not None:
            ET.SubElement(props, "property", {"name": name, "value": printable(value)})
    for c in checks:
        kind = KINDS[c.kind]
        case = ET.SubElement(suite, "testcase", {
            "classname": printable(f"safecompress.gate.{c.metric}.{c.kind}"),
            "name": printable(f"{c.metric} {kind.symbol} {c.limit:g} [{c.attack}]"), "time": "0"})
        if not c.passed:
            body = [printable(f"metric: {c.metric}"), printable(f"attack: {c.attack}"), f"value: {c.value:.6f}",
                    f"limit: {kind.name} {c.limit:g}"]
            if c.baseline is not None:
                body += [f"baseline: {c.baseline:.6f}", f"delta: {c.delta:+.6f}"]
            if c.under_resolved:
                body.append("under-resolved: fewer evaluated non-members than 1/FPR")
            fail = ET.SubElement(case, "failure", {"type": "threshold", "message": printable(c.line())})
            fail.text = "\n".join(body)
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join(printable(f"warning: {w}") for w in gate.get("warnings") or []) or None
    ET.SubElement(suite, "system-err")
    return root


def junit_xml(report: dict) -> bytes:
    """The JUnit document of ``report["gate"]`` as UTF-8 bytes with an XML declaration; well-formed XML 1.0
    for any names in the report."""
    root = junit_element(report)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(report: dict, path) -> bytes:
    from toolkit.io import atomic_write_bytes

    data = junit_xml(report)
    atomic_write_bytes(path, data)
    return data
