"""Helpers of the reliability tests: real `safecompress run` subprocesses on a tiny config, kill -9 at a
chosen point, report normalization (what may differ between two runs: timings, paths, provenance)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: Torch only (no TensorFlow import): the fast kill/resume and determinism runs. Two candidates, a final
#: audit with two reference models (LiRA/RMIA), CompLeak with the dense artifact as side information.
TINY_RUN = """\
seed: 3
data: {dataset: digits, members: 200, nonmembers: 200, population: 200}
model: {arch: mlp, hidden: [32]}
train: {epochs: 10}
candidates:
  - method: torch_global_unstructured
    params: {sparsity: 0.5}
  - method: safecompress
    params: {density: 0.3, rounds: 1, epochs_per_round: 1.0, fine_tune_epochs: 0.25, attack_epochs: 5}
export: {sample: 64}
selection: {attack_epochs: 5, attack_fine_tune_epochs: 1}
final_audit: {attacks: [loss, entropy, compleak_sr], reference_models: 2, n_bootstrap: 10}
executor: {name: inprocess}
"""

#: The slow variant adds a TFLite converter candidate (a Keras dense model, a .tflite artifact) and a
#: torch.ao candidate exported to the lite interpreter.
SMALL_RUN = TINY_RUN.replace("""  - method: safecompress
""", """  - method: tflite_dynamic
  - method: torch_dynamic_int8
    export: ptl
  - method: safecompress
""")

#: Keys whose values legitimately differ between two runs of the same command (plus any key naming seconds:
#: train_seconds, compress_seconds, extra.seconds_per_epoch...).
VOLATILE_KEYS = {"timings", "provenance", "seconds", "files", "created",
                 "trained_now"}  # reference models trained by this invocation (fewer on resume: cached)


def normalize(obj, out_dir: Path | str | None = None):
    """``obj`` without timings, durations, provenance and written-file lists; ``out_dir`` replaced by <OUT>."""
    if isinstance(obj, dict):
        return {k: normalize(v, out_dir) for k, v in obj.items()
                if k not in VOLATILE_KEYS and "seconds" not in k}
    if isinstance(obj, list):
        return [normalize(v, out_dir) for v in obj]
    if isinstance(obj, str) and out_dir is not None:
        return obj.replace(str(out_dir), "<OUT>")
    return obj


def first_difference(a, b, path="") -> str | None:
    """Where two normalized reports first differ (for readable assertion messages)."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'second' if k not in a else 'first'}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def run_env() -> dict:
    return dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", TF_USE_LEGACY_KERAS="1",
                PYTHONHASHSEED="0")


def run_command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "toolkit.cli", "run", str(config), "--out", str(out), "--quiet"]


def run_to_end(config: Path, out: Path, timeout: float = 900) -> dict:
    """``safecompress run CONFIG --out OUT`` to completion; the report."""
    r = subprocess.run(run_command(config, out), capture_output=True, text=True, env=run_env(), cwd=ROOT,
                       timeout=timeout)
    assert r.returncode == 0, f"run failed (exit {r.returncode}): {r.stderr[-3000:]}"
    return json.loads((out / "report.json").read_text())


def finished_checkpoints(out: Path) -> list[str]:
    """Names of complete checkpoint entries (in-progress ``.tmp-`` / ``.old-`` directories excluded)."""
    d = out / ".checkpoints"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".") and (p / "result.json").is_file())


def reference_caches(out: Path) -> list[str]:
    d = out / ".checkpoints" / "references"
    return sorted(p.name for p in d.glob("ref-*.npz")) if d.is_dir() else []


def kill_when(config: Path, out: Path, condition, timeout: float = 600, poll: float = 0.02) -> dict:
    """Start a run and ``kill -9`` its whole process group as soon as ``condition(out)`` holds.

    Returns what was observed: whether it was killed (False if the run finished first), the seconds it ran.
    """
    proc = subprocess.Popen(run_command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=run_env(), cwd=ROOT, start_new_session=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            if condition(out):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return {"killed": True, "seconds": time.monotonic() - t0, "returncode": proc.returncode}
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"run neither finished nor reached the kill point within {timeout} s")
            time.sleep(poll)
        err = proc.stderr.read().decode(errors="replace")
        assert proc.returncode == 0, f"run failed before the kill point (exit {proc.returncode}): {err[-3000:]}"
        return {"killed": False, "seconds": time.monotonic() - t0, "returncode": 0}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        proc.stderr.close()
