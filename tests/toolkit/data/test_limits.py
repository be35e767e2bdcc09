"""Limits on hostile data, unit by unit (the CLI-level attacks are in tests/reliability/test_hostile_data.py):
class counts and labels, .npz members (all .npy versions, names, compression, sizes), anonymous inflated
copies, streamed CSV, and the split's array-based passes (same results as before, bounded memory)."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile

import numpy as np
import pytest

from toolkit.data import Dataset, MembershipSplit, make_split, validate_arrays
from toolkit.data.dataset import DEFAULT_MAX_CLASSES, class_count, row_digests
from toolkit.data.loaders import load_csv_dataset
from toolkit.data.rows import NpzRows
from toolkit.data.split import _manifest_text, _stratified_order
from toolkit.errors import ConfigError, DataError
from toolkit.io import load_npz, read_npy_header


def _npy(a: np.ndarray, version=None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=version)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- classes and labels
def test_class_count_from_labels_and_its_ceiling(monkeypatch):
    assert class_count(np.array([0, 3, 1]), "d") == 4
    assert class_count(np.array([2, 2, 5]), "d", n_classes=10) == 10
    with pytest.raises(DataError, match=f"label 100000 makes 100001 classes, over the limit of {DEFAULT_MAX_CLASSES}"):
        class_count(np.array([0, 100_000]), "d")
    with pytest.raises(DataError, match="all 3 labels are 7; a classifier needs samples of at least 2 classes"):
        class_count(np.array([7, 7, 7]), "d")
    with pytest.raises(DataError, match="10000000 classes, over the limit"):
        class_count(np.array([0, 1]), "d", n_classes=10**7)
    monkeypatch.setenv("SAFECOMPRESS_MAX_CLASSES", "3")
    with pytest.raises(DataError, match="label 3 makes 4 classes, over the limit of 3"):
        class_count(np.array([0, 3]), "d")
    monkeypatch.setenv("SAFECOMPRESS_MAX_CLASSES", "-1")
    with pytest.raises(ConfigError, match="SAFECOMPRESS_MAX_CLASSES must be a positive integer"):
        class_count(np.array([0, 3]), "d")


def test_dataset_checks_its_class_count_before_anything_else():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(DataError, match="1 class.es.; a classifier needs at least 2"):
        Dataset("d", x, np.zeros(4, np.int64), 1)
    with pytest.raises(DataError, match="over the limit of 100000"):
        Dataset("d", x, np.arange(4), 10**9)


@pytest.mark.parametrize("y,needle", [
    (np.array([0.0, 1e30]), "label 1000000000000000019884624838656 is not a class index"),
    (np.array([0, 2**64 - 1], dtype=np.uint64), "label 18446744073709551615 is not a class index"),
    (np.array([0, -2**40]), "negative label -1099511627776"),
    (np.array([0.0, 12.0]), "label 12 is outside the model's 10 classes"),
])
def test_labels_are_checked_in_their_own_dtype_before_the_cast(y, needle):
    n_classes = 10 if "outside" in needle else None
    with pytest.raises(DataError, match=needle):
        validate_arrays(np.zeros((2, 3), np.float32), y, "d", n_classes)


def test_row_ceiling(monkeypatch):
    monkeypatch.setenv("SAFECOMPRESS_MAX_ROWS", "10")
    validate_arrays(np.zeros((10, 1), np.float32), np.zeros(10, np.int64), "d")
    with pytest.raises(DataError, match="11 samples, over the limit of 10 .SAFECOMPRESS_MAX_ROWS."):
        validate_arrays(np.zeros((11, 1), np.float32), np.zeros(11, np.int64), "d")


# ------------------------------------------------------------------------------------------- .npz members
@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("name", ["x.npy", "x"])
def test_every_npy_version_with_or_without_suffix_loads(tmp_path, version, name):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    p = tmp_path / "d.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, _npy(x, version))
        zf.writestr("y.npy", _npy(np.arange(6) % 2, version))
    out = load_npz(p)
    assert set(out) == {"x", "y"} and np.array_equal(out["x"], x)
    rows = NpzRows(p, "x")
    assert np.array_equal(rows[1:4], x[1:4])
    rows.close()


def _zip(path, members: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def test_refused_members(tmp_path):
    y = _npy(np.arange(4))
    cases = {
        "not a .npy array (no .npy magic)": {"x.npy": b"hello", "y.npy": y},
        "two members named 'y'": {"y.npy": y, "y": y},
        "declares a negative dimension": {"y.npy": y, "x.npy": _npy(np.zeros(2)).replace(b"(2,)", b"(-2,)")},
        "object (pickled) arrays": {"y.npy": y, "x.npy": _npy(np.array([None, 1], dtype=object))},
        "unpacks to": {"y.npy": y + b"trailing junk"},
        "is truncated": {"y.npy": y[:-8]},
    }
    for needle, members in cases.items():
        with pytest.raises(DataError, match=re.escape(needle)):
            load_npz(_zip(tmp_path / "m.npz", members), keys=("y",))
    with pytest.raises(DataError, match="zip compression method 12"):
        load_npz(_zip(tmp_path / "b.npz", {"y.npy": y}, zipfile.ZIP_BZIP2), keys=("y",))
    with pytest.raises(DataError, match="is a directory"):
        load_npz(_zip(tmp_path / "d.npz", {"y.npy": y, "sub/": b""}), keys=("y",))


def test_header_length_is_bounded_before_reading_it():
    bomb = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{"
    with pytest.raises(ValueError, match="over the limit"):
        read_npy_header(io.BytesIO(bomb))
    with pytest.raises(ValueError, match="unsupported .npy version"):
        read_npy_header(io.BytesIO(b"\x93NUMPY\x04\x00"))


def test_too_many_members(tmp_path, monkeypatch):
    import toolkit.io as tio

    monkeypatch.setattr(tio, "MAX_NPZ_MEMBERS", 3)
    p = _zip(tmp_path / "m.npz", {f"a{i}.npy": _npy(np.arange(2)) for i in range(4)})
    with pytest.raises(DataError, match="holds 4 members; data files may hold at most 3"):
        load_npz(p, keys=())


def test_inflated_copy_has_no_name_and_a_bad_crc_is_caught(tmp_path, monkeypatch):
    """The compressed member's copy lives in an unnamed file (nothing to leave behind, however the process
    ends); a member whose data does not match its CRC is refused, when loaded and when inflated."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    x = np.random.default_rng(0).random((300, 5)).astype(np.float32)
    p = tmp_path / "c.npz"
    np.savez_compressed(p, x=x, y=np.arange(300) % 3)
    rows = NpzRows(p, "x")
    assert list(tmp.iterdir()) == [] and np.array_equal(np.asarray(rows), x)
    assert any(os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp)) for fd in os.listdir("/proc/self/fd")
               if os.path.islink(f"/proc/self/fd/{fd}"))
    rows.close()
    # A CRC that does not match x's (deflated) data.
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("x.npy")
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 14, info.CRC ^ 1)  # the local header's CRC
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        cd = zf.start_dir
    at = cd
    while data[at:at + 4] == b"PK\x01\x02":
        n, e, c = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46:at + 46 + n] == b"x.npy":
            struct.pack_into("<I", data, at + 16, info.CRC ^ 1)
        at += 46 + n + e + c
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="CRC"):
        load_npz(bad)
    with pytest.raises(DataError, match="CRC"):
        NpzRows(bad, "x")
    assert list(tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------- CSV
def test_csv_is_streamed_with_the_same_results(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,label,b\n\n0.1,0,0.2\n0.3,1,0.4\r\n0.5,1,0.6\n")
    ds = load_csv_dataset(str(p))
    assert np.array_equal(ds.x, np.float32([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])) and list(ds.y) == [0, 1, 1]
    q = tmp_path / "n.csv"
    q.write_text("1,0.5,2\n0,0.25,3\n")
    assert list(load_csv_dataset(str(q), label_column=0).y) == [1, 0]
    assert list(load_csv_dataset(str(q), label_column=-1).y) == [2, 3]


@pytest.mark.parametrize("text,needle", [
    ("1,2,0\n3,4\n", "line 2 has 2 fields, the first row 3"),
    ("1,2,0\n3,x,1\n", "non-numeric field at line 2"),
    ("a,b\n", "holds a header but no rows"),
    ("\n\n", "holds no rows"),
    ("1,0\n2,1\n", None),
    ("5\n6\n", "at least 2 numeric fields"),
    ('1,"' + "9" * 200_000 + '",0\n', "not a readable CSV file"),  # csv's own field limit
])
def test_csv_refusals(tmp_path, text, needle):
    p = tmp_path / "t.csv"
    p.write_text(text)
    if needle is None:
        assert len(load_csv_dataset(str(p))) == 2
        with pytest.raises(DataError, match="label column 5 is outside the 2 columns"):
            load_csv_dataset(str(p), label_column=5)
        return
    with pytest.raises(DataError, match=needle):
        load_csv_dataset(str(p))


def test_csv_limits(tmp_path, monkeypatch):
    from toolkit.data import loaders

    p = tmp_path / "t.csv"
    p.write_text("".join(f"{i},{i % 2}\n" for i in range(50)))
    monkeypatch.setenv("SAFECOMPRESS_MAX_ROWS", "20")
    with pytest.raises(DataError, match="more than 20 rows"):
        load_csv_dataset(str(p))
    monkeypatch.delenv("SAFECOMPRESS_MAX_ROWS")
    monkeypatch.setattr(loaders, "MAX_CSV_ROW_CHARS", 30)
    long = tmp_path / "long.csv"
    long.write_text("1,0\n" + "1," * 20 + "0\n")
    with pytest.raises(DataError, match="a CSV row is longer than 30 characters"):
        load_csv_dataset(str(long))
    quoted = tmp_path / "quoted.csv"  # one row over several lines (quoted newlines) counts as a whole
    quoted.write_text('1,0\n"1' + "\n" * 40 + '",1\n')
    with pytest.raises(DataError, match="a CSV row is longer than 30 characters"):
        load_csv_dataset(str(quoted))


# ------------------------------------------------------------------------------------------- split passes
def _stratified_order_reference(y, rng):
    """The per-class scan the split used before (kept here to prove the new grouping draws the same)."""
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        perm = rng.permutation(len(idx))
        keys[idx[perm]] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.argsort(keys, kind="stable")


def test_split_passes_give_the_same_results_as_before(digits):
    y = np.random.default_rng(5).integers(0, 37, 5000)
    assert np.array_equal(_stratified_order(y, np.random.default_rng(1)),
                          _stratified_order_reference(y, np.random.default_rng(1)))
    x = np.random.default_rng(0).random((200, 3)).astype(np.float32)
    x[[10, 50, 199]] = x[[3, 7, 3]]  # repeats of earlier samples
    ds = Dataset("d", x, np.arange(200) % 4, 4)
    _, first = np.unique(row_digests(x), return_index=True)
    dedup = ds.deduplicated()
    assert len(dedup) == 197 and np.array_equal(dedup.x, x[np.sort(first)])
    s = make_split(digits, 100, 100, 100, seed=2)
    text = _manifest_text(s.to_manifest(digits))
    assert json.loads(text) == s.to_manifest(digits)
    assert text.count("\n") < 30  # one line per part, not one per index


def test_split_index_checks():
    idx = np.arange(8)
    with pytest.raises(DataError, match="split part 'member_known' repeats indices"):
        MembershipSplit("d", "h", 0, np.array([1, 1]), idx[2:4], idx[4:6], idx[6:8], idx[:0])._check_disjoint_indices()
    with pytest.raises(DataError, match="index 5 is in both 'member_unknown' and 'population'"):
        MembershipSplit("d", "h", 0, idx[:2], idx[2:6], idx[6:8], idx[8:], np.array([5, 9]))._check_disjoint_indices()
