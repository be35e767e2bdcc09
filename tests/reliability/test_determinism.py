"""Determinism: the same seed gives identical metrics -- two uninterrupted `safecompress run`s of one config,
and two audits of one artifact (timestamps, durations and paths aside). Thread counts are pinned
(SAFECOMPRESS_THREADS=1 for the runs, as the CLI's jobs pin theirs)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from reliability_runs import ROOT, SMALL_RUN, first_difference, normalize, run_env, run_to_end


def test_two_runs_same_seed_identical_reports(tiny_config, tiny_reference_run, tmp_path):
    ref_out, ref = tiny_reference_run
    out = tmp_path / "again"
    again = run_to_end(tiny_config, out)
    a, b = normalize(ref, ref_out), normalize(again, out)
    assert a == b, f"reports differ at {first_difference(a, b)}"
    for rel in ("split.json", "final_audit/risk.csv"):
        assert (ref_out / rel).read_bytes() == (out / rel).read_bytes(), f"{rel} differs"
    # The artifacts themselves are byte-identical (their sha256 is in the report; check the files too).
    for c in ref["candidates"]:
        assert (ref_out / c["artifact"]).read_bytes() == (out / c["artifact"]).read_bytes(), c["name"]
    # The metrics are real numbers, not a constant that would trivially agree.
    assert all(0.0 <= c["accuracy"] <= 1.0 and 0.0 <= c["mia_accuracy"] <= 1.0 for c in ref["candidates"])
    assert {r["name"] for r in ref["final_audit"]["attacks"]} >= {"loss", "lira_offline", "rmia"}


def _audit(args: list[str], out) -> dict:
    r = subprocess.run([sys.executable, "-m", "toolkit.cli", "audit", *args, "--out", str(out), "--json", "--quiet"],
                       capture_output=True, text=True, env=run_env(), cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_audit_twice_identical(tiny_reference_run, tmp_path):
    """The same artifact and data audited twice, each in a fresh process, give identical report metrics
    (bootstrap intervals included) and per-sample scores. (Learned attacks -- the nn attacker, CompLeak,
    LiRA/RMIA -- are compared across the two runs above.)"""
    ref_out, ref = tiny_reference_run
    split = json.loads((ref_out / "split.json").read_text())
    from toolkit.data import load_dataset

    ds = load_dataset("digits")
    members = np.concatenate([split["parts"]["member_known"], split["parts"]["member_unknown"]])
    nonmembers = np.concatenate([split["parts"]["nonmember_known"], split["parts"]["nonmember_unknown"]])
    np.savez(tmp_path / "m.npz", x=ds.x[members], y=ds.y[members])
    np.savez(tmp_path / "n.npz", x=ds.x[nonmembers], y=ds.y[nonmembers])
    chosen = next(c for c in ref["candidates"] if c["name"] == ref["selected"])
    args = [str(ref_out / chosen["artifact"]), "--members", str(tmp_path / "m.npz"), "--nonmembers",
            str(tmp_path / "n.npz"), "--attacks", "loss,entropy,modified_entropy", "--seed", "7"]
    a = _audit(args, tmp_path / "a")
    b = _audit(args, tmp_path / "b")
    na, nb = normalize(a, tmp_path / "a"), normalize(b, tmp_path / "b")
    assert na == nb, f"audit reports differ at {first_difference(na, nb)}"
    assert (tmp_path / "a" / "risk.csv").read_bytes() == (tmp_path / "b" / "risk.csv").read_bytes()
    # The audit of the selected artifact by the run used the same samples: its membership data hashes agree.
    assert a["data"]["members_sha256"] == ref["final_audit"]["data"]["members_sha256"]


def test_seed_changes_the_split(tmp_path):
    """Sanity check that the comparisons above can fail: another seed gives another split manifest."""
    from toolkit.data import load_dataset, make_split

    ds = load_dataset("digits")
    a = make_split(ds, 200, 200, 200, seed=3).to_manifest()
    b = make_split(ds, 200, 200, 200, seed=4).to_manifest()
    assert a["manifest_sha256"] != b["manifest_sha256"]


@pytest.mark.slow
def test_two_runs_with_every_kind_of_candidate_identical(tmp_path):
    """Keras dense model, TFLite converter, torch.ao -> .ptl and SafeCompress: two uninterrupted runs of one
    config give identical reports and byte-identical artifacts."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL_RUN)
    a_out, b_out = tmp_path / "a", tmp_path / "b"
    a, b = run_to_end(cfg, a_out), run_to_end(cfg, b_out)
    na, nb = normalize(a, a_out), normalize(b, b_out)
    assert na == nb, f"reports differ at {first_difference(na, nb)}"
    for c in [*a["candidates"], *a["dense_models"].values()]:
        assert (a_out / c["artifact"]).read_bytes() == (b_out / c["artifact"]).read_bytes(), c["name"]
