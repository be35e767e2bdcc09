"""Run directories are ours alone (issue 16, part 3), as real CLI calls:

* ``run --out DIR`` refuses a non-empty directory that is not a run directory (exit 2, one line naming
  ``--force``) and changes nothing in it; with ``--force`` it writes only its own layout, and it never deletes
  files it did not create (temp-looking files in ``.git`` or elsewhere survive); ``--out`` at a file is exit 2;
* checkpoints are verified on resume: a replaced artifact with an updated digest, an entry without its MAC,
  tampered reference-model outputs and a different checkpoint key are each recomputed with a warning, and
  the report's sha256 is the sha256 of the file that ships;
* atomic writes refuse FIFOs, symlinks, sockets and directories (exit 2), leaving them as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reliability_fuzz import SEEDS
from reliability_runs import ROOT, normalize
from toolkit.errors import ConfigError

#: The smallest run that exercises every kind of resume data: dense training, dense export and a candidate
#: (three checkpoint entries) and two reference models (the reference-output cache). About 10 s.
MINI_RUN = """\
seed: 1
data: {dataset: digits, members: 100, nonmembers: 100, population: 120}
model: {arch: mlp, hidden: [16]}
train: {epochs: 2}
candidates:
  - method: torch_global_unstructured
    params: {sparsity: 0.5}
export: {sample: 16}
selection: {attack_epochs: 2, attack_fine_tune_epochs: 1}
final_audit: {attacks: [loss], n_bootstrap: 10, reference_models: 2}
executor: {name: inprocess}
"""


# ------------------------------------------------------------------------------------------ helpers
def _cli(*args, key: Path, timeout: float = 300):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", PYTHONHASHSEED="0",
               SAFECOMPRESS_CHECKPOINT_KEY_FILE=str(key))
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def _one_error_line(r, *needles) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _warnings(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following symlinks): kind and content hash / link target / mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _foreign(root: Path) -> None:
    """A user's directory: a git repository with temp-looking files, notes, a file with a run-like name in a
    foreign subdirectory, and temp-looking names at the top that are not names the run writes."""
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "objects" / ".tmp-x").write_bytes(b"git object being written")
    (root / ".git" / "objects" / ".tmp-abcdefgh-report.json").write_bytes(b"looks like ours, is not")
    (root / "notes").mkdir()
    (root / "notes" / ".a.tmp").write_text("my draft")
    (root / "notes" / ".report.json.abcdefgh.tmp").write_text("also not ours")
    (root / "thesis.tex").write_text("\\documentclass{article}")
    (root / ".tmp-abcdefgh-thesis.tex").write_text("an editor's backup, not a name the run writes")


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """The checkpoint key file of this module's runs (created by the first run), outside every run dir."""
    return tmp_path_factory.mktemp("state") / "checkpoint.key"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "mini.yaml"
    p.write_text(MINI_RUN)
    return p


@pytest.fixture(scope="module")
def forced_run(tmp_path_factory, config, key):
    """One real run with ``--force`` into a foreign directory: (dir, report, the foreign tree before)."""
    out = tmp_path_factory.mktemp("forced") / "home"
    out.mkdir()
    _foreign(out)
    before = _tree(out)
    r = _cli("run", config, "--out", out, "--quiet", "--force", key=key)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not _warnings(r), r.stderr
    return out, json.loads((out / "report.json").read_text()), before


@contextlib.contextmanager
def _same_place(run: Path):
    """Let a test tamper with the shared run at its own path, and restore it afterwards. (At another path the
    jobs' fingerprints differ -- they name the dense weights by absolute path -- so every job after dense
    training would be recomputed anyway and reuse could not be told from rejection.)"""
    stash = run.with_name(run.name + ".pristine")
    shutil.copytree(run, stash, symlinks=True)
    try:
        yield run
    finally:
        shutil.rmtree(run)
        stash.rename(run)


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _entry(out: Path, prefix: str) -> Path:
    (d,) = [p for p in (out / ".checkpoints").iterdir() if p.name.startswith(prefix)]
    return d


