"""The sandbox (device_tests/sandbox): what a confined child can and cannot do, the protocol, the lifecycle.

The confinement test runs the real confinement steps in a fresh interpreter and then tries what a hostile
artifact would: read user files, write anywhere, open a socket, start a process, signal its parent, raise its
limits. The runtime tests open our seed artifacts of every format through the sandbox and compare them with the
same runtime in-process (bit-identical), then break the child in the ways a hostile artifact could.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import ArtifactError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "reliability" / "corpus" / "seeds"

_PROBE = r"""
import json, os, resource, socket, subprocess, sys, threading
sys.path.insert(0, sys.argv[1])
from device_tests.sandbox import confine
parent = os.getppid()
confine.set_rlimits({"memory_bytes": 2 * 1024**3, "cpu_seconds": 60, "open_files": 64, "file_size": 1 << 20})
confine.preload()
abi, why_fs = confine.restrict_files()  # while this is the only thread, as the child does it
import numpy  # OpenBLAS starts its threads here: confined by inheritance
seccomp, why_sc = confine.restrict_syscalls()
out = {"abi": abi, "seccomp": seccomp, "missing": [m for m in (why_fs, why_sc) if m]}

def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except OSError as exc:
        out[name] = f"denied {exc.errno}"
    except ValueError as exc:  # setrlimit reports EPERM as ValueError
        out[name] = f"denied {exc}"

attempt("read_secret", lambda: open(sys.argv[2]).read())
attempt("read_etc", lambda: open("/etc/hostname").read())
attempt("write_cwd", lambda: open("written-by-sandbox", "w").write("x"))
attempt("write_tmp", lambda: open("/tmp/written-by-sandbox", "w").write("x"))
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
attempt("fork", lambda: os.waitpid(os.fork(), 0) if True else None)
attempt("exec", lambda: subprocess.run(["/bin/true"]))
attempt("signal_parent", lambda: os.kill(parent, 0))
# lowering a limit is always allowed by the kernel: only the filter can refuse it (and so any change)
attempt("change_limit", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 64)))
attempt("signal_self", lambda: os.kill(os.getpid(), 0))
t = threading.Thread(target=lambda: numpy.ones(10).sum()); t.start(); t.join()
out["thread"] = "allowed"
in_thread = {}
def from_a_thread():  # a runtime's worker thread: the same confinement
    for name, fn in (("read", lambda: open(sys.argv[2]).read()), ("socket", lambda: socket.socket())):
        try:
            fn()
            in_thread[name] = "allowed"
        except OSError as exc:
            in_thread[name] = f"denied {exc.errno}"
