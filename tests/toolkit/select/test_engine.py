"""The selection engine (`safecompress run`): planning, selection rules, and a real end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.config_io import parse_config
from toolkit.errors import ConfigError
from toolkit.select.config import RunConfig
from toolkit.select.engine import expand_candidates, select

MINI = """
seed: 0
data: {dataset: digits, members: 300, nonmembers: 300, population: 300}
train: {epochs: 8}
candidates:
  - method: torch_global_unstructured
    grid: {sparsity: [0.5, 0.9]}
  - method: tflite_dynamic
  - method: safecompress
    params: {density: 0.3, rounds: 1, epochs_per_round: 1.0, fine_tune_epochs: 0.25, attack_epochs: 5}
  - method: pr_dp
    params: {density: 0.3, epochs: 1, lr: 0.5}
  - method: kd_none
    framework: keras
    params: {density: 0.3, epochs: 2}
selection: {attack_epochs: 10, attack_fine_tune_epochs: 2}
final_audit: {attacks: [loss, entropy, compleak_sr], n_bootstrap: 20}
"""


def run_cli(*args, cwd=None):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1")
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_grid_expansion_names_every_combination():
    cfg = parse_config({"candidates": [{"method": "torch_global_unstructured", "grid": {"sparsity": [0.5, 0.8]},
                                        "params": {"fine_tune_epochs": 1}},
                                       {"method": "tfmot_cluster", "grid": {"n_clusters": [8], "init": ["linear"]}}]},
                       RunConfig, "run config")
    plan = expand_candidates(cfg)
    assert [n for n, _, _ in plan] == ["torch_global_unstructured-sparsity0.5", "torch_global_unstructured-sparsity0.8",
                                      "tfmot_cluster-n_clusters8-initlinear"]
    assert plan[1][2] == {"fine_tune_epochs": 1, "sparsity": 0.8}


def test_duplicate_candidate_names_are_refused():
    cfg = parse_config({"candidates": [{"method": "tflite_dynamic"}, {"method": "tflite_dynamic"}]}, RunConfig, "c")
    with pytest.raises(ConfigError, match="two candidates are named 'tflite_dynamic'"):
        expand_candidates(cfg)


@pytest.mark.parametrize("body,needle", [
    ({"selection": {"objectiv": "tm_score"}}, "unknown key 'selection.objectiv'"),
    ({"final_audit": {"attacks": ["loss", "nn"]}}, "must not include 'nn'"),
    ({"candidates": []}, "at least one method"),
    ({"candidates": [{"method": "x", "grid": {"a": []}}]}, "grid.a must be a non-empty list"),
])
def test_config_errors_are_one_line(body, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        parse_config(body, RunConfig, "run config")
    assert "\n" not in str(info.value)


def _cand(name, acc, mia, size, fw="torch"):
    from toolkit.select.safecompress import tm_score

    return {"name": name, "framework_in": fw, "accuracy": acc, "mia_accuracy": mia, "tm_score": tm_score(acc, mia),
            "bytes": size}


def test_tm_score_and_constrained_selection():
    dense = {"torch": {"accuracy": 0.95}}
    cands = [_cand("a", 0.94, 0.60, 100), _cand("b", 0.90, 0.52, 300), _cand("c", 0.80, 0.50, 50)]
    tm = parse_config({}, RunConfig, "c")
    assert select(cands, dense, tm)[0] == "b"  # 0.90/0.52 = 1.73 beats 1.57 and 1.60
    constrained = parse_config({"selection": {"objective": "constrained", "max_accuracy_drop": 0.06,
                                              "max_bytes": 200}}, RunConfig, "c")
    winner, reasons = select(cands, dense, constrained)
    assert winner == "a" and any(r.startswith("b:") for r in reasons) and any(r.startswith("c:") for r in reasons)
    none = parse_config({"selection": {"objective": "constrained", "max_bytes": 10}}, RunConfig, "c")
    assert select(cands, dense, none)[0] is None


def test_unknown_method_fails_before_any_training(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("candidates: [{method: torch_prune_everything}]\n")
    r = run_cli("run", str(cfg), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown candidate method 'torch_prune_everything'")
    assert not (tmp_path / "out" / "dense").exists()


def test_run_end_to_end_and_resume(tmp_path):
    cfg = tmp_path / "mini.yaml"
    cfg.write_text(MINI)
    out = tmp_path / "run"
    r = run_cli("run", str(cfg), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "safecompress.run/1"
    names = [c["name"] for c in report["candidates"]]
    assert names == ["torch_global_unstructured-sparsity0.5", "torch_global_unstructured-sparsity0.9",
                     "tflite_dynamic", "safecompress", "pr_dp", "kd_none"]
    for c in report["candidates"]:
        for key in ("name", "backend", "method", "params", "accuracy", "mia_accuracy", "tm_score", "bytes",
                    "artifact", "attacks", "stats"):
            assert key in c, key
        assert (out / c["artifact"]).is_file() and not Path(c["artifact"]).is_absolute()
        assert 0.0 <= c["accuracy"] <= 1.0 and 0.0 <= c["mia_accuracy"] <= 1.0
    by = {c["name"]: c for c in report["candidates"]}
    assert by["tflite_dynamic"]["backend"] == "tflite" and by["tflite_dynamic"]["format"] == "tflite"
    assert by["safecompress"]["method"].startswith("safecompress")
    # the paper's baselines run as candidates too: Pr-DP (Opacus) on torch, a distilled Keras student to TFLite
    assert by["pr_dp"]["stats"]["sparsity"] >= 0.69 and by["pr_dp"]["format"] == "onnx"
    assert by["kd_none"]["format"] == "tflite" and by["kd_none"]["bytes"] < 0.5 * report["dense_models"]["keras"]["bytes"]
    assert by["torch_global_unstructured-sparsity0.9"]["stats"]["sparsity"] >= 0.89
    assert report["selected"] == max(report["candidates"], key=lambda c: c["tm_score"])["name"]
    assert {a["name"] for a in report["final_audit"]["attacks"]} == {"loss", "entropy", "compleak_sr"}
    assert (out / "report.html").is_file() and (out / "summary.md").is_file() and (out / "split.json").is_file()

    # Rerunning the same command resumes from the checkpoints and reproduces every metric.
    r2 = run_cli("run", str(cfg), "--out", str(out), "--quiet")
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((out / "report.json").read_text())
    strip = lambda rep: [{k: v for k, v in c.items() if k not in ("compress_seconds", "extra")}
                         for c in rep["candidates"]]
    assert strip(again) == strip(report)
    assert again["selected"] == report["selected"]
    assert again["timings"]["candidates"] < report["timings"]["candidates"]
