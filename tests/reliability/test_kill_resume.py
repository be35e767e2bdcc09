"""Nothing is lost: a real `safecompress run` killed with SIGKILL at any point resumes from its checkpoints and
produces the same report as an uninterrupted run of the same command (timings, durations, paths aside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_runs import (SMALL_RUN, finished_checkpoints, first_difference, kill_when, normalize, reference_caches,
                      run_to_end)


def assert_same_run(out_a: Path, rep_a: dict, out_b: Path, rep_b: dict) -> None:
    a, b = normalize(rep_a, out_a), normalize(rep_b, out_b)
    assert a == b, f"reports differ at {first_difference(a, b)}"
    for rel in ("split.json", "final_audit/risk.csv"):  # per-sample attack scores too, not only the summary
        assert (out_a / rel).read_bytes() == (out_b / rel).read_bytes(), f"{rel} differs"
    fa = normalize(json.loads((out_a / "final_audit" / "report.json").read_text()), out_a)
    fb = normalize(json.loads((out_b / "final_audit" / "report.json").read_text()), out_b)
    assert fa == fb, f"final_audit/report.json differs at {first_difference(fa, fb)}"


TEMP = (".tmp-", ".old-")


def assert_intact(out: Path, report: dict) -> None:
    """After a completed rerun every file the report names is whole (its sha256 is the one its sidecar and
    the report recorded), nothing half-written sits under a final name, no temporary file of an interrupted
    atomic write is left (the rerun removes them) and no checkpoint entry is left half-written."""
    from toolkit.io import sha256_file

    for c in [*report["candidates"], *report["dense_models"].values()]:
        artifact = out / c["artifact"]
        side = json.loads(Path(f"{artifact}.json").read_text())
        assert sha256_file(artifact) == side["sha256"] == c.get("sha256", side["sha256"]), c["name"]
    json.loads((out / "final_audit" / "report.json").read_text())
    ckpt = out / ".checkpoints"
    assert not [p for p in ckpt.iterdir() if p.name.startswith(TEMP)], "a half-written checkpoint entry is left"
    # The rerun removes the temporary files the killed run's atomic writes left behind.
    leftovers = [p for p in out.rglob("*") if (p.name.startswith(TEMP) or p.name.endswith(".tmp"))
                 and ckpt not in p.parents]
    assert not leftovers, leftovers


def test_kill_after_first_checkpoint_then_resume(tiny_config, tiny_reference_run, tmp_path):
    """kill -9 as soon as the first job's checkpoint exists; the rerun resumes and matches exactly."""
    ref_out, ref = tiny_reference_run
    out = tmp_path / "run"
    seen = kill_when(tiny_config, out, lambda d: len(finished_checkpoints(d)) >= 1)
    assert seen["killed"], "the run finished before its first checkpoint was seen"
    done_before = finished_checkpoints(out)
    assert done_before and not (out / "report.json").exists()
    resumed = run_to_end(tiny_config, out)
    assert set(done_before) <= set(finished_checkpoints(out))
    assert_same_run(ref_out, ref, out, resumed)
    assert_intact(out, resumed)


@pytest.mark.slow
def test_kill_at_many_points_then_resume(tmp_path):
    """A run with every kind of candidate (torch, TFLite converter, torch.ao -> .ptl, SafeCompress), killed at
    several points -- after the first checkpoint, after the first candidate, during the final audit's
    reference models, and twice in a row in one directory -- always resumes to the uninterrupted report."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL_RUN)
    ref_out = tmp_path / "uninterrupted"
    ref = run_to_end(cfg, ref_out)

    points = {
        "first-checkpoint": lambda d: len(finished_checkpoints(d)) >= 1,
        "first-candidate": lambda d: any(n.startswith("candidate-") for n in finished_checkpoints(d)),
        "two-candidates": lambda d: sum(n.startswith("candidate-") for n in finished_checkpoints(d)) >= 2,
        "reference-model": lambda d: len(reference_caches(d)) >= 1,
        "final-audit-written": lambda d: (d / "final_audit" / "report.json").exists(),
    }
    for name, cond in points.items():
        out = tmp_path / name
        seen = kill_when(cfg, out, cond)
        resumed = run_to_end(cfg, out)
        assert_same_run(ref_out, ref, out, resumed)
        assert_intact(out, resumed)
        if not seen["killed"]:
            pytest.fail(f"kill point {name!r} was never reached before the run finished")

    # Killed twice in one directory (the second time while resuming), then finished.
    out = tmp_path / "twice"
    assert kill_when(cfg, out, lambda d: len(finished_checkpoints(d)) >= 2)["killed"]
    n = len(finished_checkpoints(out))
    assert kill_when(cfg, out, lambda d: len(finished_checkpoints(d)) >= n + 2)["killed"]
    resumed = run_to_end(cfg, out)
    assert_same_run(ref_out, ref, out, resumed)
    assert_intact(out, resumed)