t = threading.Thread(target=from_a_thread); t.start(); t.join()
out["thread_read_secret"], out["thread_socket"] = in_thread["read"], in_thread["socket"]
import decimal  # a module not imported before the lock-down still loads
out["late_import"] = "allowed"
print(json.dumps(out))
"""


def test_confinement_blocks_what_an_artifact_must_not_do(tmp_path):
    secret = tmp_path / "secret.env"
    secret.write_text("TOKEN=hunter2\n")
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-I", "-c", _PROBE, str(ROOT), str(secret)], capture_output=True, text=True,
                       cwd=work, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["missing"]:
        pytest.fail(f"this machine is documented to offer Landlock and seccomp: {out['missing']}")
    assert out["abi"] >= 1 and out["seccomp"]
    for what in ("read_secret", "read_etc", "write_cwd", "write_tmp", "socket", "unix_socket", "fork", "exec",
                 "signal_parent", "change_limit", "thread_read_secret", "thread_socket"):
        assert out[what].startswith("denied"), (what, out[what])
    assert out["signal_self"] == out["thread"] == out["late_import"] == "allowed"
    assert not (work / "written-by-sandbox").exists() and not Path("/tmp/written-by-sandbox").exists()


@pytest.fixture(scope="module")
def data():
    with np.load(SEEDS / "data.npz") as d:
        return np.concatenate([d["x"]] * 20)


@pytest.mark.parametrize("name", ["mlp.onnx", "cnn.tflite", "mlp-int8.tflite", "mlp.ptl", "mlp.pte"])
def test_sandboxed_runtime_matches_in_process(name, data):
    from device_tests import load_artifact
    from device_tests.sandbox import trust
    from toolkit.io import sha256_file

    boxed = load_artifact(SEEDS / name, batch_size=64)
    try:
        assert type(boxed).__name__ == "SandboxedRuntime"
        assert boxed.describe()["sandbox"]["missing"] == []
        p_box = boxed.predict_proba(data)
        trust(sha256_file(SEEDS / name))
        direct = load_artifact(SEEDS / name, batch_size=64, sandbox=False)
        assert type(direct).__name__ != "SandboxedRuntime"
        p_dir = direct.predict_proba(data)
        assert p_box.shape == p_dir.shape == (len(data), 10)
        assert np.array_equal(p_box, p_dir)
        for attr in ("input_shape", "input_dtype", "n_classes", "fixed_batch", "max_batch", "sha256", "bytes"):
            assert getattr(boxed, attr) == getattr(direct, attr), attr
    finally:
        boxed.close()


def test_untrusted_bytes_are_never_opened_in_process():
    from device_tests import load_artifact

    with pytest.raises(ArtifactError, match="only be opened in the sandbox"):
        load_artifact(SEEDS / "cnn.onnx", sandbox=False)  # no test trusts cnn.onnx's bytes


def _child_pid(rt) -> int:
    return rt._child.proc.pid


def test_a_killed_child_is_one_clean_error_and_stays_closed(data):
    from device_tests import load_artifact

    rt = load_artifact(SEEDS / "mlp.onnx", sandbox=True)
    os.kill(_child_pid(rt), signal.SIGKILL)
    with pytest.raises(ArtifactError, match=r"mlp\.onnx: the onnx runtime stopped in the sandbox: it was killed"):
        rt.predict_proba(data)
    with pytest.raises(ArtifactError, match="closed after that failure"):
        rt.predict_proba(data)


def test_a_child_that_stops_answering_is_killed_after_the_timeout(data, monkeypatch):
    from device_tests import load_artifact

    monkeypatch.setenv("SAFECOMPRESS_SANDBOX_TIMEOUT", "2")
    rt = load_artifact(SEEDS / "mlp.onnx", sandbox=True)
    pid = _child_pid(rt)
    os.kill(pid, signal.SIGSTOP)  # a hang, as seen from the parent
    started = time.monotonic()
    with pytest.raises(ArtifactError, match=r"did not answer within 2 s and was stopped"):
        rt.predict_proba(data)
    assert time.monotonic() - started < 10
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_child_dies_with_its_parent(tmp_path):
    script = ("import sys, os; sys.path.insert(0, sys.argv[1]); from device_tests import load_artifact; "
              "rt = load_artifact(sys.argv[2]); print(rt._child.proc.pid, flush=True); os._exit(0)")
    r = subprocess.run([sys.executable, "-c", script, str(ROOT), str(SEEDS / "mlp.onnx")], capture_output=True,
                       text=True, timeout=120)
    pid = int(r.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the sandbox child outlived its parent"


def test_malformed_limits_are_a_config_error(monkeypatch):
    from device_tests.sandbox.limits import SandboxLimits

    monkeypatch.setenv("SAFECOMPRESS_SANDBOX_MEMORY", "lots")
    with pytest.raises(ConfigError, match="SAFECOMPRESS_SANDBOX_MEMORY"):
        SandboxLimits.from_env()
    monkeypatch.setenv("SAFECOMPRESS_SANDBOX_MEMORY", "1500M")
    assert SandboxLimits.from_env().memory_bytes == 1500 * 1024**2


def test_doctor_reports_every_protection():
    r = subprocess.run([sys.executable, "-m", "toolkit.cli", "doctor", "--json"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["sandbox"]["landlock_abi"] >= 1 and report["sandbox"]["seccomp"] and not report["sandbox"]["missing"]
    assert report["limits"]["memory_bytes"] == 1536 * 1024**2
