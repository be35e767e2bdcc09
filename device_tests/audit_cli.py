"""Implementation of ``safecompress audit`` (imported lazily by :mod:`toolkit.cli`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _load_pair(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.io import load_npz

    # x is read from the file a batch at a time (hashing, checks, queries): memory does not grow with the
    # number of queries beyond their outputs.
    arrays = load_npz(path, rows=("x",))
    return arrays["x"], arrays["y"]


def audit_command(artifact: Path, members: Path, nonmembers: Path, references: list[Path] | None,
                  attacks: str | None, config: Path | None, out: Path | None, seed: int,
                  original_first: bool = True) -> dict:
    """Validate names and config first (cheap, exit 2 on mistakes), then run :func:`device_tests.leakage.audit`."""
    from device_tests.leakage import audit
    from toolkit.attacks import default_attacks, needs_of, parse_attack_names

    refs = list(references or [])
    names = parse_attack_names(attacks)
    pool = None
    if config is not None:
        from toolkit.attacks.config import load_audit_config

        cfg = load_audit_config(config)
        if names is None and cfg.attacks is not None:
            names = list(cfg.attacks)
        online = cfg.online
        if online is None:
            online = "references_in" in needs_of(names or default_attacks(len(refs), True, online=True))
        pool = cfg.reference_pool(online=online, cache_dir=(Path(out) / "reference-cache") if out else None)
        population_z = cfg.population_z
    else:
        population_z = 2000
    return audit(str(artifact), _load_pair(members, "members"), _load_pair(nonmembers, "non-members"),
                 references=[str(r) for r in refs], attacks=names, reference_pool=pool, seed=seed,
                 out_dir=out, original_first=original_first, population_z=population_z)


def format_table(report: dict) -> str:
    """A plain-text summary of a report (the non-JSON CLI output)."""
    lines = [f"{'attack':<18}{'AUC':>7}{'MIA acc':>9}{'TPR@0.1%':>10}{'TPR@1%':>9}  evaluated on"]
    for r in report["attacks"]:
        flag = "*" if r["under_resolved"] else " "
        lines.append(f"{r['name']:<18}{r['auc']:>7.3f}{r['balanced_accuracy']:>9.3f}"
                     f"{r['tpr_at_fpr']['0.001']:>9.3f}{flag}{r['tpr_at_fpr']['0.01']:>9.3f}  {r['evaluated_on']} "
                     f"({r['n_members']}+{r['n_nonmembers']})")
    acc = report["accuracy"]
    lines.append(f"accuracy: members {acc['members']:.3f}, non-members {acc['nonmembers']:.3f}")
    if any(r["under_resolved"] for r in report["attacks"]):
        lines.append("* under-resolved: fewer than 1,000 evaluated non-members, TPR@0.1%FPR rests on < 1 false positive")
    for k, v in (report.get("files") or {}).items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
