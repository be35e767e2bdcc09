"""Data hygiene: every problem with the data a user brings is a clear one-line error (or, where the result is
still meaningful, a warning): labels outside the model's classes, wrong dtypes and shapes, NaN/inf,
member/non-member overlap, too few non-members for a requested FPR, oversized files and arrays.
(Basics already covered elsewhere -- NaN in a loader, pickled npz, overlap in the gate -- are not repeated.)"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from reliability_fuzz import SEEDS
from reliability_runs import ROOT
from toolkit.errors import ConfigError, DataError, SafeCompressError

ONNX = SEEDS / "mlp.onnx"


@pytest.fixture(scope="module")
def xy():
    with np.load(SEEDS / "data.npz") as d:
        return d["x"], d["y"]


def _cli(*args, env_extra: dict | None = None):
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def _one_error_line(r, *needles):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _audit(members, nonmembers, **kw):
    from device_tests.leakage import audit

    return audit(str(ONNX), members, nonmembers, attacks=kw.pop("attacks", ["loss"]), n_bootstrap=10, **kw)


# ------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("label", [10, 11, 2**40])
def test_label_outside_the_models_classes(xy, label):
    x, y = xy
    y2 = y.copy()
    y2[3] = label
    with pytest.raises(DataError, match=f"label {label} is outside the model's 10 classes"):
        _audit((x[:16], y2[:16]), (x[16:], y[16:]))


def test_query_refuses_labels_outside_the_classes(xy, tmp_path):
    x, y = xy
    bad = y.copy()
    bad[0] = 10
    np.savez(tmp_path / "q.npz", x=x, y=bad)
    _one_error_line(_cli("query", ONNX, "--data", tmp_path / "q.npz"), "label 10 is outside the model's 10 classes")
    np.savez(tmp_path / "f.npz", x=x, y=y + 0.5)
    _one_error_line(_cli("query", ONNX, "--data", tmp_path / "f.npz"), "y must hold integer class indices")


def test_audit_cli_label_outside_the_classes(xy, tmp_path):
    x, y = xy
    y2 = y[:16].copy()
    y2[0] = 12
    np.savez(tmp_path / "m.npz", x=x[:16], y=y2)
    np.savez(tmp_path / "n.npz", x=x[16:], y=y[16:])
    _one_error_line(_cli("audit", ONNX, "--members", tmp_path / "m.npz", "--nonmembers", tmp_path / "n.npz",
                         "--attacks", "loss"), "label 12 is outside the model's 10 classes")


# ------------------------------------------------------------------------------------- dtypes and shapes
@pytest.mark.parametrize("make,needle", [
    (lambda x: x.astype(np.complex64), "x must be numeric"),
    (lambda x: np.full(x.shape[:1], "a"), "x must have a sample axis"),
    (lambda x: np.array(["a"] * len(x))[:, None], "x must be numeric"),
    (lambda x: np.zeros(len(x), dtype=[("a", "<f4")])[:, None], "x must be numeric"),
])
def test_dtype_mismatch_of_features(xy, make, needle):
    x, y = xy
    with pytest.raises(DataError, match=needle):
        _audit((make(x[:16]), y[:16]), (x[16:], y[16:]))


@pytest.mark.parametrize("y_bad,needle", [
    (lambda y: y.astype(np.float64) + 0.5, "labels must be integer class indices"),
    (lambda y: y > 4, "labels must be integer class indices, got dtype bool"),
    (lambda y: y.astype(np.float64) * np.nan, "labels must be integer class indices"),
    (lambda y: -y - 1, "negative label"),
])
def test_dtype_mismatch_of_labels(xy, y_bad, needle):
    x, y = xy
    with pytest.raises(DataError, match=needle):
        _audit((x[:16], y_bad(y[:16])), (x[16:], y[16:]))


def test_shape_mismatches(xy):
    x, y = xy
    with pytest.raises(DataError, match="members have sample shape"):
        _audit((x[:16], y[:16]), (x[16:].reshape(-1, 64), y[16:]))
    with pytest.raises(DataError, match=r"samples have shape \(7, 7, 1\)"):
        z = np.random.default_rng(0).random((32, 7, 7, 1), dtype=np.float32)
        _audit((z[:16], y[:16]), (z[16:], y[16:]))
    with pytest.raises(DataError, match="x has 16 samples but y has 15"):
        _audit((x[:16], y[:15]), (x[16:], y[16:]))


def test_non_finite_features_in_nonmembers(xy):
    x, y = xy
    xn = x[16:].copy()
    xn[2, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="non-members: 1 sample"):
        _audit((x[:16], y[:16]), (xn, y[16:]))


def test_overlap_by_content_not_by_identity(xy):
    """A member copied into the non-members (another array, another dtype) is still caught by content hash."""
    x, y = xy
    xn = x[16:].astype(np.float64)
    xn[0] = x[5]
    with pytest.raises(DataError, match="1 sample.s. occur in both members and non-members"):
        _audit((x[:16], y[:16]), (xn, y[16:]))


# ------------------------------------------------------------------------------------- too few non-members
def test_too_few_nonmembers_for_the_fpr_is_flagged(xy, tmp_path):
    """16 non-members cannot resolve TPR at 0.1% (or 1%) FPR: the audit flags it, the gate warns."""
    x, y = xy
    rep = _audit((x[:16], y[:16]), (x[16:], y[16:]), attacks=["loss", "entropy"])
    assert all(r["under_resolved"] for r in rep["attacks"])
    np.savez(tmp_path / "m.npz", x=x[:16], y=y[:16])
    np.savez(tmp_path / "n.npz", x=x[16:], y=y[16:])
    r = _cli("audit", ONNX, "--members", tmp_path / "m.npz", "--nonmembers", tmp_path / "n.npz", "--attacks", "loss")
    assert r.returncode == 0, r.stderr
    assert "under-resolved: fewer than 1,000 evaluated non-members" in r.stdout
    r = _cli("gate", ONNX, "--members", tmp_path / "m.npz", "--nonmembers", tmp_path / "n.npz", "--attacks", "loss",
             "--max", "tpr@0.01=0.9")
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: tpr@0.01 is under-resolved")]
    assert len(warn) == 1 and "16 non-members (< 100)" in warn[0], r.stderr


# ------------------------------------------------------------------------------------- oversized inputs
def test_oversized_artifact_and_data_files_are_refused(xy, tmp_path):
    x, y = xy
    np.savez(tmp_path / "d.npz", x=x, y=y)
    limit = {"SAFECOMPRESS_MAX_INPUT_BYTES": "4096"}
    _one_error_line(_cli("inspect", ONNX, env_extra=limit), "artifact is 5", "over the limit of 4096 bytes")
    _one_error_line(_cli("query", SEEDS / "cnn.onnx", "--data", tmp_path / "d.npz", env_extra=limit),
                    "data file is", "over the limit of 4096 bytes")


def test_zip_bomb_npz_is_refused_before_decompression(tmp_path, monkeypatch):
    """A 130 KB .npz whose array decompresses to 128 MiB: refused from its header against the array limit."""
    import toolkit.io as tio
    from toolkit.io import load_npz

    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((2048, 16384), np.float32), y=np.zeros(2048, np.int64))
    p = tmp_path / "bomb.npz"
    p.write_bytes(buf.getvalue())
    assert p.stat().st_size < 1024**2
    monkeypatch.setattr(tio, "MAX_ARRAY_BYTES", 64 * 1024**2)
    with pytest.raises(DataError, match=r"array 'x' of shape \(2048, 16384\) \(float32\) takes 134217728 bytes"):
        load_npz(p)


@pytest.mark.parametrize("shape", [(10**12,), (2**31, 64), (2**63,)])
def test_npz_header_declaring_a_huge_array_is_refused(tmp_path, shape):
    from reliability_fuzz import _npy_header_only
    from toolkit.io import load_npz

    p = tmp_path / "huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", _npy_header_only(shape))
        z.writestr("y.npy", _npy_header_only((4,), "<i8"))
    with pytest.raises(DataError, match="data files may hold at most"):
        load_npz(p)


def test_oversized_and_over_expanding_configs(tmp_path):
    from toolkit.io import MAX_CONFIG_DEPTH, load_yaml

    big = tmp_path / "big.yaml"
    big.write_text("seed: 0\n# " + "x" * (1024**2) + "\n")
    with pytest.raises(ConfigError, match="config file is .* over the limit"):
        load_yaml(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=f"nests more than {MAX_CONFIG_DEPTH} levels deep"):
        load_yaml(deep)
    laughs = tmp_path / "laughs.yaml"
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    laughs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_yaml(laughs)
    selfref = tmp_path / "self.yaml"
    selfref.write_text("a: &a [*a]\n")
    with pytest.raises(ConfigError):
        load_yaml(selfref)
    # A config that uses anchors modestly stays valid.
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {epochs: 3}\ntrain: *b\n")
    assert load_yaml(ok)["train"] == {"epochs": 3}


def test_bad_paths_in_configs_are_config_errors(tmp_path):
    from toolkit.attacks.config import load_audit_config
    from toolkit.gate.policy import load_policy
    from toolkit.io import check_input_file

    pol = tmp_path / "gate.yaml"
    pol.write_text('baseline: "a\\0b"\n')
    with pytest.raises(ConfigError, match="not a usable path"):
        load_policy(pol)
    aud = tmp_path / "audit.yaml"
    aud.write_text('model: {input_shape: [64], n_classes: 10}\npopulation: "p\\0.npz"\n')
    with pytest.raises(ConfigError, match="not a usable path"):
        load_audit_config(aud)
    with pytest.raises(DataError, match="data file (not found|cannot be opened)"):
        check_input_file(tmp_path / "a\0b.npz", "data file", DataError)
    with pytest.raises(DataError, match="data file cannot be opened: .*File name too long"):
        check_input_file(tmp_path / ("x" * 5000 + ".npz"), "data file", DataError)


def test_every_hygiene_error_is_one_line(xy):
    """The messages above are single lines (the CLI prints them as one `error:` line)."""
    x, y = xy
    y2 = y.copy()
    y2[0] = 10
    for members in ((x[:16], y2[:16]), (x[:16].astype(np.complex64), y[:16]), (x[:16], y[:15])):
        with pytest.raises(SafeCompressError) as info:
            _audit(members, (x[16:], y[16:]))
        assert "\n" not in str(info.value)
    assert Path(ONNX).is_file()


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64, 10**30])
def test_out_of_range_seeds_are_config_errors(seed, tmp_path):
    """A seed numpy or torch cannot take (negative, beyond 64 bits) is refused when the config is read, not
    after training started (it used to surface as an internal error, exit 3)."""
    from toolkit.config_io import load_config
    from toolkit.gate.policy import load_policy
    from toolkit.select.config import RunConfig

    for body, load in ((f"seed: {seed}\n", lambda p: load_config(p, RunConfig, "run config")),
                       (f"train: {{seed: {seed}}}\n", lambda p: load_config(p, RunConfig, "run config")),
                       (f"candidates: [{{method: torch_global_unstructured, params: {{seed: {seed}}}}}]\n",
                        None),
                       (f"seed: {seed}\n", load_policy)):
        p = tmp_path / "c.yaml"
        p.write_text(body)
        if load is None:  # method params are validated by the method's config class
            from toolkit.compress import as_config

            with pytest.raises(ConfigError, match="seed"):
                as_config({"method": "torch_global_unstructured", "sparsity": 0.5, "seed": seed})
            continue
        with pytest.raises(ConfigError, match="seed"):
            load(p)


def test_cli_negative_seed_exits_2(xy, tmp_path):
    x, y = xy
    np.savez(tmp_path / "m.npz", x=x[:16], y=y[:16])
    np.savez(tmp_path / "n.npz", x=x[16:], y=y[16:])
    _one_error_line(_cli("audit", ONNX, "--members", tmp_path / "m.npz", "--nonmembers", tmp_path / "n.npz",
                         "--attacks", "loss", "--seed", "-1"), "--seed")
