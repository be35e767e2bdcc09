"""Hostile data files (issue 16, "data bombs"): each attack is generated here, fed to the real CLI, and must end
with exit 2 and one ``error:`` line, within 2 GB of peak memory and 60 s, leaving no temporary file.

Attacks: labels of 10**7 / 10**12 in a small ``.npz`` (class count -> output layer of tens of GB); one-class
labels; a zip bomb in a non-array member; ``.npy`` v3 headers and members without the ``.npy`` suffix declaring
huge arrays; a compressed ``x`` whose real content is far larger than its header declares (also with the zip
sizes forged to match the header); 5M one-byte rows in a tiny file for ``data split``; big and hostile CSVs;
SIGTERM (and SIGKILL) while ``audit`` holds an inflated copy of a compressed ``x``.

Peak memory is the CLI's ``ru_maxrss`` (its own waited-for children included) as ``wait4`` reports it to a small
middleman process (``hostile/peak.py``): forked straight from pytest, the CLI would inherit pytest's resident set
as its starting "peak". The CLI runs under
a soft 6 GiB address-space limit: a regression fails with an error here instead of OOM-killing a shared box.

Run as a script (``python tests/reliability/test_hostile_data.py DIR``) to write every payload into DIR.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEEDS = HERE / "corpus" / "seeds"
ONNX = SEEDS / "mlp.onnx"

GIB = 1024**3
PEAK_LIMIT = 2 * GIB  # "< 2 GB for any input under 10 MB"
TIME_LIMIT = 60.0  # seconds, for a hostile input
ADDRESS_SPACE = 6 * GIB  # soft RLIMIT_AS of the CLI: a safety net only (a normal audit maps < 1 GiB)


# ============================================================================================ payloads
def _seeds() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SEEDS / "data.npz", allow_pickle=False) as d:
        return d["x"], d["y"]


def _npy_header(shape: tuple, dtype: str = "<f4", version: int = 1) -> bytes:
    """A ``.npy`` magic + header (no data) of format ``version`` (1: 2-byte length, 2 and 3: 4-byte length)."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    size = 2 if version == 1 else 4
    text += b" " * (63 - (6 + 2 + size + len(text)) % 64) + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text


def labels_npz(path: Path, label: int, n: int = 32) -> Path:
    """The first ``n`` samples of the seed data (10 classes) with one label set to ``label``: a few KB."""
    x, y = _seeds()
    x, y = x[:n], y[:n].copy()
    y[0] = label
    np.savez(path, x=x, y=y)
    return path


def one_class_npz(path: Path) -> Path:
    x, y = _seeds()
    np.savez(path, x=x, y=np.zeros_like(y))
    return path


def zeros_member(zf: zipfile.ZipFile, name: str, nbytes: int, head: bytes = b"") -> None:
    """Write member ``name``: ``head`` then ``nbytes`` zeros, deflated at level 9 (~1 KB per MB), streamed."""
    chunk = bytes(1 << 20)
    with zf.open(name, "w", force_zip64=True) as fh:  # a name, not a ZipInfo: the archive's compression
        fh.write(head)
        for start in range(0, nbytes, len(chunk)):
            fh.write(chunk[:min(len(chunk), nbytes - start)])


def _deflating(path: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9)


def zip_bomb_npz(path: Path, member: str = "readme", nbytes: int = GIB) -> Path:
    """Valid x and y plus a non-array member of ``nbytes`` zeros (1 GiB -> ~1 MB on disk)."""
    x, y = _seeds()
    with _deflating(path) as zf:
        for k, a in (("x.npy", x), ("y.npy", y)):
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(k, buf.getvalue())
        zeros_member(zf, member, nbytes)
    return path


def header_only_npz(path: Path, shape: tuple, version: int = 1, name: str = "x.npy") -> Path:
    """An x member whose header (format ``version``) declares ``shape`` but that holds 64 bytes of data."""
    _, y = _seeds()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, _npy_header(shape, version=version) + bytes(64))
        buf = io.BytesIO()
        np.save(buf, y)
        zf.writestr("y.npy", buf.getvalue())
    return path


def overlong_x_npz(path: Path, extra: int = GIB, forge_sizes: bool = False) -> Path:
    """A compressed x.npy whose header declares the seed's (32, 8, 8, 1) float32 (8 KiB) but that holds
    ``extra`` more bytes of zeros (~1 MB on disk for 1 GiB). ``forge_sizes``: the zip's uncompressed sizes
    are then patched to what the header declares, so only the CRC and the stream bound can tell."""
    x, y = _seeds()
    head = _npy_header(x.shape)
    with _deflating(path) as zf:
        zeros_member(zf, "x.npy", x.nbytes + extra, head)
        buf = io.BytesIO()
        np.save(buf, y)
        zf.writestr("y.npy", buf.getvalue())
    if forge_sizes:
        _forge_size(path, "x.npy", len(head) + x.nbytes)
    return path


