"""``safecompress export`` / ``query`` / ``inspect`` run for real in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _cli(*args, timeout=300):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1")
    env.pop("SAFECOMPRESS_QUIET", None)
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def files(trained, digits_parts, digits_spec, tmp_path_factory):
    from toolkit.models import save_model

    d = tmp_path_factory.mktemp("cli")
    weights = save_model(trained("torch", "cnn"), digits_spec("cnn"), d, "cnn")
    n = digits_parts["nonmembers"]
    np.savez(d / "data.npz", x=n.x[:300], y=n.y[:300])
    np.savez(d / "flat.npz", x=n.x[:10].reshape(10, 64))
    np.savez(d / "wide.npz", x=np.zeros((10, 65), np.float32))
    return d, weights


def test_export_query_inspect(files, trained, digits_parts):
    from toolkit.models import predict_proba

    d, weights = files
    r = _cli("export", weights, "--format", "onnx", "--mode", "dynamic", "--data", d / "data.npz", "--out",
             d / "cnn.onnx", "--samples", "100")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["format"], info["mode"], info["parity"]["n"]) == ("onnx", "dynamic", 100)
    assert json.loads((d / "cnn.onnx.json").read_text()) == info

    r = _cli("query", d / "cnn.onnx", "--data", d / "data.npz", "--out", d / "probs.npy", "--batch-size", "64")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["n"] == 300 and summary["output_shape"] == [300, 10] and summary["accuracy"] > 0.8
    probs = np.load(d / "probs.npy")
    ref = predict_proba(trained("torch", "cnn"), digits_parts["nonmembers"].x[:300])
    assert probs.shape == (300, 10) and np.mean(probs.argmax(1) == ref.argmax(1)) >= 0.95

    r = _cli("inspect", d / "cnn.onnx", "--json")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert (seen["format"], seen["input_shape"], seen["n_classes"]) == ("onnx", [8, 8, 1], 10)
    assert seen["sidecar"]["sha256"] == seen["sha256"]
    r = _cli("inspect", d / "cnn.onnx")
    assert r.returncode == 0 and "format: onnx" in r.stdout


def test_export_accepts_flat_rows_of_the_right_size(files):
    d, weights = files
    r = _cli("export", weights, "--format", "onnx", "--data", d / "flat.npz", "--out", d / "flat.onnx")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parity"]["n"] == 10 and (d / "flat.onnx").exists()


@pytest.mark.parametrize("args,needle", [
    (["export", "{w}", "--format", "tfl", "--data", "{d}/data.npz", "--out", "{d}/x"], "unknown export format 'tfl'"),
    (["export", "{w}", "--format", "tflite", "--data", "{d}/data.npz", "--out", "{d}/x.tflite"],
     "tflite artifacts are made from keras or tflite models, not torch"),
    (["export", "{w}", "--format", "onnx", "--data", "{d}/wide.npz", "--out", "{d}/x.onnx"], "samples have shape (65,)"),
    (["export", "{w}", "--format", "onnx", "--data", "{d}/missing.npz", "--out", "{d}/x.onnx"], "data file not found"),
    (["query", "{d}/missing.onnx", "--data", "{d}/data.npz"], "artifact not found"),
    (["query", "{d}/data.npz", "--data", "{d}/data.npz"], "data.npz: a zip archive that is not a PyTorch"),
])
def test_cli_errors_exit_2_with_one_line(files, args, needle):
    d, weights = files
    r = _cli(*[a.format(w=weights, d=d) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (d / "x.onnx").exists() and not (d / "x.tflite").exists()
