"""Corrupt, truncated and pickled files give one-line errors naming the file, never a crash of this process;
native runtimes a corrupt file can crash are first tried in an isolated subprocess."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from device_tests import load_artifact
from toolkit.errors import ArtifactError

REFUSED = "pickle files are refused; safe formats: .tflite, .onnx, .ptl, .pte"


def _flip(content: bytes, seed: int, n: int = 12) -> bytes:
    rng = np.random.default_rng(seed)
    b = bytearray(content)
    for i in rng.integers(8, len(b), n):
        b[i] = int(rng.integers(0, 256))
    return bytes(b)


@pytest.fixture(scope="module")
def hostile(ours, tmp_path_factory):
    """name -> path of a bad file (corrupt variants of real artifacts, pickles, junk)."""
    import torch

    d = tmp_path_factory.mktemp("hostile")
    files = {}

    def put(name, content):
        (d / name).write_bytes(content)
        files[name] = d / name

    real = {fmt: open(ours("keras" if fmt == "tflite" else "torch", "mlp", fmt), "rb").read()
            for fmt in ("tflite", "onnx", "ptl", "pte")}
    for fmt, content in real.items():
        put(f"truncated.{fmt}", content[: len(content) // 2])
    put("flipped.onnx", _flip(real["onnx"], 0))
    put("flipped.tflite", _flip(real["tflite"], 1))
    put("empty.onnx", b"")
    put("tiny.tflite", b"TFL3")
    put("junk.tflite", b"TFL3" + bytes(range(256)) * 8)  # identifier at offset 0, not 4
    put("random.pte", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("header-only.pte", real["pte"][:64])
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buf)
    put("checkpoint.pt", buf.getvalue())
    put("model.pkl", pickle.dumps({"weights": [1, 2, 3]}))
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    put("full-script.ptl", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    put("other.zip", buf.getvalue())
    return files


@pytest.mark.parametrize("name,needle", [
    ("truncated.tflite", "truncated.tflite: LiteRT cannot load"),
    ("truncated.onnx", "truncated.onnx"),
    ("truncated.ptl", "truncated.ptl: a corrupt zip archive"),
    ("truncated.pte", "truncated.pte: the ExecuTorch runtime"),
    ("flipped.onnx", "flipped.onnx"),
    ("flipped.tflite", "flipped.tflite"),
    ("empty.onnx", "artifact is empty"),
    ("tiny.tflite", "tiny.tflite: only 4 bytes"),
    ("junk.tflite", "junk.tflite: unrecognized or corrupt artifact"),
    ("random.pte", "random.pte"),
    ("header-only.pte", "header-only.pte"),
    ("checkpoint.pt", f"checkpoint.pt: is a torch.save checkpoint that can only be loaded by unpickling: {REFUSED}"),
    ("model.pkl", f"model.pkl: {REFUSED}"),
    ("full-script.ptl", "full-script.ptl: is a full TorchScript archive (torch.jit.save)"),
    ("other.zip", "other.zip: a zip archive that is not a PyTorch lite-interpreter model"),
])
def test_bad_files_give_one_line_errors(name, needle, hostile):
    path = hostile[name]
    try:
        rt = load_artifact(path)
        rt.predict_proba(np.zeros((2, 8, 8, 1), np.float32))  # a flipped file may load: then it must answer
    except ArtifactError as exc:
        msg = str(exc)
        assert needle in msg and "\n" not in msg, msg
    else:
        assert name.startswith("flipped"), f"{name} was accepted"


def test_isolation_verdicts(tmp_path, monkeypatch):
    """A crash or hang in the child is an ArtifactError; a verdict is cached by content, not by name."""
    from device_tests import isolate

    crashed = subprocess.CompletedProcess([], -11, "", "")
    assert "crashed (signal 11)" in isolate._verdict(crashed, "m.pte", "pte")[1]
    assert "m.pte" in isolate._verdict(crashed, "m.pte", "pte")[1]
    ok = subprocess.CompletedProcess([], 0, '{"ok": true}\n', "")
    assert isolate._verdict(ok, "m.pte", "pte") is None

    a, b = tmp_path / "a.pte", tmp_path / "b.pte"
    content = b"\0\0\0\0ET12" + os.urandom(512)
    a.write_bytes(content)
    b.write_bytes(content)
    calls = []
    real_run = subprocess.run

    def counting_run(*args, **kwargs):
        calls.append(args[0])
        assert isinstance(args[0], list) and "shell" not in kwargs
        return real_run(*args, **kwargs)

    monkeypatch.setattr(isolate.subprocess, "run", counting_run)
    for path in (a, b):
        with pytest.raises(ArtifactError, match=f"{path.name}: "):
            load_artifact(path)
    assert len(calls) == 1 and calls[0][1:3] == ["-m", "device_tests.isolate"]
    with pytest.raises(ArtifactError, match="did not finish loading it within 0 s"):
        isolate.check_isolated(tmp_path / "c.pte", content + b"x", "pte", timeout=0.01)


@pytest.mark.parametrize("name", ["checkpoint.pt", "truncated.ptl", "junk.tflite"])
def test_cli_bad_files_exit_2_with_one_line(name, hostile, tmp_path):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1")
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8, 8, 1), np.float32))
    for args in (["inspect", hostile[name]], ["query", hostile[name], "--data", tmp_path / "x.npz"]):
        r = subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 2, (r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