def _forge_size(path: Path, name: str, size: int) -> None:
    """Set member ``name``'s uncompressed size to ``size`` in its local header, zip64 extra and central entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        start_dir = zf.start_dir

    def patch_extra(at: int, length: int) -> None:  # the zip64 extra field (id 1) starts with the sizes
        end = at + length
        while at + 4 <= end:
            tag, n = struct.unpack_from("<HH", data, at)
            if tag == 1:
                struct.pack_into("<Q", data, at + 4, size)
            at += 4 + n

    at = info.header_offset
    struct.pack_into("<I", data, at + 22, size if size < 0xFFFFFFFF else 0xFFFFFFFF)
    name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
    patch_extra(at + 30 + name_len, extra_len)
    at = start_dir
    while data[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46:at + 46 + name_len].decode() == name:
            struct.pack_into("<I", data, at + 24, size if size < 0xFFFFFFFF else 0xFFFFFFFF)
            patch_extra(at + 46 + name_len, extra_len)
        at += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))


def many_rows_npz(path: Path, n: int = 5_000_000) -> Path:
    """``n`` one-byte rows, all zeros, with labels alternating 0/1: ~10 KB compressed for 5M rows."""
    np.savez_compressed(path, x=np.zeros((n, 1), np.uint8), y=(np.arange(n) % 2).astype(np.int8))
    return path


def inflating_members_npz(path: Path, n: int = 1_000_000) -> Path:
    """Members of ``n`` zero images (8, 8, 1) float32 = 256 MB for n = 1M (~250 KB compressed): an audit
    inflates x to a temporary file, then spends seconds hashing it (the window for a signal)."""
    with _deflating(path) as zf:
        zeros_member(zf, "x.npy", n * 256, _npy_header((n, 8, 8, 1)))
        buf = io.BytesIO()
        np.save(buf, np.arange(n, dtype=np.int64) % 10)
        zf.writestr("y.npy", buf.getvalue())
    return path


def big_csv(path: Path, rows: int = 3_000_000) -> Path:
    """``rows`` identical lines ``0,0,0,1`` plus one ``...,0``: ~24 MB of text, 12M values."""
    with open(path, "w") as fh:
        fh.write("a,b,c,label\n")
        line = "0,0,0,1\n"
        for _ in range(rows // 100_000):
            fh.write(line * 100_000)
        fh.write("0,0,0,0\n")
    return path


def long_row_csv(path: Path, fields: int = 20_000_000) -> Path:
    """One 40 MB line of 20M fields: as a Python list of strings it would take ~200 MB before any check."""
    with open(path, "w") as fh:
        fh.write("0," * (fields - 1) + "1\n")
    return path


def write_all(out: Path) -> list[Path]:
    """Every payload of this module, written into ``out`` (the script entry point)."""
    out.mkdir(parents=True, exist_ok=True)
    return [labels_npz(out / "label-1e7.npz", 10**7), labels_npz(out / "label-1e12.npz", 10**12),
            one_class_npz(out / "one-class.npz"), zip_bomb_npz(out / "zip-bomb-member.npz"),
            header_only_npz(out / "npy-v3-huge.npz", (10**12,), version=3),
            header_only_npz(out / "npy-v3-truncated.npz", (2**28,), version=3),
            header_only_npz(out / "no-suffix-huge.npz", (10**12,), name="x"),
            overlong_x_npz(out / "overlong-x.npz"), overlong_x_npz(out / "overlong-x-forged.npz", forge_sizes=True),
            many_rows_npz(out / "rows-5m.npz"), big_csv(out / "big.csv"), long_row_csv(out / "long-row.csv")]


# ============================================================================================ running the CLI
@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_bytes: int
    seconds: float
    tmpdir: Path

    def line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[0] if len(lines) == 1 else "\n".join(lines)


def _limit_address_space() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > ADDRESS_SPACE:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, hard))


def start_cli(args, work: Path, env_extra: dict | None = None) -> tuple[subprocess.Popen, Path, float]:
    """Start ``python -m toolkit.cli ARGS`` with TMPDIR an empty folder of its own and output to files (so
    that the test, not a pipe reader, reaps it with ``os.wait4``)."""
    work.mkdir(parents=True, exist_ok=True)
    tmpdir = work / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", TMPDIR=str(tmpdir),
               **(env_extra or {}))
    with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, str(HERE / "hostile" / "peak.py"), str(work / "peak"), "--",
                                 sys.executable, "-m", "toolkit.cli", *map(str, args)], stdout=out, stderr=err,
                                env=env, cwd=ROOT, preexec_fn=_limit_address_space, start_new_session=True)
    return proc, tmpdir, time.monotonic()


def cli_pid(proc: subprocess.Popen) -> int | None:
    """The CLI's pid: the one child of the ``peak.py`` middleman, once it has forked."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def wait_cli(proc: subprocess.Popen, tmpdir: Path, started: float, timeout: float = 2 * TIME_LIMIT) -> Run:
    """Reap ``proc`` with ``os.wait4`` (its own peak RSS), killing it after ``timeout`` seconds."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    work = tmpdir.parent
    peak = int((work / "peak").read_text())
    return Run(proc.returncode, (work / "stdout").read_text(errors="replace"),
               (work / "stderr").read_text(errors="replace"), peak, seconds, tmpdir)


def cli(args, work: Path, env_extra: dict | None = None) -> Run:
    return wait_cli(*start_cli(args, work, env_extra))


def assert_refused(run: Run, *needles: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every needle, no traceback, bounded memory and time, and
    nothing left in the run's TMPDIR."""
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "internal error" not in lines[0], run.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert run.peak_bytes < PEAK_LIMIT, f"peak RSS {run.peak_bytes / GIB:.2f} GiB: {lines[0]}"
    assert run.seconds < TIME_LIMIT, f"{run.seconds:.1f} s: {lines[0]}"
    assert sorted(p.name for p in run.tmpdir.iterdir()) == [], "temporary files left behind"
    return lines[0]


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """Valid members / non-members files (the seed data halved)."""
    d = tmp_path_factory.mktemp("pair")
    x, y = _seeds()
    np.savez(d / "m.npz", x=x[:16], y=y[:16])
    np.savez(d / "n.npz", x=x[16:], y=y[16:])
    return d / "m.npz", d / "n.npz"


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    p = zip_bomb_npz(tmp_path_factory.mktemp("bomb") / "bomb.npz")
    assert p.stat().st_size < 2 * 1024**2  # ~1 MB on disk, 1 GiB inflated
    return p


