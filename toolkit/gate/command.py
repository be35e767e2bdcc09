"""``safecompress gate``: audit an artifact, apply thresholds, write JUnit / Markdown / report files.

Order of work, cheapest checks first: policy and flags (unknown metric, wrong kind, bad limit -> exit 2),
the baseline report, output paths; then the audit (:func:`device_tests.audit_cli.audit_command`, which
checks data and artifact); then evaluation and outputs. The caller (``toolkit.cli``) prints and exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ConfigError
from toolkit.gate.evaluate import GateResult, evaluate, load_baseline, require_baseline
from toolkit.gate.policy import GatePolicy, load_policy, merge, parse_flag_items
from toolkit.report.escape import printable


@dataclass
class GateRequest:
    """Everything the command line says (``None`` = not given; the policy or the default applies)."""

    artifact: Path
    members: Path
    nonmembers: Path
    references: list[Path] | None = None
    attacks: str | None = None
    config: Path | None = None
    out: Path | None = None
    seed: int | None = None
    original: bool = True
    max: list[str] | None = None
    min: list[str] | None = None
    max_increase: list[str] | None = None
    max_decrease: list[str] | None = None
    baseline: Path | None = None
    policy: Path | None = None
    junit: Path | None = None
    summary: Path | None = None
    argv: list[str] | None = None


def _check_output(path: Path | None, flag: str) -> None:
    """Refuse an output file that is a directory, or whose directory cannot be created or written (checked
    before the audit, so a bad path costs nothing and leaves no partial outputs)."""
    from toolkit.io import check_output_dir

    if path is None:
        return
    if Path(path).is_dir():
        raise ConfigError(f"{flag} {printable(path)} is a directory; give a file name")
    check_output_dir(Path(path).parent, flag, path)


def plan(req: GateRequest) -> tuple[GatePolicy | None, list, dict | None]:
    """``(policy, thresholds, baseline report)`` from the request, validated before any audit work."""
    policy = load_policy(req.policy) if req.policy is not None else None
    flags = [t for kind in ("max", "min", "max_increase", "max_decrease")
             for t in parse_flag_items(kind, getattr(req, kind))]
    thresholds = merge(policy, flags)
    baseline_path = req.baseline if req.baseline is not None else (policy.baseline if policy else None)
    require_baseline(thresholds, baseline_path is not None)
    if req.out is not None and Path(req.out).exists() and not Path(req.out).is_dir():
        raise ConfigError(f"--out {printable(req.out)} exists and is not a directory")
    baseline = load_baseline(baseline_path) if baseline_path is not None else None
    # last: these create the output directories, so only once everything else is valid
    for path, flag in ((req.junit, "--junit"), (req.summary, "--summary")):
        _check_output(path, flag)
    if req.out is not None:
        from toolkit.io import check_output_dir

        check_output_dir(req.out)
    return policy, thresholds, baseline


def gate_command(req: GateRequest) -> tuple[dict, GateResult]:
    """Run the gate; returns the report (with ``gate`` and ``provenance`` sections) and the result."""
    from device_tests.audit_cli import audit_command
    from toolkit.report.provenance import provenance

    policy, thresholds, baseline = plan(req)
    attacks = req.attacks if req.attacks is not None else (
        ",".join(policy.attacks) if policy is not None and policy.attacks else None)
    config = req.config if req.config is not None else (
        Path(policy.audit_config) if policy is not None and policy.audit_config else None)
    seed = req.seed if req.seed is not None else (policy.seed if policy is not None and policy.seed is not None else 0)

    report = audit_command(req.artifact, req.members, req.nonmembers, req.references, attacks, config, req.out, seed,
                           req.original)
    result = evaluate(report, thresholds, baseline)
    report["gate"] = dict(result.to_dict(), policy=str(req.policy) if req.policy is not None else None)
    report["provenance"] = provenance(req.argv, seed)
    write_outputs(report, req)
    return report, result


def write_outputs(report: dict, req: GateRequest) -> None:
    from toolkit.report import write_reports
    from toolkit.report.junit import write_junit
    from toolkit.report.markdown import write_summary

    if req.out is not None:
        write_reports(report, req.out)
    if req.junit is not None:
        write_junit(report, req.junit)
    if req.summary is not None:
        write_summary(report, req.summary)


def format_result(report: dict, result: GateResult, quiet: bool = False) -> str:
    """Human output: (unless quiet) one line per threshold with its worst attack; one line per violation;
    then the verdict. Names and paths are made :func:`printable`, so a file name cannot add a line (such as
    a forged ``verdict: PASS``) to the output."""
    lines = []
    if not quiet:
        art = report.get("artifact") or {}
        data = report.get("data") or {}
        lines.append(printable(f"gate: {art.get('path')} ({art.get('format')}, {art.get('bytes')} bytes); "
                               f"{data.get('n_members')} members, {data.get('n_nonmembers')} non-members; "
                               f"attacks: {', '.join(a['name'] for a in report.get('attacks') or [])}"))
        for w in result.worst():
            delta = f" (baseline {w['baseline']:.4f}, delta {w['delta']:+.4f})" if w.get("delta") is not None else ""
            t = f"{w['metric']} {w['kind']} {w['limit']:g}"
            lines.append(f"  {'ok  ' if w['passed'] else 'FAIL'}  {t:<28} worst: {printable(w['attack'])} "
                         f"{w['value']:.4f}{delta}")
    lines += [c.line() for c in result.violations]
    n = len(result.violations)
    lines.append(f"verdict: {'PASS' if result.passed else 'FAIL'} ({n} violation{'s' if n != 1 else ''} in "
                 f"{len(result.checks)} checks of {len(result.thresholds)} thresholds)")
    return "\n".join(lines)
