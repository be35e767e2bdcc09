"""The CLI skeleton: lazy imports, one-line errors, exit codes. Real subprocesses."""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "torch", "nni", "onnxruntime", "tf_keras", "executorch", "ai_edge_litert", "ray")


def run_cli(*args, cwd=None, env=None, timeout=300):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=e, timeout=timeout)


def test_importing_the_cli_loads_no_heavy_framework():
    code = ("import sys, toolkit.cli, toolkit.data, toolkit.models, toolkit.registry, toolkit.errors; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("train", "data"):
        assert cmd in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("train", "--bogus"), "No such option"),
    (("train", "--framework", "jax"), "unknown framework 'jax'"),
    (("data", "split", "nope.npz", "--out", "x"), "data file not found"),
])
def test_bad_usage_is_one_line_exit_2(tmp_path, args, needle):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_data_split_writes_manifest_and_parts(tmp_path):
    r = run_cli("data", "split", "digits", "--members", "400", "--out", str(tmp_path / "s"), "--seed", "2")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["sizes"]["member_known"] == 200
    from toolkit.data import MembershipSplit, load_dataset
    from toolkit.io import load_npz

    split = MembershipSplit.load(tmp_path / "s" / "split.json")
    ds = load_dataset("digits")
    split.verify(ds)
    m = load_npz(tmp_path / "s" / "members.npz")
    assert len(m["y"]) == 400


def test_train_command_writes_metrics_and_safe_weights(tmp_path):
    r = run_cli("train", "--framework", "torch", "--epochs", "3", "--out", str(tmp_path / "t"))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    assert (tmp_path / "t" / "model.safetensors").exists()