@pytest.fixture(scope="module")
def overlong(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("overlong")
    out = {"plain": overlong_x_npz(d / "x.npz"), "forged": overlong_x_npz(d / "forged.npz", forge_sizes=True)}
    assert all(p.stat().st_size < 2 * 1024**2 for p in out.values())
    return out


def _as(role: str, data: Path, pair: tuple[Path, Path], out: Path) -> list:
    """The command line feeding ``data`` to ``role``."""
    m, n = pair
    return {"query": ["query", ONNX, "--data", data],
            "audit": ["audit", ONNX, "--members", data, "--nonmembers", n, "--attacks", "loss"],
            "audit-nonmembers": ["audit", ONNX, "--members", m, "--nonmembers", data, "--attacks", "loss"],
            "gate": ["gate", ONNX, "--members", data, "--nonmembers", n, "--attacks", "loss", "--max", "auc=0.9"],
            "split": ["data", "split", data, "--out", out / "split"],
            "train": ["train", "--dataset", data, "--epochs", "1", "--out", out / "train"]}[role]


# ============================================================================================ labels
@pytest.mark.parametrize("label", [10**7, 10**12])
@pytest.mark.parametrize("role", ["train", "split"])
def test_huge_label_is_refused_before_sizing_anything_by_it(tmp_path, pair, label, role):
    """One label of 10**7 made a 10,000,001-way output layer (23.8 GB, OOM-killed); 10**12 ended in exit 3."""
    data = labels_npz(tmp_path / "l.npz", label)
    assert data.stat().st_size < 100 * 1024
    assert_refused(cli(_as(role, data, pair, tmp_path), tmp_path / "run"),
                   f"label {label} makes {label + 1} classes", "over the limit of 100000 classes",
                   "SAFECOMPRESS_MAX_CLASSES")


@pytest.mark.parametrize("role", ["query", "audit", "gate"])
def test_huge_label_against_a_model_names_its_classes(tmp_path, pair, role):
    data = labels_npz(tmp_path / "l.npz", 10**12, n=16)  # the members' half
    # (query writes the label as 1e+12)
    assert_refused(cli(_as(role, data, pair, tmp_path), tmp_path / "run"), "label 1", "is outside the model's 10 classes")


def test_class_ceiling_is_configurable(tmp_path, pair):
    data = SEEDS / "data.npz"  # 10 classes
    assert_refused(cli(_as("split", data, pair, tmp_path), tmp_path / "a", {"SAFECOMPRESS_MAX_CLASSES": "5"}),
                   "label 9 makes 10 classes, over the limit of 5 classes")
    assert_refused(cli(_as("split", data, pair, tmp_path), tmp_path / "b", {"SAFECOMPRESS_MAX_CLASSES": "many"}),
                   "SAFECOMPRESS_MAX_CLASSES must be a positive integer, got 'many'")
    ok = cli(_as("split", data, pair, tmp_path), tmp_path / "c", {"SAFECOMPRESS_MAX_CLASSES": "10"})
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("role", ["train", "split"])
def test_one_class_data_is_refused(tmp_path, pair, role):
    """All labels equal: ModelSpec(n_classes=1) ended in exit 3."""
    data = one_class_npz(tmp_path / "one.npz")
    assert_refused(cli(_as(role, data, pair, tmp_path), tmp_path / "run"),
                   "all 32 labels are 0; a classifier needs samples of at least 2 classes")


def test_audit_with_one_member_is_refused(tmp_path, pair):
    x, y = _seeds()
    np.savez(tmp_path / "m1.npz", x=x[:1], y=y[:1])
    assert_refused(cli(_as("audit", tmp_path / "m1.npz", pair, tmp_path), tmp_path / "run"),
                   "needs at least 2 members and 2 non-members")


# ============================================================================================ npz members
@pytest.mark.parametrize("role", ["query", "audit", "audit-nonmembers", "split", "gate"])
def test_zip_bomb_in_a_non_array_member_is_not_inflated(tmp_path, pair, zip_bomb, role):
    """A 1 MB member inflating to 1 GiB (np.load hands non-array members back as bytes: 2 GB measured)."""
    run = cli(_as(role, zip_bomb, pair, tmp_path), tmp_path / "run")
    assert_refused(run, "member 'readme' is not a .npy array")
    assert run.peak_bytes < GIB // 2 and run.seconds < 30


@pytest.mark.parametrize("role", ["query", "audit"])
def test_npy_v3_header_declaring_a_huge_array(tmp_path, pair, role):
    data = header_only_npz(tmp_path / "v3.npz", (10**12,), version=3)
    assert_refused(cli(_as(role, data, pair, tmp_path), tmp_path / "run"),
                   "array 'x' of shape (1000000000000,)", "data files may hold at most")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_header_under_the_limit_without_the_data_is_refused_before_allocating(tmp_path, pair, version):
    """1 GiB declared, 64 bytes present: numpy's reader would allocate the 1 GiB first."""
    data = header_only_npz(tmp_path / "t.npz", (2**28,), version=version)
    run = cli(_as("query", data, pair, tmp_path), tmp_path / "run")
    assert_refused(run, "member 'x.npy' is truncated")
    assert run.peak_bytes < GIB // 2


@pytest.mark.parametrize("role", ["query", "audit"])
def test_member_without_npy_suffix_is_checked_too(tmp_path, pair, role):
    data = header_only_npz(tmp_path / "s.npz", (10**12,), name="x")
    assert_refused(cli(_as(role, data, pair, tmp_path), tmp_path / "run"),
                   "array 'x' of shape (1000000000000,)", "data files may hold at most")


def test_same_array_under_two_member_names_is_refused(tmp_path, pair):
    x, y = _seeds()
    p = tmp_path / "two.npz"
    np.savez(p, x=x, y=y)
    with zipfile.ZipFile(p, "a") as zf:
        buf = io.BytesIO()
        np.save(buf, x[:1])
        zf.writestr("x", buf.getvalue())
    assert_refused(cli(_as("query", p, pair, tmp_path), tmp_path / "run"), "two members named 'x'")


@pytest.mark.parametrize("role", ["audit", "query"])
def test_compressed_x_larger_than_its_header_is_refused_before_inflating(tmp_path, pair, overlong, role):
    """~1 MB member, 8 KiB declared, 1 GiB inside: the audit wrote it all to a 1 GB temporary file."""
    run = cli(_as(role, overlong["plain"], pair, tmp_path), tmp_path / "run")
    assert_refused(run, "member 'x.npy' unpacks to", "refused as a zip bomb")
    assert run.peak_bytes < GIB // 2 and run.seconds < 30


@pytest.mark.parametrize("role", ["audit", "query"])
def test_forged_zip_sizes_do_not_get_past_the_declared_size(tmp_path, pair, overlong, role):
    """The zip claims the size the header declares: reading stops there and the CRC check fails."""
    run = cli(_as(role, overlong["forged"], pair, tmp_path), tmp_path / "run")
    assert_refused(run, "CRC")
    assert run.peak_bytes < GIB // 2 and run.seconds < 30


# ============================================================================================ many rows, CSV
def test_millions_of_tiny_rows_in_data_split_stay_bounded(tmp_path, pair):
    """5M one-byte rows in a ~10 KB file: hashing and de-duplication held a Python string per row (0.93 GB).
    Every row is the same sample, so after de-duplication too few are left for a split."""
    data = many_rows_npz(tmp_path / "rows.npz")
    assert data.stat().st_size < 100 * 1024
    run = cli(_as("split", data, pair, tmp_path), tmp_path / "run")
    assert_refused(run, "need at least 4 members and 4 non-members")
    assert run.peak_bytes < 700 * 1024**2, run.peak_bytes  # ~80 bytes a row at most


def test_row_ceiling_is_checked_before_per_row_work(tmp_path, pair):
    data = many_rows_npz(tmp_path / "rows.npz", 200_000)
    run = cli(_as("split", data, pair, tmp_path), tmp_path / "run", {"SAFECOMPRESS_MAX_ROWS": "100000"})
    assert_refused(run, "200000 samples, over the limit of 100000 (SAFECOMPRESS_MAX_ROWS)")


def test_big_csv_is_streamed(tmp_path, pair):
    """24 MB of CSV, 12M values: read row by row into doubles (~100 MB), not lists of strings (~1 GB)."""
    data = big_csv(tmp_path / "big.csv")
    run = cli(_as("split", data, pair, tmp_path), tmp_path / "run")
    assert_refused(run, "need at least 4 members and 4 non-members")
    assert run.peak_bytes < 600 * 1024**2, run.peak_bytes
    run = cli(_as("split", data, pair, tmp_path), tmp_path / "rows", {"SAFECOMPRESS_MAX_ROWS": "1000"})
    assert_refused(run, "more than 1000 rows (SAFECOMPRESS_MAX_ROWS)")
    assert run.seconds < 10


def test_csv_row_longer_than_the_limit(tmp_path, pair):
    data = long_row_csv(tmp_path / "long.csv")
    run = cli(_as("split", data, pair, tmp_path), tmp_path / "run")
    assert_refused(run, "a CSV row is longer than")
    assert run.peak_bytes < GIB // 2


# ============================================================================================ signals
def _inflated_copy_open(pid: int, tmpdir: Path) -> bool:
    """Whether process ``pid`` holds a file of ``tmpdir`` open: the audit's inflated copy of x has no name
    (it is created unlinked), so it shows up in /proc/PID/fd only."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(tmpdir)):
                return True
        except OSError:
            pass
    return False


@pytest.fixture(scope="module")
def inflating(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("inflating")
    members = inflating_members_npz(d / "m.npz")
    x, y = _seeds()
    np.savez(d / "n.npz", x=x[16:] + 0.5, y=y[16:])  # no content in common with the zero images
    return members, d / "n.npz"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_audit_leaves_no_temporary_file(tmp_path, inflating, sig):
    members, nonmembers = inflating
    proc, tmpdir, started = start_cli(["audit", ONNX, "--members", members, "--nonmembers", nonmembers,
                                       "--attacks", "loss"], tmp_path / "run")
    try:
        while (pid := cli_pid(proc)) is None or not _inflated_copy_open(pid, tmpdir):
            assert proc.poll() is None, (tmp_path / "run" / "stderr").read_text()
            assert time.monotonic() - started < TIME_LIMIT, "the audit never opened its temporary copy"
            time.sleep(0.01)
        os.kill(pid, sig)
    finally:
        run = wait_cli(proc, tmpdir, started, timeout=TIME_LIMIT)
    assert sorted(p.name for p in tmpdir.iterdir()) == [], "temporary files left behind"
    assert run.seconds < TIME_LIMIT and run.peak_bytes < PEAK_LIMIT
    if sig == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
        return
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 130, (run.returncode, run.stderr[-2000:])  # ended by the CLI, not by the signal
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    assert "Traceback" not in run.stderr


if __name__ == "__main__":  # write every payload: python tests/reliability/test_hostile_data.py DIR
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-data")):
        print(f"{p.stat().st_size:>12}  {p}")