# ------------------------------------------------------------------------------------------ the run directory
def test_foreign_directory_is_refused_and_left_untouched(tmp_path, config, key):
    out = tmp_path / "home"
    out.mkdir()
    _foreign(out)
    before = _tree(out)
    r = _cli("run", config, "--out", out, "--quiet", key=key)
    _one_error_line(r, str(out), "not a safecompress run directory", "--force")
    assert _tree(out) == before


def test_out_that_is_a_file_is_refused(tmp_path, config, key):
    f = tmp_path / "results.txt"
    f.write_text("precious")
    _one_error_line(_cli("run", config, "--out", f, key=key), str(f), "not a directory")
    assert f.read_text() == "precious"


def test_bad_config_fails_before_the_directory_is_touched(tmp_path, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("candidates: [{method: torch_prune_everything}]\n")
    out = tmp_path / "new"
    _one_error_line(_cli("run", cfg, "--out", out, key=key), "unknown candidate method")
    assert not out.exists()


def test_force_writes_only_the_runs_own_files(forced_run):
    out, report, before = forced_run
    after = _tree(out)
    assert {k: v for k, v in after.items() if k in before} == before, "a foreign file was changed or deleted"
    assert json.loads((out / ".safecompress-run").read_text())["schema"] == "safecompress.rundir/1"
    assert (out / report["candidates"][0]["artifact"]).is_file()


def test_tampered_resume_data_is_recomputed_and_reported(forced_run, key, config):
    """One rerun of the run (restored afterwards) with three kinds of tampering -- a candidate's artifact
    replaced in its checkpoint *and* its recorded digest updated, the dense export's entry stripped of its MAC, a reference
    model's cached outputs changed -- plus leftovers of the run's own interrupted writes and look-alikes.
    Each tampered item is named in a warning and recomputed; the intact entry is reused silently; the report's
    sha256 is that of the shipped file; only the run's own temporary files are removed."""
    src, report, _ = forced_run
    with _same_place(src) as out:
        _tamper_and_rerun(out, report, key, config)


def _tamper_and_rerun(out: Path, report: dict, key: Path, config: Path) -> None:
    # a candidate artifact replaced by another valid artifact (the dense one), digest updated to match
    cand = _entry(out, "candidate-")
    forged = (out / report["dense"]["artifact"]).read_bytes()
    assert forged != (cand / "files" / "model.onnx").read_bytes()
    (cand / "files" / "model.onnx").write_bytes(forged)
    meta = json.loads((cand / "result.json").read_text())
    meta["files"]["model.onnx"] = hashlib.sha256(forged).hexdigest()
    (cand / "result.json").write_text(json.dumps(meta, indent=1) + "\n")
    # an entry without its MAC
    export = _entry(out, "dense-export-")
    (export / "result.mac").unlink()
    # cached reference outputs changed (valid npz, other numbers)
    ref = sorted((out / ".checkpoints" / "references").glob("ref-*.npz"))[0]
    with np.load(ref) as z:
        probs = z["probs"]
    np.savez(ref, probs=np.roll(probs, 1, axis=1))
    # leftovers of the run's own interrupted atomic writes, and look-alikes that are not the run's
    own = [out / ".report.json.abcd1234.tmp", out / "dense" / "torch" / ".tmp-abcd1234-model.onnx",
           out / "final_audit" / ".tmp-abcd1234-roc.png",
           out / ".checkpoints" / "references" / f".tmp-abcd1234-{ref.name}"]
    for p in own:
        p.write_bytes(b"half written")
    foreign_before = {k: v for k, v in _tree(out).items()
                      if k.startswith((".git", "notes", "thesis.tex", ".tmp-abcdefgh-thesis.tex"))}
    intact = _entry(out, "dense-torch-")
    inodes = {d.name: d.stat().st_ino for d in (cand, export, intact)}

    r = _cli("run", config, "--out", out, "--quiet", key=key)
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = _warnings(r)
    assert len(warnings) == 3, warnings
    assert any(cand.name in w and "MAC does not match" in w and "recomputing" in w for w in warnings), warnings
    assert any(export.name in w and "no result.mac" in w for w in warnings), warnings
    assert any(ref.name in w and "no valid seal" in w for w in warnings), warnings
    assert not any(intact.name in w for w in warnings), warnings
    # the intact entry was reused (not rewritten); the rejected ones were rewritten
    assert _entry(out, "dense-torch-").stat().st_ino == inodes[intact.name]
    assert cand.stat().st_ino != inodes[cand.name] and export.stat().st_ino != inodes[export.name]

    again = json.loads((out / "report.json").read_text())
    c = again["candidates"][0]
    shipped = out / c["artifact"]
    assert c["sha256"] == _sha(shipped) == report["candidates"][0]["sha256"]  # recomputed, deterministic
    assert c["sha256"] != hashlib.sha256(forged).hexdigest()
    assert again["dense"]["sha256"] == _sha(out / again["dense"]["artifact"])
    assert again["final_audit"]["artifact"]["sha256"] == c["sha256"]
    # references recomputed alike
    assert normalize(again["final_audit"]["attacks"]) == normalize(report["final_audit"]["attacks"])
    # the checkpoint entries were rewritten and verify again
    assert _sha(cand / "files" / "model.onnx") == c["sha256"] and (export / "result.mac").is_file()

    assert not [p for p in own if p.exists()], "the run's own leftovers were not removed"
    after = _tree(out)
    assert {k: v for k, v in after.items() if k in foreign_before} == foreign_before


def test_another_checkpoint_key_recomputes_everything(forced_run, tmp_path, config):
    """A missing key (a new one is created) or another key: no entry verifies, every job is recomputed with a
    warning, the report is the same. The key never lands in the run directory."""
    src, report, _ = forced_run
    other = tmp_path / "state" / "other.key"
    with _same_place(src) as out:
        entries = sorted(p.name for p in (out / ".checkpoints").iterdir() if (p / "result.json").is_file())
        r = _cli("run", config, "--out", out, "--quiet", key=other)
        assert r.returncode == 0, r.stderr[-3000:]
        secret = other.read_text().strip()
        assert all(secret.encode() not in p.read_bytes() for p in out.rglob("*") if p.is_file())
        again = json.loads((out / "report.json").read_text())
    warnings = _warnings(r)
    assert len(entries) == 3
    for name in entries:
        assert any(name in w and "MAC does not match" in w for w in warnings), (name, warnings)
    assert sum("no valid seal" in w for w in warnings) == 2, warnings  # the two reference models
    assert stat.S_IMODE(other.stat().st_mode) == 0o600
    assert [x["sha256"] for x in again["candidates"]] == [x["sha256"] for x in report["candidates"]]
    assert normalize(again["final_audit"]["attacks"]) == normalize(report["final_audit"]["attacks"])


def test_key_file_readable_by_others_is_refused(forced_run, tmp_path, config):
    src, _, _ = forced_run
    out = _copy_run(src, tmp_path / "run")
    loose = tmp_path / "loose.key"
    loose.write_text(os.urandom(32).hex() + "\n")
    loose.chmod(0o644)
    before = _tree(out / ".checkpoints")
    _one_error_line(_cli("run", config, "--out", out, "--quiet", key=loose), str(loose), "chmod 600")
    assert _tree(out / ".checkpoints") == before


def test_symlink_planted_in_a_run_directory_is_not_written_through(forced_run, tmp_path, config, key):
    src, _, _ = forced_run
    out = _copy_run(src, tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "split.json").unlink()
    (out / "split.json").symlink_to(victim)
    _one_error_line(_cli("run", config, "--out", out, "--quiet", key=key),
                    "refusing to replace", "split.json", "symbolic link")
    assert victim.read_text() == "keep me" and os.readlink(out / "split.json") == str(victim)


# ------------------------------------------------------------------------------------------ atomic writes
def test_query_out_fifo_and_symlink_are_refused(tmp_path, key):
    fifo = tmp_path / "probs.npy"
    os.mkfifo(fifo)
    _one_error_line(_cli("query", SEEDS / "mlp.onnx", "--data", SEEDS / "data.npz", "--out", fifo, key=key),
                    "refusing to replace", str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    victim = tmp_path / "victim.npy"
    victim.write_bytes(b"keep me")
    link = tmp_path / "link.npy"
    link.symlink_to(victim)
    _one_error_line(_cli("query", SEEDS / "mlp.onnx", "--data", SEEDS / "data.npz", "--out", link, key=key),
                    "refusing to replace", "symbolic link")
    assert os.readlink(link) == str(victim) and victim.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npy", "probs.npy", "victim.npy"]  # no temp left


def test_gate_junit_to_a_fifo_is_refused(tmp_path, key):
    with np.load(SEEDS / "data.npz") as d:
        x, y = d["x"], d["y"]
    half = len(y) // 2
    np.savez(tmp_path / "m.npz", x=x[:half], y=y[:half])
    np.savez(tmp_path / "n.npz", x=x[half:], y=y[half:])
    fifo = tmp_path / "junit.xml"
    os.mkfifo(fifo)
    r = _cli("gate", SEEDS / "mlp.onnx", "--members", tmp_path / "m.npz", "--nonmembers", tmp_path / "n.npz",
             "--attacks", "loss", "--max", "auc=0.99", "--junit", fifo, key=key)
    _one_error_line(r, "refusing to replace", str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _make(kind: str, p: Path):
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "symlink":
        p.symlink_to(p.with_name("target"))
        p.with_name("target").write_text("keep me")
    elif kind == "dangling symlink":
        p.symlink_to(p.with_name("nowhere"))
    elif kind == "directory":
        p.mkdir()
        (p / "inside").write_text("keep me")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        return s
    return None


@pytest.mark.parametrize("kind,word", [("fifo", "FIFO"), ("symlink", "symbolic link"),
                                       ("dangling symlink", "symbolic link"), ("directory", "directory"),
                                       ("socket", "socket")])
@pytest.mark.parametrize("writer", ["bytes", "json", "path"])
def test_atomic_writes_refuse_non_regular_targets(tmp_path, kind, word, writer):
    from toolkit.io import atomic_path, atomic_write_bytes, atomic_write_json

    target = tmp_path / "out.dat"
    sock = _make(kind, target)
    try:
        before = _tree(tmp_path)
        with pytest.raises(ConfigError, match=f"refusing to replace .*out.dat: it is a {word}"):
            if writer == "bytes":
                atomic_write_bytes(target, b"x")
            elif writer == "json":
                atomic_write_json(target, {"a": 1})
            else:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(b"x")
        assert _tree(tmp_path) == before  # target as it was, no temporary file left
    finally:
        if sock is not None:
            sock.close()


def test_atomic_path_refuses_a_target_that_became_a_symlink_meanwhile(tmp_path):
    from toolkit.io import atomic_path

    target, victim = tmp_path / "out.dat", tmp_path / "victim"
    victim.write_text("keep me")
    with pytest.raises(ConfigError, match="symbolic link"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
            target.symlink_to(victim)  # swapped in while the writer was busy
    assert os.readlink(target) == str(victim) and victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dat", "victim"]


def test_atomic_write_still_replaces_a_regular_file(tmp_path):
    from toolkit.io import atomic_write_bytes

    p = tmp_path / "a.txt"
    p.write_text("old")
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
