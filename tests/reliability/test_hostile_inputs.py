"""Bad input ends in one ``error:`` line and exit 2 (issue 16, part 6): never exit 3, a traceback or a signal.

Real CLI calls on the tiny seed ONNX: malicious baseline reports (deep nesting, 5,000-digit integers, a list
as an attack name, ``Infinity``/``true`` figures), YAML configs with duplicate keys or coerced types
(``epochs: true``, ``hidden: [-5]``), outputs that cannot be written (a directory, a path under a regular
file, a read-only place, a full disk: a tiny tmpfs in a private mount namespace), and Ctrl-C during an audit.
Cheap checks come before costly work: where a command refuses its input, no output directory was created.
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

from reliability_fuzz import SEEDS
from reliability_runs import ROOT

ONNX = SEEDS / "mlp.onnx"


def _cli(*args, env_extra: dict | None = None, cwd=ROOT):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _one_error_line(r, *needles) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("hostile-inputs-data")
    with np.load(SEEDS / "data.npz") as z:
        x, y = z["x"], z["y"]
    n = len(x) // 2
    np.savez(d / "m.npz", x=x[:n], y=y[:n])
    np.savez(d / "n.npz", x=x[n:], y=y[n:])
    return d / "m.npz", d / "n.npz"


# --------------------------------------------------------------------------------------------- baselines
ROW = {"name": "loss", "kind": "score", "auc": 0.5, "balanced_accuracy": 0.5, "n_members": 16, "n_nonmembers": 16,
       "tpr_at_fpr": {"0.001": 0.0, "0.01": 0.0}}
BASE = {"schema": "safecompress.audit/1", "attacks": [ROW], "accuracy": {"members": 0.2, "nonmembers": 0.1}}
GOOD = json.dumps(BASE)


def _with(path: str, value) -> str:
    """``BASE`` with the value at ``path`` (``attacks/0/auc``) replaced, as JSON text."""
    doc = json.loads(GOOD)
    *parents, last = path.split("/")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(last) if isinstance(node, list) else last] = value
    return json.dumps(doc)


BASELINES = {
    "deep-nesting": ("[" * 200_000 + "]" * 200_000, "nests more than 64 levels deep"),
    "deep-in-a-field": (GOOD[:-1] + ', "x": ' + "[" * 500 + "]" * 500 + "}", "nests more than 64 levels deep"),
    "5000-digit-int": (GOOD.replace('"n_members": 16', '"n_members": ' + "7" * 5000), "an integer of 5000 digits"),
    "list-as-attack-name": (_with("attacks/0/name", ["loss"]), "attacks.0.name: Input should be a valid string"),
    "dict-as-attack-name": (_with("attacks/0/name", {"a": 1}), "attacks.0.name"),
    "auc-Infinity": (GOOD.replace('"auc": 0.5', '"auc": Infinity'), "Infinity is not a JSON number"),
    "auc--Infinity": (GOOD.replace('"auc": 0.5', '"auc": -Infinity'), "-Infinity is not a JSON number"),
    "auc-NaN": (GOOD.replace('"auc": 0.5', '"auc": NaN'), "NaN is not a JSON number"),
    "auc-1e999": (GOOD.replace('"auc": 0.5', '"auc": 1e999'), "out of range"),
    "auc-true": (_with("attacks/0/auc", True), "attacks.0.auc: Input should be a valid number"),
    "auc-string": (_with("attacks/0/auc", "0.5"), "attacks.0.auc: Input should be a valid number"),
    "auc-out-of-range": (_with("attacks/0/auc", 7), "attacks.0.auc: Input should be less than or equal to 1"),
    "tpr-true": (_with("attacks/0/tpr_at_fpr/0.001", True), "attacks.0.tpr_at_fpr.0.001"),
    "accuracy-negative": (_with("accuracy/nonmembers", -0.5), "accuracy.nonmembers"),
    "count-bool": (_with("attacks/0/n_nonmembers", False), "attacks.0.n_nonmembers"),
    "attack-twice": (json.dumps(dict(BASE, attacks=[ROW, ROW])), "lists attack 'loss' twice"),
    "not-an-object": ("[1, 2]", "is not an audit report"),
    "not-json": ("{'schema': 1}", "is not valid JSON"),
    "not-utf8": (b'{"schema": "\xff"}', "is not UTF-8 text"),
    "attacks-not-a-list": (_with("attacks", {"loss": ROW}), "lacks its 'attacks' or 'accuracy' section"),
}


@pytest.mark.parametrize("case", list(BASELINES))
def test_malicious_baseline_is_one_line_before_the_audit(case, split, tmp_path):
    text, needle = BASELINES[case]
    base = tmp_path / "baseline.json"
    base.write_bytes(text if isinstance(text, bytes) else text.encode())
    m, n = split
    out = tmp_path / "out"
    r = _cli("gate", ONNX, "--members", m, "--nonmembers", n, "--max-increase", "auc=0.01", "--baseline", base,
             "--out", out, "--junit", out / "junit.xml")
    _one_error_line(r, "baseline report", needle)
    assert not out.exists()  # refused before any audit work or output


def test_oversized_baseline(split, tmp_path):
    base = tmp_path / "huge.json"
    with open(base, "wb") as fh:  # sparse: the size check must come before reading
        fh.truncate(16 * 1024**2 + 1)
    m, n = split
    r = _cli("gate", ONNX, "--members", m, "--nonmembers", n, "--max-increase", "auc=0.01", "--baseline", base)
    _one_error_line(r, "baseline report is 16777217 bytes, over the limit of 16777216 bytes")


def test_a_valid_baseline_still_works_in_process(tmp_path):
    from toolkit.gate import evaluate, load_baseline
    from toolkit.gate.policy import parse_flag_items

    p = tmp_path / "report.json"
    p.write_text(_with("extra", {"anything": [1, {"deep": None}]}))  # unknown keys are dropped, not refused
    base = load_baseline(p)
    assert base["attacks"][0]["auc"] == 0.5 and "extra" not in base and base["_path"] == str(p)
    now = json.loads(_with("attacks/0/auc", 0.52))
    res = evaluate(now, parse_flag_items("max_increase", ["auc=0.01"]), base)
    assert not res.passed and res.checks[0].delta == pytest.approx(0.02)


# --------------------------------------------------------------------------------------------- YAML
RUN_BASE = "seed: 0\ndata: {dataset: digits, members: 40, nonmembers: 40}\n"
RUN_CONFIGS = {
    "duplicate-top-level-key": (RUN_BASE + "seed: 1\n", "duplicate key 'seed' (first given at line 1)"),
    "duplicate-nested-key": (RUN_BASE + "train:\n  epochs: 5\n  lr: 0.01\n  epochs: 50\n",
                             "at line 6, column 3: duplicate key 'epochs' (first given at line 4)"),
    "epochs-true": (RUN_BASE + "train: {epochs: true}\n", "train.epochs: expected a number, got true"),
    "epochs-quoted": (RUN_BASE + "train: {epochs: '3'}\n", "train.epochs: expected an integer, got the string '3'"),
    "lr-false": (RUN_BASE + "train: {lr: false}\n", "train.lr: expected a number, got false"),
    "overfit-1": (RUN_BASE + "train: {overfit: 1}\n", "train.overfit: expected true or false"),
    "hidden-negative": (RUN_BASE + "model: {hidden: [-5]}\n",
                        "model.hidden.0: Input should be greater than or equal to 1"),
    "hidden-bool": (RUN_BASE + "model: {hidden: [32, true]}\n", "model.hidden: item 1: expected a number, got true"),
    "hidden-huge": (RUN_BASE + "model: {hidden: [10000000000]}\n",
                    "model.hidden.0: Input should be less than or equal to 65536"),
    "members-true": ("data: {members: true}\n", "data.members: expected a number, got true"),
}


@pytest.mark.parametrize("case", list(RUN_CONFIGS))
def test_run_config_refuses_duplicates_and_coercions(case, tmp_path):
    text, needle = RUN_CONFIGS[case]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    _one_error_line(_cli("run", cfg, "--out", out), needle)
    assert not out.exists()


@pytest.mark.parametrize("text, needle", [
    ("max: {auc: 0.6}\nmin: {accuracy: 0.5}\nmax: {auc: 0.9}\n", "duplicate key 'max' (first given at line 1)"),
    ("max: {auc: 0.6, auc: 0.9}\n", "duplicate key 'auc'"),
    ("max: {auc: true}\n", "max auc: the limit must be a number, got True"),
    ("seed: true\nmax: {auc: 0.6}\n", "seed: expected a number, got true"),
])
def test_gate_policy_refuses_duplicates_and_coercions(text, needle, split, tmp_path):
    pol = tmp_path / "gate.yaml"
    pol.write_text(text)
    m, n = split
    _one_error_line(_cli("gate", ONNX, "--members", m, "--nonmembers", n, "--policy", pol), needle)


def test_merge_keys_may_still_override():
    """``<<: *defaults`` then a key of its own is YAML's override, not a duplicate."""
    import tempfile

    from toolkit.io import load_yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write("base: &b {epochs: 5, lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 7\n")
    try:
        assert load_yaml(fh.name)["train"] == {"epochs": 7, "lr": 0.1}
    finally:
        os.unlink(fh.name)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_stay_valid(path):
    from toolkit.config_io import load_config
    from toolkit.gate.policy import GatePolicy
    from toolkit.select.config import RunConfig
    from toolkit.text.config import load_text_config

    if path.name.startswith("text"):
        load_text_config(path)
    else:
        load_config(path, GatePolicy if path.name.startswith("gate") else RunConfig)


