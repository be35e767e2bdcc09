"""File-backed rows of an .npz array: the same values as np.load, one block at a time, bad files refused."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.data import content_sha256, row_hashes, validate_arrays
from toolkit.data.dataset import row_digests
from toolkit.data.rows import NpzRows
from toolkit.errors import DataError
from toolkit.io import load_npz


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_read_the_same_values_as_np_load(tmp_path, save):
    rng = np.random.default_rng(0)
    x = rng.random((1000, 8, 8, 1)).astype(np.float64)  # float64 on disk: validation reads float32
    y = rng.integers(0, 10, 1000)
    path = tmp_path / "d.npz"
    save(path, x=x, y=y)
    data = load_npz(path, rows=("x",))
    rows = data["x"]
    assert isinstance(rows, NpzRows) and rows.shape == x.shape and len(rows) == 1000
    np.testing.assert_array_equal(rows[10:517], x[10:517])
    np.testing.assert_array_equal(np.asarray(rows), x)
    rv, yv = validate_arrays(rows, data["y"], "members")
    xv, _ = validate_arrays(x, y, "members")
    assert rv.dtype == np.float32 and rv[0:3].dtype == np.float32
    assert content_sha256(rv, yv) == content_sha256(xv, y)  # same digest as the in-memory array
    assert (row_digests(rv) == row_digests(xv)).all()
    assert list(row_hashes(rv)) == list(row_hashes(xv))
    assert row_digests(xv)[0] == bytes.fromhex(row_hashes(xv)[0])[:16]
    rows.close()


def test_rows_checks_match_in_memory_checks(tmp_path):
    x = np.zeros((20, 4), np.float32)
    x[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(20, int))
    rows = load_npz(tmp_path / "nan.npz", rows=("x",))
    with pytest.raises(DataError, match="members: 1 sample\\(s\\) contain NaN or inf"):
        validate_arrays(rows["x"], rows["y"], "members")
    np.savez(tmp_path / "short.npz", x=np.zeros((20, 4), np.float32), y=np.zeros(19, int))
    rows = load_npz(tmp_path / "short.npz", rows=("x",))
    with pytest.raises(DataError, match="x has 20 samples but y has 19"):
        validate_arrays(rows["x"], rows["y"], "members")


def test_bad_files_are_refused_with_one_line(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(np.zeros((5, 3), np.float32)), y=np.zeros(5, int))
    with pytest.raises(DataError, match="Fortran-ordered"):
        NpzRows(tmp_path / "f.npz", "x")
    good = tmp_path / "g.npz"
    np.savez(good, x=np.zeros((100, 30), np.float32), y=np.zeros(100, int))
    content = good.read_bytes()
    (tmp_path / "t.npz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError):
        load_npz(tmp_path / "t.npz", rows=("x",))
    with pytest.raises(DataError, match="lacks array"):
        NpzRows(good, "z")