# --------------------------------------------------------------------------------------------- outputs
def test_query_out_is_a_directory(tmp_path):
    _one_error_line(_cli("query", ONNX, "--data", SEEDS / "data.npz", "--out", tmp_path), "it is a directory")


def test_outputs_under_a_regular_file(split, tmp_path):
    """ENOTDIR: a path whose parent is a regular file (works as root, unlike chmod)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    m, n = split
    _one_error_line(_cli("query", ONNX, "--data", SEEDS / "data.npz", "--out", blocker / "p.npy"),
                    f"--out {blocker / 'p.npy'} cannot be written: {blocker} is not a directory")
    out = tmp_path / "out"
    _one_error_line(_cli("gate", ONNX, "--members", m, "--nonmembers", n, "--max", "auc=0.9", "--out", out,
                         "--junit", blocker / "sub" / "j.xml"),
                    f"--junit {blocker / 'sub' / 'j.xml'} cannot be written: {blocker} is not a directory")
    assert not out.exists()  # checked before the audit
    _one_error_line(_cli("audit", ONNX, "--members", m, "--nonmembers", n, "--out", blocker / "out"),
                    f"--out {blocker / 'out'} cannot be written")


def _read_only_dir() -> Path:
    """A directory even root cannot create files in (sysfs), or skip."""
    target = Path("/sys/safecompress-probe")
    try:
        target.mkdir()
    except OSError:
        return Path("/sys")
    target.rmdir()
    pytest.skip("/sys is writable here: no read-only place to write to as this user")


def test_read_only_output_places(split, tmp_path):
    ro = _read_only_dir()
    m, n = split
    _one_error_line(_cli("query", ONNX, "--data", SEEDS / "data.npz", "--out", ro / "p.npy"),
                    f"--out {ro / 'p.npy'} cannot be written: ")
    _one_error_line(_cli("gate", ONNX, "--members", m, "--nonmembers", n, "--max", "auc=0.9",
                         "--out", ro / "gate"), f"--out {ro / 'gate'} cannot be written: ")
    _one_error_line(_cli("audit", ONNX, "--members", m, "--nonmembers", n, "--out", ro / "audit"),
                    f"--out {ro / 'audit'} cannot be written: ")


def _private_tmpfs_prefix(mountpoint: Path, size: str, listing: Path) -> list[str]:
    """A command prefix running the rest with a ``size``-byte tmpfs on ``mountpoint``, in a private user and
    mount namespace (nothing outside changes, no root needed), and writing the names left in the tmpfs to
    ``listing`` at the end; skips where namespaces are not allowed.
    (RLIMIT_FSIZE cannot stand in for a full disk: the sandbox's 1 MiB shared-memory file hits it first.)"""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mountpoint}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    script = f'mount -t tmpfs -o size={size} tmpfs "$0" || exit 99; "$@"; rc=$?; ls -A "$0" > "{listing}"; exit $rc'
    return ["unshare", "-Urm", "sh", "-c", script, str(mountpoint)]


def test_full_disk_during_the_gates_outputs(split, tmp_path):
    """The audit runs, then its outputs fill the disk (a 48 KiB tmpfs: roc.png fits, report.html does not):
    one line naming the file, exit 2, no temp file left."""
    m, n = split
    out = tmp_path / "out"
    out.mkdir()
    listing = tmp_path / "left.txt"
    prefix = _private_tmpfs_prefix(out, "48k", listing)
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1")
    r = subprocess.run([*prefix, sys.executable, "-m", "toolkit.cli", "gate", str(ONNX), "--members", str(m),
                        "--nonmembers", str(n), "--attacks", "loss", "--max", "auc=0.9", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    _one_error_line(r, f"cannot write {out}", "No space left on device (ENOSPC)")
    left = listing.read_text().split()
    assert "roc.png" in left and not [n for n in left if n.startswith(".")], left  # no temp file left behind


def test_non_utf8_output_path_after_partial_outputs(split, tmp_path):
    """A non-UTF-8 --junit name: the other outputs are written first, then this one too; nothing breaks."""
    m, n = split
    junit = os.fsdecode(os.fsencode(tmp_path) + b"/j\xff\xfe.xml")
    r = _cli("gate", ONNX, "--members", m, "--nonmembers", n, "--attacks", "loss", "--max", "auc=0.9",
             "--out", tmp_path / "out", "--summary", tmp_path / "s.md", "--junit", junit, "--json")
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    import xml.etree.ElementTree as ET

    ET.parse(junit)
    rep = json.loads(r.stdout)
    assert "\\xff\\xfe" in (tmp_path / "s.md").read_text(encoding="utf-8") and rep["gate"]["verdict"]
    q = _cli("query", ONNX, "--data", SEEDS / "data.npz", "--out", os.fsdecode(os.fsencode(tmp_path) + b"/p\xff.npy"))
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["out"].endswith("p\udcff.npy")


# --------------------------------------------------------------------------------------------- Ctrl-C
def _loaded(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when the command runs")
@pytest.mark.xfail(strict=False, reason="KNOWN BUG (open, issue 16 note): a SIGINT ~1.5 s into `audit` (while the "
                   "sandbox child starts) sometimes ends the CLI with -SIGINT after 'error: interrupted', or with "
                   "exit 0 and no message; 2 of 4 local runs, 1 CI run")
def test_ctrl_c_during_an_audit(tmp_path):
    """A real SIGINT while `audit` works: `error: interrupted`, exit 130, no traceback, no temp files."""
    with np.load(SEEDS / "data.npz") as z:
        x, y = z["x"], z["y"]
    rng = np.random.default_rng(0)
    reps = 200  # 6,400 rows a side: the audit takes several seconds, the interrupt comes after one
    big_x = np.repeat(x, reps, axis=0) + rng.normal(0, 0.01, (len(x) * reps, *x.shape[1:])).astype(np.float32)
    big_y = np.repeat(y, reps)
    np.savez(tmp_path / "m.npz", x=big_x[::2], y=big_y[::2])
    np.savez(tmp_path / "n.npz", x=big_x[1::2], y=big_y[1::2])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", TMPDIR=str(tmp))
    p = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "audit", ONNX, "--members", tmp_path / "m.npz",
                          "--nonmembers", tmp_path / "n.npz", "--out", out], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # numpy is first imported by the command itself (toolkit.cli imports no numpy): then main() is running
        while not _loaded(p.pid, "_multiarray_umath") and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        assert p.poll() is None, ("the audit ended before the interrupt", p.returncode, p.stderr.read())
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert p.returncode == 130 and lines == ["error: interrupted"], (p.returncode, stderr)
    assert stdout == ""
    # torch creates its compile-cache directory (torchinductor_<user>) on import: not a temp file of ours
    left = [q for q in tmp.rglob("*") if not q.relative_to(tmp).parts[0].startswith("torchinductor")]
    assert not left, left
    assert not out.exists() or not [q for q in out.rglob("*") if ".tmp" in q.name or q.name.startswith(".")]
